// Places each accepted connection (destination-placement.ts) with the real pieces: the
// SO_ORIGINAL_DST reader and the targets' current addresses. Also says once, loudly, at start-up
// when the addon is missing and the sidecar therefore runs in explicit mode only: connections are
// then served by listener port, and a connection the nat rules redirected cannot be told from one
// that dialled the listener (ADR 0010, README "Interception"). The state is a metric too
// (custos_original_destination_available), so it shows on dashboards, not only in a log line.
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { placeConnection, type Placement, type TargetDestination } from './destination-placement.ts';
import type { SidecarMetrics } from './metrics.ts';
import { loadOriginalDestinationReader, type OriginalDestinationReader } from './original-destination.ts';
import { TargetAddressBook, type HostResolver, type TargetEndpoint } from './target-addresses.ts';

export interface ConnectionPlacementOptions {
  /** The current policy's targets, and a way to hear about changes. */
  readonly targets: () => readonly TargetEndpoint[];
  readonly onTargetsChange: (listener: () => void) => void;
  readonly logger: Logger;
  readonly metrics: SidecarMetrics;
  /** Default: the addon built at install (sidecar/native/original-dst). */
  readonly reader?: OriginalDestinationReader;
  readonly resolve?: HostResolver;
  readonly refreshIntervalMs?: number;
}

export class ConnectionPlacement {
  readonly #reader: OriginalDestinationReader;
  readonly #addresses: TargetAddressBook;
  /** False: explicit mode only (the addon is not loaded). */
  readonly transparent: boolean;

  private constructor(reader: OriginalDestinationReader, addresses: TargetAddressBook, transparent: boolean) {
    this.#reader = reader;
    this.#addresses = addresses;
    this.transparent = transparent;
  }

  /** Checks the addon, warns when it is missing, resolves the targets once and keeps them fresh. */
  static async start(options: ConnectionPlacementOptions): Promise<ConnectionPlacement> {
    const reader = options.reader ?? loadOriginalDestinationReader();
    const availability = reader.originalDestinationAvailable();
    options.metrics.originalDestinationAvailable.set(availability.available ? 1 : 0);
    if (!availability.available) {
      options.logger.warn(
        { reason: availability.reason },
        'SO_ORIGINAL_DST is unavailable: the sidecar runs in EXPLICIT MODE ONLY. Connections are served as the target of the listener port they reach; '
          + 'connections redirected by transparent interception are served the same way, because their original destination cannot be verified. '
          + 'Ship the built addon (sidecar/native/original-dst) in the image to verify destinations.',
      );
    }
    const addresses = new TargetAddressBook({
      targets: options.targets,
      logger: options.logger.child({ component: 'target-addresses' }),
      ...(options.resolve !== undefined ? { resolve: options.resolve } : {}),
      ...(options.refreshIntervalMs !== undefined ? { refreshIntervalMs: options.refreshIntervalMs } : {}),
    });
    await addresses.start();
    options.onTargetsChange(() => { void addresses.refresh(); });
    return new ConnectionPlacement(reader, addresses, availability.available);
  }

  /** Call synchronously in the server's 'connection' handler, before any byte is read. */
  place(listenerTarget: string, socket: Socket): Placement {
    return placeConnection({ listenerTarget, lookup: this.#reader.originalDestination(socket), targets: this.#addresses.current() });
  }

  /** Each target with the addresses connections are placed by now (for status and tests). */
  destinations(): TargetDestination[] {
    return this.#addresses.current();
  }

  /** Re-resolves the targets now (tests, and policy changes). */
  refresh(): Promise<void> {
    return this.#addresses.refresh();
  }

  close(): void {
    this.#addresses.close();
  }
}
