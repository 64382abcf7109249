/**
 * @module The server name of a TLS ClientHello, read without decrypting anything (`tlsPassthrough`):
 * the first TLS record (RFC 8446 §5.1) must be a handshake record holding a ClientHello (§4.1.2),
 * whose server_name extension (RFC 6066 §3) names the host. Only bytes are read; the record is
 * forwarded as it came. A ClientHello longer than its first record is read as far as the record
 * goes (the server_name extension comes early in every client seen; if it is not there: no name).
 */
import type { Socket } from 'node:net';
import type { Clock } from '../core/clock.js';

export type ClientHelloSni =
  /** More bytes are needed to read the first record. */
  | { readonly status: 'need-more' }
  /** A ClientHello; `name` is its host_name, or null when it sends none. */
  | { readonly status: 'hello'; readonly name: string | null }
  /** Not a TLS ClientHello. */
  | { readonly status: 'not-tls'; readonly why: string };

const NEED_MORE: ClientHelloSni = { status: 'need-more' };
const RECORD_HEADER_BYTES = 5;
/** RFC 8446 §5.1: a record's plaintext is at most 2^14 bytes. */
export const MAX_RECORD_BYTES = 16_384;
const HANDSHAKE = 22;
const CLIENT_HELLO = 1;
const SERVER_NAME = 0;
const HOST_NAME = 0;
/** RFC 6066 §3: a DNS host name, no trailing dot, letters, digits, hyphens, dots (and '_' seen in the wild). */
const HOST = /^[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,252})$/;

/** Reads the server name of the ClientHello at the start of `buf`. Never throws. */
export function readClientHelloSni(buf: Buffer): ClientHelloSni {
  if (buf.length < RECORD_HEADER_BYTES) return NEED_MORE;
  if (buf[0] !== HANDSHAKE) return { status: 'not-tls', why: 'not a handshake record' };
  if (buf[1] !== 3) return { status: 'not-tls', why: 'not a TLS record version' };
  const recordLen = buf.readUInt16BE(3);
  if (recordLen === 0 || recordLen > MAX_RECORD_BYTES) return { status: 'not-tls', why: 'bad record length' };
  if (buf.length < RECORD_HEADER_BYTES + recordLen) return NEED_MORE;
  const rec = buf.subarray(RECORD_HEADER_BYTES, RECORD_HEADER_BYTES + recordLen);
  if (rec[0] !== CLIENT_HELLO || rec.length < 4) return { status: 'not-tls', why: 'not a ClientHello' };
  // Handshake header: type u8, length u24; then legacy_version u16, random 32 bytes.
  const end = Math.min(rec.length, 4 + ((rec[1]! << 16) | (rec[2]! << 8) | rec[3]!));
  let p = 4 + 2 + 32;
  const skipVector = (lenBytes: 1 | 2): boolean => {
    if (p + lenBytes > end) return false;
    const n = lenBytes === 1 ? rec[p]! : rec.readUInt16BE(p);
    p += lenBytes + n;
    return p <= end;
  };
  // legacy_session_id <0..32>, cipher_suites <2..2^16-2>, legacy_compression_methods <1..2^8-1>.
  if (!skipVector(1) || !skipVector(2) || !skipVector(1)) return { status: 'not-tls', why: 'truncated ClientHello' };
  if (p + 2 > end) return { status: 'hello', name: null }; // no extensions at all
  const extEnd = Math.min(end, p + 2 + rec.readUInt16BE(p));
  p += 2;
  while (p + 4 <= extEnd) {
    const type = rec.readUInt16BE(p);
    const len = rec.readUInt16BE(p + 2);
    p += 4;
    if (p + len > extEnd) break;
    if (type === SERVER_NAME) return { status: 'hello', name: hostName(rec.subarray(p, p + len)) };
    p += len;
  }
  return { status: 'hello', name: null };
}

/** The host_name entry of a server_name extension body, or null. */
function hostName(ext: Buffer): string | null {
  if (ext.length < 2) return null;
  const listEnd = Math.min(ext.length, 2 + ext.readUInt16BE(0));
  let p = 2;
  while (p + 3 <= listEnd) {
    const type = ext[p]!;
    const len = ext.readUInt16BE(p + 1);
    p += 3;
    if (p + len > listEnd) return null;
    if (type === HOST_NAME) {
      const name = ext.toString('latin1', p, p + len).toLowerCase();
      return HOST.test(name) ? name : null;
    }
    p += len;
  }
  return null;
}

/** Whether `name` is served by a backend claiming `names` (exact, or `*.x` one label deep). */
export function serverNameMatches(names: readonly string[], name: string): boolean {
  for (const n of names) {
    const want = n.toLowerCase();
    if (want === name) return true;
    if (want.startsWith('*.')) {
      const dot = name.indexOf('.');
      if (dot > 0 && name.slice(dot + 1) === want.slice(2)) return true;
    }
  }
  return false;
}

/**
 * The indices of the backends that do not serve `name`: a backend with `serverNames` serves those
 * names; one without serves the names no backend claims. The caller never offers them this client.
 */
export function backendsNotServing(backends: readonly { readonly serverNames?: readonly string[] | undefined }[], name: string): number[] {
  const claimed = backends.some((b) => b.serverNames !== undefined && serverNameMatches(b.serverNames, name));
  const out: number[] = [];
  backends.forEach((b, i) => {
    const serves = claimed ? b.serverNames !== undefined && serverNameMatches(b.serverNames, name) : b.serverNames === undefined;
    if (!serves) out.push(i);
  });
  return out;
}

/**
 * Reads the client's first TLS record without consuming it (the bytes go back into the socket for
 * the splice) and calls `done` once with its server name, or null: not TLS, no name, or not sent
 * within `timeoutMs`. Memory: one record at most (16 KiB + its header).
 */
export function readServerName(client: Socket, clock: Clock, timeoutMs: number, done: (name: string | null) => void): void {
  let buf: Buffer | null = null;
  let finished = false;
  const finish = (name: string | null): void => {
    if (finished) return;
    finished = true;
    timer.cancel();
    client.off('data', onData);
    client.pause();
    if (buf !== null) client.unshift(buf);
    done(name);
  };
  const onData = (chunk: Buffer): void => {
    buf = buf === null ? chunk : Buffer.concat([buf, chunk]);
    const r = readClientHelloSni(buf);
    if (r.status === 'hello') finish(r.name);
    else if (r.status === 'not-tls' || buf.length > MAX_RECORD_BYTES + 5) finish(null);
  };
  const timer = clock.setTimeout(() => finish(null), timeoutMs);
  client.on('data', onData);
  client.once('close', () => finish(null));
  client.resume();
}
