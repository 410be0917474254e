// The digest an approval is bound to (four-eyes checklist item 4, reference/identity-and-audit.md
// §10.4): the exact statement, its bound parameters, the target, database and user it runs as, the
// requester and the gateway (the sidecar, down to the pod) that holds it. Any change voids the
// approval because it yields another digest, hence another request.
//
// Encoding: a version label, then every field in a fixed order as a presence byte and, when
// present, a 4-byte big-endian length and the bytes. Length prefixes make the encoding injective
// (`"ab" + "c"` and `"a" + "bc"` differ), and the presence byte keeps "absent" apart from "empty"
// — a NULL parameter is not an empty string, and a simple-protocol statement (no parameters at all)
// is not an extended-protocol one with zero parameters.
import { createHash } from 'node:crypto';
import type { ApprovalRequest } from './approval-types.ts';

const DIGEST_LABEL = 'custos-approval-digest/v1';
const WINDOW_LABEL = 'custos-approval-window/v2';

export interface ApprovalDigestInput {
  readonly gateway: ApprovalRequest['gateway'];
  /** The target's name (AccessPolicy target). */
  readonly target: string;
  readonly database?: string | undefined;
  readonly user?: string | undefined;
  readonly requesterId: string;
  /** The exact statement text as the client sent it. */
  readonly sql: string;
  /** Extended protocol: the bound values as sent; `undefined` for the simple protocol. */
  readonly parameters?: readonly (Uint8Array | null)[] | undefined;
}

export interface WindowGrantInput {
  readonly requesterId: string;
  readonly gateway: ApprovalRequest['gateway'];
  readonly target: string;
  readonly database?: string | undefined;
  readonly user?: string | undefined;
  /** The policy and rule that asked for approval (another rule is another grant). */
  readonly policy: { readonly name: string; readonly namespace?: string | undefined; readonly rule: string };
  /**
   * The normalized statement text (constants as $n). The fingerprint alone is not enough: it
   * ignores the schema and constant-only WHERE clauses (`DELETE FROM scratch.t` and
   * `DELETE FROM public.t`, `DELETE FROM t WHERE false` and `DELETE FROM t` share one).
   */
  readonly command: string;
  readonly fingerprint: string;
}

class FieldWriter {
  readonly #hash = createHash('sha256');

  constructor(label: string) {
    this.bytes(Buffer.from(label, 'utf8'));
  }

  absent(): void {
    this.#hash.update(Uint8Array.of(0));
  }

  bytes(value: Uint8Array): void {
    const header = Buffer.alloc(5);
    header[0] = 1;
    header.writeUInt32BE(value.byteLength, 1);
    this.#hash.update(header);
    this.#hash.update(value);
  }

  text(value: string | undefined): void {
    if (value === undefined) this.absent();
    else this.bytes(Buffer.from(value, 'utf8'));
  }

  count(value: number): void {
    const buffer = Buffer.alloc(4);
    buffer.writeUInt32BE(value);
    this.#hash.update(buffer);
  }

  gateway(gateway: ApprovalRequest['gateway']): void {
    this.text(gateway.id);
    this.text(gateway.namespace);
    this.text(gateway.pod);
    this.text(gateway.podUid);
  }

  digest(): string {
    return `sha256:${this.#hash.digest('hex')}`;
  }
}

/** `sha256:<hex>` binding an approval to exactly this execution context. */
export function approvalDigest(input: ApprovalDigestInput): string {
  const writer = new FieldWriter(DIGEST_LABEL);
  writer.gateway(input.gateway);
  writer.text(input.target);
  writer.text(input.database);
  writer.text(input.user);
  writer.text(input.requesterId);
  writer.text(input.sql);
  if (input.parameters === undefined) {
    writer.absent();
  } else {
    writer.bytes(Uint8Array.of(1));
    writer.count(input.parameters.length);
    for (const parameter of input.parameters) {
      if (parameter === null) writer.absent();
      else writer.bytes(parameter);
    }
  }
  return writer.digest();
}

/**
 * What a window grant is keyed by: the same identity may run statements with the same normalized
 * text (and fingerprint) through the same gateway against the same target, database and user,
 * under the same rule, while the window lasts. Only the constants may differ.
 */
export function windowGrantDigest(input: WindowGrantInput): string {
  const writer = new FieldWriter(WINDOW_LABEL);
  writer.text(input.requesterId);
  writer.gateway(input.gateway);
  writer.text(input.target);
  writer.text(input.database);
  writer.text(input.user);
  writer.text(input.policy.name);
  writer.text(input.policy.namespace);
  writer.text(input.policy.rule);
  writer.text(input.command);
  writer.text(input.fingerprint);
  return writer.digest();
}
