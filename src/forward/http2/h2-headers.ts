/**
 * @module Header translation between an HTTP/2 stream and the HTTP/1.1 exchange that carries it
 * (RFC 9113 §8.2, §8.3): a request's pseudo-header fields and field lines written as an HTTP/1.1
 * request head (`:authority` to Host, cookie crumbs joined, connection-specific fields never passed,
 * the body framed as chunked when its length is unknown), and an HTTP/1.1 reply head turned into
 * the stream's response header fields (hop-by-hop fields removed, repeated fields kept apart for
 * Set-Cookie and joined for the rest).
 */
import type { OutgoingHttpHeaders } from 'node:http2';
import type { Field, ResponseHead } from '../http/http-head.js';

/** Connection-specific fields (RFC 9113 §8.2.2): never valid in HTTP/2, never passed either way. */
const CONNECTION_SPECIFIC = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'http2-settings']);

/** An HTTP/2 request as the HTTP/1.1 path sees it, or the refusal of one it cannot carry. */
export type TranslatedRequest =
  | { readonly type: 'request'; readonly head: Buffer; readonly method: string; readonly chunked: boolean }
  | { readonly type: 'refuse'; readonly status: number; readonly reason: string };

/**
 * Writes the HTTP/1.1 head of an HTTP/2 request from its raw header list (`[name, value, ...]`, as
 * received; nghttp2 has already checked the pseudo-header fields, lower-case names and field values
 * without NUL, CR or LF). `endStream`: the HEADERS frame ended the stream, so there is no body.
 * A body of unknown length (no content-length) goes chunked, so that request trailers can follow.
 * CONNECT (plain or extended, RFC 8441) is refused: holdfast does not tunnel over HTTP/2.
 */
export function translateRequest(raw: readonly string[], endStream: boolean): TranslatedRequest {
  let method = '';
  let path = '';
  let authority: string | null = null;
  let host: string | null = null;
  let contentLength: string | null = null;
  let protocol = false;
  const cookies: string[] = [];
  let lines = '';
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!;
    const value = raw[i + 1]!;
    if (name.charCodeAt(0) === 58 /* : */) {
      if (name === ':method') method = value;
      else if (name === ':path') path = value;
      else if (name === ':authority') authority = value;
      else if (name === ':protocol') protocol = true;
      continue;
    }
    if (name === 'cookie') {
      cookies.push(value); // RFC 9113 §8.2.3: crumbs are joined with "; " for HTTP/1.1
    } else if (name === 'host') {
      host = host === null ? value : host + ',' + value; // repeated: the HTTP/1.1 parser refuses it
    } else if (name === 'content-length') {
      contentLength = contentLength === null ? value : contentLength + ',' + value;
    } else if (!CONNECTION_SPECIFIC.has(name)) {
      lines += `${name}: ${value}\r\n`;
    }
  }
  if (method === 'CONNECT' || protocol) return { type: 'refuse', status: 501, reason: 'CONNECT is not supported over HTTP/2' };
  // RFC 9113 §8.3.1: :authority, when present, is the target's authority and replaces Host.
  const hostValue = authority ?? host;
  let head = `${method} ${path} HTTP/1.1\r\n`;
  if (hostValue !== null) head += `host: ${hostValue}\r\n`;
  head += lines;
  if (cookies.length > 0) head += `cookie: ${cookies.join('; ')}\r\n`;
  let chunked = false;
  if (contentLength !== null) head += `content-length: ${contentLength}\r\n`;
  else if (!endStream) {
    head += 'transfer-encoding: chunked\r\n';
    chunked = true;
  }
  head += '\r\n';
  return { type: 'request', head: Buffer.from(head, 'latin1'), method, chunked };
}

/**
 * The stream's response header fields for an HTTP/1.1 reply head: `:status`, then every field but the
 * connection-specific ones and those the reply's Connection field names (RFC 9110 §7.6.1).
 */
export function responseHeaders(res: ResponseHead): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = { ':status': res.status };
  addFields(out, res.fields, res.connection);
  return out;
}

/** Trailer fields of a chunked reply as HTTP/2 trailers (pseudo and connection-specific ones dropped). */
export function trailerHeaders(fields: readonly Field[]): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  addFields(out, fields, []);
  return out;
}

function addFields(out: OutgoingHttpHeaders, fields: readonly Field[], named: readonly string[]): void {
  for (const f of fields) {
    const name = f.name;
    if (CONNECTION_SPECIFIC.has(name) || named.includes(name)) continue;
    const prev = out[name];
    if (prev === undefined) out[name] = name === 'set-cookie' ? [f.value] : f.value;
    else if (Array.isArray(prev)) prev.push(f.value);
    else out[name] = `${String(prev)}, ${f.value}`;
  }
}

/** Request trailers (HTTP/2 HEADERS after the body) as the trailer section of a chunked body. */
export function chunkedTrailer(trailers: Readonly<Record<string, string | string[] | undefined>> | null): string {
  let s = '0\r\n';
  if (trailers !== null) {
    for (const [name, value] of Object.entries(trailers)) {
      if (name.charCodeAt(0) === 58 || CONNECTION_SPECIFIC.has(name) || name === 'content-length' || value === undefined) continue;
      for (const v of Array.isArray(value) ? value : [value]) s += `${name}: ${v}\r\n`;
    }
  }
  return s + '\r\n';
}
