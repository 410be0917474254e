// Where a transparently intercepted connection was going (reference/kubernetes.md §8). The pod's
// nat OUTPUT rules (operator/interception/iptables-rules.ts) REDIRECT the workload's connection to
// the sidecar's loopback listener, so the accepted socket's local address is 127.0.0.1:17001 / ::1;
// the address the workload dialled (a Service ClusterIP:port) lives only in the conntrack entry and
// is read with getsockopt(SO_ORIGINAL_DST) by the native addon in native/original-dst/, built by
// node-gyp at `npm ci` (native/original-dst/build.ts).
//
// The addon may be missing (no compiler at install, not Linux). Then lookups answer "unavailable"
// and originalDestinationAvailable() says why, so the sidecar can run in explicit mode with a loud
// warning. Nothing here ever guesses a destination: a connection whose destination cannot be read
// gets `destination: undefined` with a reason, and the caller closes it (fail closed), never
// forwards it somewhere by default.
//
// Call `originalDestination(socket)` synchronously in the server's 'connection' handler, before
// reading any bytes (the conntrack entry exists as long as the connection does, but an early answer
// keeps policy decisions ahead of any data).
import { createRequire } from 'node:module';
import { SocketAddress, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';

export interface OriginalDestination {
  /** The address the client dialled, as inet_ntop prints it ('10.96.0.12', 'fd00:10::c'). */
  readonly address: string;
  readonly port: number;
  readonly family: 4 | 6;
}

export type OriginalDestinationLookup =
  | { readonly destination: OriginalDestination; readonly code?: undefined; readonly reason?: undefined }
  | {
      readonly destination: undefined;
      /**
       * ENOENT: the connection was not redirected (a direct connection to the listener). The kernel
       * says ENOENT itself when the connection has no conntrack entry (conntrack not active in the
       * network namespace); where conntrack is active, a direct connection has an entry without a
       * NAT mapping and getsockopt returns the listener's own address, which is reported as ENOENT
       * too, so callers have one code for "not redirected". ERR_ORIG_DST_UNAVAILABLE: the addon is not loaded. ERR_ORIG_DST_NO_FD: the socket
       * has no open file descriptor (closed, or not a plain TCP socket). Otherwise the errno name
       * getsockopt/getsockname failed with.
       */
      readonly code: string;
      readonly reason: string;
    };

export type OriginalDestinationAvailability = { readonly available: true } | { readonly available: false; readonly reason: string };

export interface OriginalDestinationReader {
  originalDestination(socket: Socket): OriginalDestinationLookup;
  originalDestinationAvailable(): OriginalDestinationAvailability;
}

/** The addon's one export (native/original-dst/original_dst.cc). */
interface OriginalDstAddon {
  originalDestination(fd: number): OriginalDestination;
}

/** Where native/original-dst/build.ts leaves the addon. */
export const ORIGINAL_DST_ADDON_PATH = fileURLToPath(new URL('./native/original-dst/build/Release/original_dst.node', import.meta.url));

/**
 * The OS file descriptor behind a net.Socket, or -1.
 *
 * `socket._handle` is Node's internal TCPWrap and `fd` its getter (src/stream_base.cc
 * StreamBase::GetFD → LibuvStreamWrap::GetFD → uv_fileno); both are undocumented. This is safe here because: on Linux a libuv TCP handle wraps
 * exactly one kernel socket, whose fd stays the same for the handle's whole life (libuv never
 * swaps it); the addon only reads it synchronously (getsockname/getsockopt), while the handle is
 * open, so the fd cannot be closed and reused between reading it and using it; and a closed or
 * missing handle reads as a negative number (UV_EINVAL) or undefined (Windows returns -1), which is
 * refused by the caller rather than passed on. The internal shape is pinned by the Node major in package.json and checked by
 * test/original-destination.test.ts on every upgrade.
 */
export function socketFd(socket: Socket): number {
  const handle = (socket as unknown as { _handle?: { fd?: unknown } | null })._handle;
  const fd = handle?.fd;
  return typeof fd === 'number' && Number.isInteger(fd) ? fd : -1;
}

/** inet_pton → inet_ntop, so two spellings of one address compare equal. */
function canonical(address: string, family: 4 | 6): string | undefined {
  let text = address;
  // An IPv4 connection accepted on a dual-stack listener has an IPv4-mapped local address.
  if (family === 4 && text.toLowerCase().startsWith('::ffff:') && text.includes('.')) text = text.slice('::ffff:'.length);
  try {
    return new SocketAddress({ address: text, family: family === 4 ? 'ipv4' : 'ipv6' }).address;
  } catch {
    return undefined;
  }
}

/** True when the "original" destination is the listener itself: conntrack saw no NAT. */
function isListenerItself(destination: OriginalDestination, socket: Socket): boolean {
  const local = socket.localAddress;
  if (local === undefined || socket.localPort !== destination.port) return false;
  const mine = canonical(local, destination.family);
  return mine !== undefined && mine === canonical(destination.address, destination.family);
}

function describe(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Loads the addon at `addonPath` once; a missing or broken file makes an "unavailable" reader. */
export function loadOriginalDestinationReader(addonPath: string = ORIGINAL_DST_ADDON_PATH): OriginalDestinationReader {
  let addon: OriginalDstAddon | undefined;
  let unavailable: string | undefined;
  if (process.platform !== 'linux') {
    unavailable = `SO_ORIGINAL_DST exists only on Linux (this is ${process.platform})`;
  } else {
    try {
      const loaded = createRequire(import.meta.url)(addonPath) as Partial<OriginalDstAddon>;
      if (typeof loaded.originalDestination === 'function') addon = loaded as OriginalDstAddon;
      else unavailable = `${addonPath} does not export originalDestination`;
    } catch (e: unknown) {
      const code = (e as { code?: unknown } | null)?.code;
      unavailable =
        code === 'MODULE_NOT_FOUND'
          ? `the SO_ORIGINAL_DST addon ${addonPath} is missing (it is built by \`npm ci\`; see the install output for why it was not)`
          : `the SO_ORIGINAL_DST addon ${addonPath} does not load in Node ${process.version}: ${describe(e)}`;
    }
  }

  return {
    originalDestinationAvailable() {
      return unavailable === undefined ? { available: true } : { available: false, reason: unavailable };
    },
    originalDestination(socket) {
      if (addon === undefined) {
        return { destination: undefined, code: 'ERR_ORIG_DST_UNAVAILABLE', reason: unavailable ?? 'the SO_ORIGINAL_DST addon is not loaded' };
      }
      const fd = socketFd(socket);
      if (fd < 0) {
        return { destination: undefined, code: 'ERR_ORIG_DST_NO_FD', reason: 'the socket has no open file descriptor (closed, or not a plain TCP socket)' };
      }
      let destination: OriginalDestination;
      try {
        destination = addon.originalDestination(fd);
      } catch (e: unknown) {
        const code = (e as { code?: unknown } | null)?.code;
        const name = typeof code === 'string' ? code : 'EUNKNOWN';
        const reason = name === 'ENOENT' ? `the connection was not redirected (no NAT mapping): ${describe(e)}` : describe(e);
        return { destination: undefined, code: name, reason };
      }
      if (isListenerItself(destination, socket)) {
        const at = `${destination.family === 6 ? `[${destination.address}]` : destination.address}:${destination.port}`;
        return { destination: undefined, code: 'ENOENT', reason: `the connection was not redirected: its conntrack entry has no NAT mapping (the original destination is the listener itself, ${at})` };
      }
      return { destination };
    },
  };
}

let defaultReader: OriginalDestinationReader | undefined;

function reader(): OriginalDestinationReader {
  defaultReader ??= loadOriginalDestinationReader();
  return defaultReader;
}

/** The pre-REDIRECT destination of an accepted TCP connection, or undefined with a reason. */
export function originalDestination(socket: Socket): OriginalDestinationLookup {
  return reader().originalDestination(socket);
}

/**
 * Whether transparent interception can work in this process. `available: false` means explicit
 * mode only: the sidecar must say so loudly at start-up (and refuse redirected connections it
 * cannot place), never forward them to a default upstream.
 */
export function originalDestinationAvailable(): OriginalDestinationAvailability {
  return reader().originalDestinationAvailable();
}
