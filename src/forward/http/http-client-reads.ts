/**
 * @module Accepted client sockets reading into one buffer of the forwarder's (issue 16), as backend
 * sockets do with `onread`: no 64 KiB allocation, Readable push and 'data' emit per read.
 *
 * Node 20 offers `onread` only to sockets it creates for `connect()`, not to the ones `net.Server`
 * accepts. Its net.js keeps the `onread` options as three symbol-keyed fields of every Socket
 * (`kBuffer`, `kBufferGen`, `kBufferCb`) and hands the buffer to the handle with `useUserBuffer`;
 * `adoptReads` does the same to a socket that has just been accepted, before its first read (the
 * 'connection' event runs before the event loop polls the new handle). Where those internals are not
 * found (another Node), or the socket is not a plain TCP socket with nothing read yet (TLS, an
 * HTTP/2 stream, a sniffed socket), it changes nothing and returns false: the caller reads 'data'.
 *
 * One buffer serves every client socket of a forwarder: Node calls the read callback with the bytes
 * just read, and reads of other sockets come only after it returns. So nothing may keep a view of
 * the buffer past the callback (the next read, of any socket, overwrites it): whatever the client
 * connection keeps (a partial head, a pipelined request) or hands to a write that may stay queued
 * (request bodies, tunnel bytes) is copied out first (`ownBytes`). A GET costs no copy.
 */
import net from 'node:net';

/** Size of a forwarder's client read buffer: what one read may take from a client socket. */
export const CLIENT_READ_BUFFER_BYTES = 64 * 1024;

/** The read callback: `n` bytes were read into `buf` (the shared buffer), valid until it returns. */
export type ClientReadCallback = (n: number, buf: Buffer) => void;

interface OnreadFields {
  readonly buffer: symbol;
  readonly generator: symbol;
  readonly callback: symbol;
}

interface HandleWithUserBuffer {
  useUserBuffer(buf: Uint8Array): unknown;
}

let fields: OnreadFields | null | undefined;
let enabled = true;

/**
 * Turns adoption off or on for sockets accepted from now on (the tests of the 'data' fallback, which
 * is what a Node without these internals runs); returns the previous setting.
 */
export function setClientReadsEnabled(on: boolean): boolean {
  const was = enabled;
  enabled = on;
  return was;
}

/** The symbols of Node's `onread` fields, found once on a Socket; null when this Node has none. */
function onreadFields(): OnreadFields | null {
  if (fields !== undefined) return fields;
  const probe = new net.Socket();
  const bySymbol = new Map<string, symbol>();
  for (const s of Object.getOwnPropertySymbols(probe)) if (s.description !== undefined) bySymbol.set(s.description, s);
  probe.destroy();
  const buffer = bySymbol.get('kBuffer');
  const generator = bySymbol.get('kBufferGen');
  const callback = bySymbol.get('kBufferCb');
  fields = buffer && generator && callback ? { buffer, generator, callback } : null;
  return fields;
}

/** Whether this Node lets accepted sockets read into a buffer of ours (tests; the fallback otherwise). */
export function clientReadsSupported(): boolean {
  return onreadFields() !== null;
}

/**
 * Makes an accepted `socket` read into `buffer`, calling `onRead` instead of emitting 'data' ('end',
 * 'error', 'close', pause() and resume() work as before). Returns false, changing nothing, when the
 * socket does not qualify or Node's internals are not the expected ones.
 */
export function adoptReads(socket: net.Socket, buffer: Buffer, onRead: ClientReadCallback): boolean {
  const f = onreadFields();
  if (!enabled || f === null || socket.constructor !== net.Socket) return false;
  const s = socket as unknown as Record<symbol, unknown> & { _handle?: Partial<HandleWithUserBuffer> | null };
  const handle = s._handle;
  if (!handle || typeof handle.useUserBuffer !== 'function') return false;
  // Bytes already read (an unshift after sniffing) or an onread of its own: leave it to 'data'.
  if (socket.destroyed || socket.connecting || socket.readableLength > 0 || s[f.buffer] !== null) return false;
  handle.useUserBuffer(buffer);
  s[f.buffer] = buffer;
  s[f.generator] = null; // the same buffer for every read
  s[f.callback] = onRead;
  return true;
}
