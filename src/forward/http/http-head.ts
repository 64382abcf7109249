/**
 * @module HTTP/1.1 message heads: parse a request or response head (RFC 9112 §2-§6), decide its
 * framing, refuse what could smuggle a second message past us, and write the head we forward with
 * the hop-by-hop fields (RFC 9110 §7.6.1) removed. Heads are parsed from latin1 strings: one slice
 * per message, lines found with indexOf, no per-byte JS loop.
 */
import { METHODS } from 'node:http';
import { HttpRequestError } from '../../core/errors.js';

/**
 * Character classes of the head grammar, one bit each in a table indexed by latin1 code: a loop over
 * a field name costs less than a regular expression call per field (issue 16), with the same
 * grammar (http-head.test.ts checks every byte against the RFC's classes written as regexes).
 */
const TCHAR = 1; // RFC 9110 §5.6.2: ! # $ % & ' * + - . ^ _ ` | ~ DIGIT ALPHA
const TARGET_CHAR = 2; // visible ASCII and 0x80-0xFF, no '#' (see isTarget)
const REG_NAME_CHAR = 4; // RFC 3986 unreserved and sub-delims (no '%': see isAuthority)
const CHAR_CLASS = new Uint8Array(256);
for (let c = 0; c < 256; c++) {
  const ch = String.fromCharCode(c);
  const alnum = (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122);
  let bits = 0;
  if (alnum || "!#$%&'*+-.^_`|~".includes(ch)) bits |= TCHAR;
  if ((c >= 0x21 && c <= 0x7e && c !== 0x23) || c >= 0x80) bits |= TARGET_CHAR;
  if (alnum || "-._~!$&'()*+,;=".includes(ch)) bits |= REG_NAME_CHAR;
  CHAR_CLASS[c] = bits;
}

/** A non-empty token (RFC 9110 §5.6.2): methods and field names. */
export function isToken(s: string): boolean {
  const n = s.length;
  if (n === 0) return false;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c > 255 || (CHAR_CLASS[c]! & TCHAR) === 0) return false;
  }
  return true;
}

/** Control characters other than HTAB are not allowed in field values (RFC 9110 §5.5). */
export function hasBadValueChar(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if ((c < 32 && c !== 9) || c === 127) return true;
  }
  return false;
}

/**
 * Visible ASCII and bytes 0x80-0xFF (raw UTF-8 paths, which origins such as nginx accept; they are
 * forwarded byte for byte), no '#' (a request target carries no fragment, RFC 9112 §3.2). Non-empty.
 */
export function isTarget(s: string): boolean {
  const n = s.length;
  if (n === 0) return false;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c > 255 || (CHAR_CLASS[c]! & TARGET_CHAR) === 0) return false;
  }
  return true;
}

/** One or more ASCII digits. */
function isDigits(s: string): boolean {
  const n = s.length;
  if (n === 0) return false;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c < 48 || c > 57) return false;
  }
  return true;
}
const EMPTY_LIST_ELEMENT = /(?:^|,)[ \t]*(?:,|$)/;

/**
 * Fields that describe one connection and never cross a proxy (RFC 9110 §7.6.1): connection,
 * keep-alive, proxy-connection, te, trailer, upgrade. By length, then content: a name fresh from a
 * head is not hashed for a Set lookup (issue 16).
 */
function isHopByHopName(name: string): boolean {
  switch (name.length) {
    case 2:
      return name === 'te';
    case 7:
      return name === 'trailer' || name === 'upgrade';
    case 10:
      return name === 'connection' || name === 'keep-alive';
    case 16:
      return name === 'proxy-connection';
    default:
      return false;
  }
}

/**
 * Fields that frame the message or name its target. Naming them in `Connection` does not remove
 * them: a proxy that dropped `Content-Length` after framing the body by it would forward the body
 * as a second, smuggled request (issue 21). Requests are re-framed from our own parse anyway.
 */
const NEVER_NOMINATED = new Set(['content-length', 'transfer-encoding', 'host']);

/**
 * uri-host [":" port] (RFC 9110 §7.2, RFC 3986 §3.2.2): an IP literal or a reg-name of unreserved,
 * percent-encoded and sub-delim characters. No userinfo (`x@evil.example` is refused), no spaces.
 */
const AUTHORITY = /^(?:\[[0-9A-Fa-f:.]+\]|(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})*)(?::[0-9]{0,5})?$/;

/**
 * AUTHORITY, with a loop for the common case (a reg-name of plain characters, an optional port):
 * what the loop accepts the expression accepts; anything else (IP literals, percent-encoding, a
 * refusal) is decided by the expression.
 */
export function isAuthority(s: string): boolean {
  const n = s.length;
  let i = 0;
  for (; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c === 58 /* : */) break;
    if (c > 255 || (CHAR_CLASS[c]! & REG_NAME_CHAR) === 0) return AUTHORITY.test(s);
  }
  if (i < n) {
    const digits = n - i - 1;
    if (digits > 5) return AUTHORITY.test(s);
    for (let j = i + 1; j < n; j++) {
      const c = s.charCodeAt(j);
      if (c < 48 || c > 57) return AUTHORITY.test(s);
    }
  }
  return true;
}
/** The scheme and authority of an absolute-form target (RFC 9112 §3.2.2). */
const ABSOLUTE_FORM = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#]*)/;

/**
 * The methods llhttp (node:http's parser) knows: an origin behind holdfast that parses with it
 * refuses any other, so holdfast answers them 501 itself (RFC 9110 §9.1) rather than forward what
 * the two would frame differently.
 */
const KNOWN_METHODS = new Set(METHODS);

export const CRLFCRLF = Buffer.from('\r\n\r\n');
const LFLF = Buffer.from('\n\n');

/** Bytes of empty lines (CRLFs) before a request line, which RFC 9112 §2.2 says to ignore. */
export function emptyLinesBefore(buf: Buffer): number {
  let skip = 0;
  while (skip + 1 < buf.length && buf[skip] === 13 && buf[skip + 1] === 10) skip += 2;
  return skip;
}

/**
 * The index of the CRLFCRLF that ends the request head at the start of `buf` (after
 * emptyLinesBefore), or -1 when it has not all arrived. Throws HttpRequestError for a head over
 * `maxHeaderBytes` (431) and a bare-LF head (400). The forwarder and the differential fuzzer frame
 * with these functions. No allocation: it runs once per request.
 */
export function requestHeadEnd(buf: Buffer, maxHeaderBytes: number): number {
  const end = buf.indexOf(CRLFCRLF);
  if (end >= 0 && end + 4 <= maxHeaderBytes) return end;
  if (buf.length > maxHeaderBytes || end >= 0) throw new HttpRequestError(431, 'request head too large');
  if (buf.indexOf(LFLF) >= 0) throw new HttpRequestError(400, 'bare LF line ending');
  return -1;
}

/** Default bound on the number of request header fields (HAProxy's tune.http.maxhdr is 101). */
export const DEFAULT_MAX_HEADER_COUNT = 100;

export interface Field {
  /** Lower-cased field name. */
  readonly name: string;
  readonly value: string;
  /** The whole line as received ("Name: value"), reused when forwarding. */
  readonly line: string;
}

interface CommonHead {
  readonly fields: Field[];
  /** Declared body length, or -1 when there is no Content-Length. */
  readonly contentLength: number;
  readonly chunked: boolean;
  /** Lower-cased tokens of the Connection field(s). */
  readonly connection: readonly string[];
  /** Minor version: 0 for HTTP/1.0, 1 for HTTP/1.1. */
  readonly minor: 0 | 1;
}

export interface RequestHead extends CommonHead {
  readonly method: string;
  readonly target: string;
  /**
   * The authority of an absolute-form target (RFC 9112 §3.2.2: it replaces Host), or null for the
   * other forms, whose Host field is forwarded as received.
   */
  readonly authority: string | null;
  readonly keepAlive: boolean;
  readonly upgrade: boolean;
}

export interface ResponseHead extends CommonHead {
  readonly status: number;
  /** Status line after the version ("200 OK"). */
  readonly statusRest: string;
  /** The backend will close after this response (Connection: close, or HTTP/1.0 without keep-alive). */
  readonly closes: boolean;
  /** The body runs until the backend closes (no Content-Length, not chunked). */
  readonly closeDelimited: boolean;
  /** Forwarding the head as received would pass a hop-by-hop field or a 1.0 status line. */
  readonly needsRewrite: boolean;
}

function isOws(c: number): boolean {
  return c === 32 || c === 9;
}

/**
 * Comma-separated tokens, lower-cased, OWS (SP, HTAB) trimmed. Not String.trim(): it also strips
 * U+00A0, so `Transfer-Encoding:\xa0chunked` would read as chunked here and as something else at
 * the backend (found by the differential fuzzer against llhttp).
 */
function splitTokens(value: string, into: string[]): void {
  for (const part of value.split(',')) {
    let s = 0;
    let e = part.length;
    while (s < e && isOws(part.charCodeAt(s))) s++;
    while (e > s && isOws(part.charCodeAt(e - 1))) e--;
    if (e > s) into.push(part.slice(s, e).toLowerCase());
  }
}

/**
 * Parses the field lines of head[from..] (no final empty line). `bad` builds the error to throw,
 * so the same rules answer 400 for requests and 502 for responses.
 */
function parseFields(head: string, from: number, bad: (why: string) => Error, maxFields = Infinity, tooMany = bad) {
  const fields: Field[] = [];
  let contentLength = -1;
  let te: string[] | null = null;
  const connection: string[] = [];
  let hosts = 0;
  let host: string | null = null;
  let pos = from;
  while (pos < head.length) {
    let eol = head.indexOf('\r\n', pos);
    if (eol < 0) eol = head.length;
    const line = head.slice(pos, eol);
    pos = eol + 2;
    const c0 = line.charCodeAt(0);
    if (c0 === 32 || c0 === 9) throw bad('obsolete line folding');
    const colon = line.indexOf(':');
    if (colon <= 0) throw bad('header line without ":"');
    const rawName = line.slice(0, colon);
    if (!isToken(rawName)) {
      throw bad(/[ \t]$/.test(rawName) ? 'whitespace before ":" in header' : 'invalid header name');
    }
    // Optional whitespace around the value (RFC 9110 §5.5), trimmed by index: no regex per field.
    let vs = colon + 1;
    let ve = line.length;
    while (vs < ve && isOws(line.charCodeAt(vs))) vs++;
    while (ve > vs && isOws(line.charCodeAt(ve - 1))) ve--;
    const value = line.slice(vs, ve);
    if (hasBadValueChar(value)) throw bad('control character in header value');
    const name = rawName.toLowerCase();
    if (fields.length >= maxFields) throw tooMany(`more than ${maxFields} header fields`);
    fields.push({ name, value, line });
    switch (name) {
      case 'content-length':
        if (contentLength !== -1) throw bad('more than one Content-Length');
        // Digits only, and nothing after them: llhttp refuses trailing whitespace here.
        if (!isDigits(value) || ve !== line.length) throw bad('invalid Content-Length');
        contentLength = Number(value);
        if (contentLength > Number.MAX_SAFE_INTEGER) throw bad('Content-Length too large');
        break;
      case 'transfer-encoding':
        // Trailing whitespace or an empty list element (`chunked,`): llhttp refuses both.
        if (ve !== line.length || EMPTY_LIST_ELEMENT.test(value)) throw bad('invalid Transfer-Encoding');
        splitTokens(value, (te ??= []));
        break;
      case 'connection':
        splitTokens(value, connection);
        break;
      case 'host':
        hosts++;
        host = value;
        break;
    }
  }
  return { fields, contentLength, te, connection, hosts, host };
}

function requestError(status: 400 | 431 | 501 | 505) {
  return (why: string) => new HttpRequestError(status, why);
}

/**
 * Parses a request head: `head` is the latin1 text before the empty line that ends it. More than
 * `maxHeaderCount` field lines is a 431.
 */
export function parseRequestHead(head: string, maxHeaderCount = DEFAULT_MAX_HEADER_COUNT): RequestHead {
  const bad = requestError(400);
  let eol = head.indexOf('\r\n');
  if (eol < 0) eol = head.length;
  const requestLine = head.slice(0, eol);
  if (requestLine.indexOf('\r') >= 0 || requestLine.indexOf('\n') >= 0) throw bad('bare CR or LF in request line');
  const sp1 = requestLine.indexOf(' ');
  const sp2 = requestLine.indexOf(' ', sp1 + 1);
  if (sp1 <= 0 || sp2 < 0 || requestLine.indexOf(' ', sp2 + 1) >= 0) throw bad('malformed request line');
  const method = requestLine.slice(0, sp1);
  const target = requestLine.slice(sp1 + 1, sp2);
  const version = requestLine.slice(sp2 + 1);
  if (!isToken(method)) throw bad('invalid method');
  if (!isTarget(target)) throw bad('invalid request target');
  // RFC 9112 §3.2: origin-form starts with "/"; "*" is for OPTIONS; authority-form for CONNECT;
  // absolute-form is checked below.
  const c0 = target.charCodeAt(0);
  if (c0 !== 47 /* / */ && !(target === '*' && method === 'OPTIONS') && method !== 'CONNECT' && !ABSOLUTE_FORM.test(target)) {
    throw bad('invalid request target');
  }
  let minor: 0 | 1;
  if (version === 'HTTP/1.1') minor = 1;
  else if (version === 'HTTP/1.0') minor = 0;
  else if (/^HTTP\/\d\.\d$/.test(version)) throw new HttpRequestError(505, `unsupported version ${version}`);
  else throw bad('malformed request line');

  const f = parseFields(head, eol + 2, bad, maxHeaderCount, requestError(431));
  let chunked = false;
  if (f.te) {
    // RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing (1.0 has no
    // chunked); we refuse it rather than guess, and the refusal closes the connection.
    if (minor === 0) throw bad('Transfer-Encoding in an HTTP/1.0 request');
    // RFC 9112 §6.1: a request whose final coding is not chunked cannot be framed; we accept only
    // exactly "chunked", the one coding every origin understands.
    if (f.te.length !== 1 || f.te[0] !== 'chunked') throw bad('unsupported Transfer-Encoding');
    if (f.contentLength !== -1) throw bad('Content-Length with Transfer-Encoding');
    chunked = true;
  }
  if (!KNOWN_METHODS.has(method)) throw new HttpRequestError(501, `unknown method ${method}`);
  if (f.hosts > 1) throw bad('more than one Host');
  if (minor === 1 && f.hosts === 0) throw bad('missing Host');
  if (f.host !== null && !isAuthority(f.host)) throw bad('invalid Host');
  let authority: string | null = null;
  const abs = target.charCodeAt(0) === 47 /* '/' */ ? null : ABSOLUTE_FORM.exec(target);
  if (abs) {
    const scheme = abs[1]!.toLowerCase();
    if (scheme !== 'http' && scheme !== 'https') throw bad(`unsupported scheme ${scheme} in request target`);
    authority = abs[2]!;
    if (authority === '' || !isAuthority(authority)) throw bad('invalid authority in request target');
  }
  const conn = f.connection;
  const keepAlive = minor === 1 ? !conn.includes('close') : conn.includes('keep-alive') && !conn.includes('close');
  // Expect: 100-continue needs nothing of ours: the field is forwarded and the 100 relayed.
  const upgrade = conn.includes('upgrade') && f.fields.some((x) => x.name === 'upgrade');
  return {
    method,
    target,
    authority,
    minor,
    fields: f.fields,
    contentLength: f.contentLength,
    chunked,
    connection: conn,
    keepAlive,
    upgrade,
  };
}

export class ResponseHeadError extends Error {}

const STATUS_PREFIX = 'HTTP/1.';

/**
 * The minor version of a well-formed status line, `HTTP/1.[01] 3DIGIT` then nothing or SP and a
 * reason without CR or LF; -1 when it is not one.
 */
function statusLineMinor(line: string): 0 | 1 | -1 {
  if (line.length < 12 || !line.startsWith(STATUS_PREFIX) || line.charCodeAt(8) !== 32) return -1;
  const v = line.charCodeAt(7);
  if (v !== 48 && v !== 49) return -1;
  for (let i = 9; i < 12; i++) {
    const c = line.charCodeAt(i);
    if (c < 48 || c > 57) return -1;
  }
  if (line.length > 12 && (line.charCodeAt(12) !== 32 || line.indexOf('\r', 13) >= 0 || line.indexOf('\n', 13) >= 0)) return -1;
  return v === 49 ? 1 : 0;
}

/** Parses a response head: `head` is the latin1 text before the empty line that ends it. */
export function parseResponseHead(head: string, requestMethod: string): ResponseHead {
  const bad = (why: string) => new ResponseHeadError(why);
  let eol = head.indexOf('\r\n');
  if (eol < 0) eol = head.length;
  const statusLine = head.slice(0, eol);
  // HTTP/1.x SP 3DIGIT [SP reason], no CR or LF (by index: no regular expression per response).
  const version = statusLineMinor(statusLine);
  if (version < 0) throw bad('malformed status line');
  const minor = version === 1 ? 1 : 0;
  const status = (statusLine.charCodeAt(9) - 48) * 100 + (statusLine.charCodeAt(10) - 48) * 10 + (statusLine.charCodeAt(11) - 48);
  const f = parseFields(head, eol + 2, bad);
  let chunked = false;
  let closeDelimited = false;
  const noBody = requestMethod === 'HEAD' || status < 200 || status === 204 || status === 304;
  if (f.te) {
    if (f.contentLength !== -1) throw bad('Content-Length with Transfer-Encoding');
    // RFC 9112 §6.3: chunked last means chunked; any other final coding runs until close.
    if (f.te[f.te.length - 1] === 'chunked') chunked = true;
    else closeDelimited = true;
  } else if (f.contentLength === -1) {
    closeDelimited = true;
  }
  if (noBody) {
    chunked = false;
    closeDelimited = false;
  }
  const conn = f.connection;
  const closes = conn.includes('close') || (minor === 0 && !conn.includes('keep-alive')) || closeDelimited;
  let needsRewrite = minor === 0;
  if (!needsRewrite) {
    for (const x of f.fields) {
      if (isHopByHop(x.name, conn, false)) {
        needsRewrite = true;
        break;
      }
    }
  }
  return {
    status,
    statusRest: statusLine.slice(9),
    minor,
    fields: f.fields,
    contentLength: noBody ? 0 : f.contentLength,
    chunked,
    connection: conn,
    closes,
    closeDelimited,
    needsRewrite,
  };
}

/** True when a field must not be forwarded: hop-by-hop, or named by the Connection field. */
function isHopByHop(name: string, connection: readonly string[], keepUpgrade: boolean): boolean {
  if (isHopByHopName(name)) return !(keepUpgrade && name === 'upgrade');
  return connection.length > 0 && !NEVER_NOMINATED.has(name) && connection.includes(name);
}

/** Client-identifying fields added to forwarded requests (RFC 7239 and the de-facto X-Forwarded-*). */
export interface ForwardedFor {
  /** The client address as written in X-Forwarded-For. */
  readonly ip: string;
  /** The same as a Forwarded `for=` parameter value (IPv6 quoted and bracketed). */
  readonly forwardedFor: string;
  /** The scheme the client spoke to us: X-Forwarded-Proto and Forwarded `proto=`. */
  readonly proto: 'http' | 'https';
}

export function forwardedFor(remoteAddress: string | undefined, proto: 'http' | 'https' = 'http'): ForwardedFor {
  let ip = remoteAddress ?? 'unknown';
  if (ip.startsWith('::ffff:') && ip.includes('.')) ip = ip.slice(7);
  return { ip, forwardedFor: ip.includes(':') ? `"[${ip}]"` : ip, proto };
}

/**
 * A field holdfast owns in every forwarded request: the verified client-certificate subject (mTLS).
 * Whatever the client sent under that name is removed; `value` (null: none verified) is added.
 */
export interface OwnedField {
  /** The field name as written. */
  readonly name: string;
  readonly value: string | null;
}

/**
 * The request head sent to the backend. HTTP/1.1 to the backend keeps the pooled connection alive
 * by default; a 1.0 request stays 1.0 (so the backend never answers it chunked) and asks for
 * keep-alive explicitly. The body's framing is written from our own parse, never copied from the
 * fields that survived the edits: the backend frames the body exactly as we did (issue 21). An
 * absolute-form target's authority replaces Host (RFC 9112 §3.2.2).
 */
export function writeRequestHead(req: RequestHead, client: ForwardedFor | null, owned: OwnedField | null = null): string {
  const ownedName = owned === null ? null : owned.name.toLowerCase();
  let out = `${req.method} ${req.target} HTTP/1.${req.minor}\r\n`;
  let xff: string | null = null;
  let fwd: string | null = null;
  let hasProto = false;
  // Our framing, written where the client's framing field stood (the parse allows exactly one).
  const framing = req.chunked ? 'Transfer-Encoding: chunked\r\n' : req.contentLength >= 0 ? `Content-Length: ${req.contentLength}\r\n` : '';
  let framed = framing === '';
  if (req.authority !== null) out += `Host: ${req.authority}\r\n`;
  for (const f of req.fields) {
    if (f.name === 'content-length' || f.name === 'transfer-encoding') {
      if (!framed) out += framing;
      framed = true;
      continue;
    }
    if (req.authority !== null && f.name === 'host') continue;
    if (f.name === ownedName) continue;
    if (isHopByHop(f.name, req.connection, req.upgrade)) continue;
    if (client) {
      if (f.name === 'x-forwarded-for') {
        xff = xff === null ? f.value : `${xff}, ${f.value}`;
        continue;
      }
      if (f.name === 'forwarded') {
        fwd = fwd === null ? f.value : `${fwd}, ${f.value}`;
        continue;
      }
      if (f.name === 'x-forwarded-proto') {
        // Over TLS the scheme is ours to say: a client's own value is not passed on.
        if (client.proto === 'https') continue;
        hasProto = true;
      }
    }
    out += f.line + '\r\n';
  }
  if (client) {
    out += `X-Forwarded-For: ${xff === null ? client.ip : `${xff}, ${client.ip}`}\r\n`;
    if (!hasProto) out += `X-Forwarded-Proto: ${client.proto}\r\n`;
    const me = `for=${client.forwardedFor};proto=${client.proto}`;
    out += `Forwarded: ${fwd === null ? me : `${fwd}, ${me}`}\r\n`;
  }
  if (!framed) out += framing;
  // A certificate subject is the CA's text, not the client's, but never lets a control byte through.
  if (owned !== null && owned.value !== null) out += `${owned.name}: ${owned.value.replace(/[\x00-\x1f\x7f]/g, '?')}\r\n`;
  if (req.upgrade) out += 'Connection: Upgrade\r\n';
  else if (req.minor === 0) out += 'Connection: keep-alive\r\n';
  return out + '\r\n';
}

/**
 * The response head sent to the client, when the head as received cannot be passed through:
 * hop-by-hop fields dropped, our own version, and our own decision on the client connection.
 */
export function writeResponseHead(res: ResponseHead, clientMinor: 0 | 1, closeClient: boolean): string {
  let out = `HTTP/1.1 ${res.statusRest}\r\n`;
  const upgrade = res.status === 101;
  for (const f of res.fields) {
    if (isHopByHop(f.name, res.connection, upgrade)) continue;
    out += f.line + '\r\n';
  }
  if (upgrade) out += 'Connection: Upgrade\r\n';
  else if (closeClient) out += 'Connection: close\r\n';
  else if (clientMinor === 0) out += 'Connection: keep-alive\r\n';
  return out + '\r\n';
}

const REASONS: Record<number, string> = {
  400: 'Bad Request',
  408: 'Request Timeout',
  413: 'Content Too Large',
  414: 'URI Too Long',
  429: 'Too Many Requests',
  431: 'Request Header Fields Too Large',
  501: 'Not Implemented',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
  505: 'HTTP Version Not Supported',
};

/** A complete response generated by the proxy itself; always closes the connection. */
export function errorResponse(status: number, detail: string, extraHeaders = ''): string {
  const reason = REASONS[status] ?? 'Error';
  const body = `${status} ${reason}: ${detail}\n`;
  return (
    `HTTP/1.1 ${status} ${reason}\r\nContent-Type: text/plain; charset=utf-8\r\n` +
    `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n${extraHeaders}\r\n${body}`
  );
}
