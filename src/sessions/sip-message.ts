/**
 * @module The SIP inspector (RFC 3261): parses one SIP message (a UDP datagram, or one message framed
 * from a TCP stream by `SipStreamFramer`) into what routing needs — start line, Call-ID, CSeq, the Via
 * list with branch/received/rport, From/To tags, Contact, Max-Forwards, Content-Length and the body
 * offset — keeping every header line's byte offsets so that a proxy can rewrite a message by splicing
 * a few edits into the original bytes (`applyEdits`). Also builds a proxy's own responses (503, 483)
 * per RFC 3261 §8.2.6.
 *
 * Never throws on any input: `parseSipMessage` returns a result union. What it rejects as malformed
 * (strict where routing depends on it):
 * - no blank line ending the header section; a start line that is neither
 *   `Method SP scheme:URI SP SIP/2.0` nor `SIP/2.0 SP 3DIGIT [SP reason]` (status 100-699);
 * - a header line without a colon or whose name is not a token; a folded line before any header;
 * - a missing or unparsable Call-ID, CSeq, Via, From or To; a Call-ID, CSeq, From, To, Max-Forwards
 *   or Content-Length repeated with different values; a CSeq method that differs from the request's
 *   method; a Via that is not `SIP/2.0/<transport> host[:port]`; a non-numeric Max-Forwards;
 * - a Content-Length larger than the bytes present (a truncated datagram or TCP message), and on TCP
 *   no Content-Length at all (RFC 3261 §18.3: it is mandatory on stream transports);
 * - more than MAX_HEADER_LINES header lines or MAX_VIAS Via values.
 * Lenient where harmless: leading CRLFs before the start line (RFC 3261 §7.5), bare LF line ends,
 * LWS folding (RFC 3261 §7.3.1: continuation lines are part of the header, values are unfolded with
 * one SP), case-insensitive and compact header names (RFC 3261 §7.3.3), several Via values in one line
 * or several Via lines (§7.3.1), a missing Max-Forwards, a Via without branch (RFC 2543 peers), bytes
 * past Content-Length in a datagram (ignored, RFC 3261 §18.3), unknown headers (kept as they are).
 *
 * The head is decoded as latin1, one char per byte, so string indices are byte offsets and rewritten
 * text re-encodes to the same bytes (UTF-8 display names pass through untouched).
 */
import { fail, parseHeaderLines, parseOrMalformed, parseParams, readHead, single, spliceEdits, splitCommaList, unfold, type HeaderLine, type TextEdit } from './text-headers.js';
import { contentLengthIn, TextStreamFramer, type FramingError } from './text-stream-framer.js';

export { findHeadEnd } from './text-stream-framer.js';
export { parseParams, splitCommaList } from './text-headers.js';

/** RFC 3261 §7.3.3 and later RFCs' compact forms → canonical lower-case names. */
export const SIP_COMPACT_FORMS: Readonly<Record<string, string>> = {
  a: 'accept-contact', // RFC 3841
  b: 'referred-by', // RFC 3892
  c: 'content-type',
  d: 'request-disposition', // RFC 3841
  e: 'content-encoding',
  f: 'from',
  i: 'call-id',
  j: 'reject-contact', // RFC 3841
  k: 'supported',
  l: 'content-length',
  m: 'contact',
  n: 'identity-info', // RFC 4474
  o: 'event', // RFC 6665
  r: 'refer-to', // RFC 3515
  s: 'subject',
  t: 'to',
  u: 'allow-events', // RFC 6665
  v: 'via',
  x: 'session-expires', // RFC 4028
  y: 'identity', // RFC 4474
};

/** A message with more header lines than this is malformed (bounds the work per message). */
export const MAX_HEADER_LINES = 512;
/** A message with more Via values than this is malformed (Max-Forwards defaults to 70 hops). */
export const MAX_VIAS = 128;
/** The default SIP port (RFC 3261 §19.1.2), for a Via or URI without one. */
export const SIP_DEFAULT_PORT = 5060;
/** RFC 3261 §8.1.1.7: every RFC 3261 branch starts with this. */
export const BRANCH_MAGIC_COOKIE = 'z9hG4bK';

export type SipTransport = 'udp' | 'tcp';

/** One header line as it is in the raw bytes (a folded header counts as one). */
export interface SipHeader extends HeaderLine {
  /** Canonical lower-case full name: 'via', 'call-id' (compact forms expanded). */
  readonly name: string;
}

/** One Via value (RFC 3261 §20.42). */
export interface SipVia {
  /** Upper-case: 'UDP', 'TCP', 'TLS', 'SCTP', 'WS'... */
  readonly transport: string;
  /** The sent-by host, without brackets for an IPv6 reference. */
  readonly host: string;
  /** The sent-by port, null when absent. */
  readonly port: number | null;
  readonly branch: string | null;
  readonly received: string | null;
  /** RFC 3581: null when absent, '' when present without a value (the server fills it), else the value. */
  readonly rport: string | null;
  /** Every parameter in order, names as written, null for a parameter without '='. */
  readonly params: readonly (readonly [string, string | null])[];
  /** Index in `headers` of the line holding it. */
  readonly header: number;
  /** Byte offsets of this value in the raw bytes. */
  readonly start: number;
  readonly end: number;
}

export interface SipMessage {
  readonly kind: 'request' | 'response';
  /** A request's method; a response's CSeq method. */
  readonly method: string;
  /** The Request-URI ('' for a response). */
  readonly uri: string;
  /** The status code (0 for a request). */
  readonly status: number;
  readonly reason: string;
  /** Offset of the start line's first byte (after leading CRLFs). */
  readonly startLineStart: number;
  readonly headers: readonly SipHeader[];
  readonly callId: string;
  readonly cseq: number;
  readonly cseqMethod: string;
  /** Every Via value, topmost first. */
  readonly vias: readonly SipVia[];
  readonly fromTag: string | null;
  readonly toTag: string | null;
  /** The first Contact value, unfolded, or null. */
  readonly contact: string | null;
  /** null when the message has none. */
  readonly maxForwards: number | null;
  /** The Content-Length header's value, null when absent (UDP only). */
  readonly contentLengthHeader: number | null;
  readonly bodyOffset: number;
  /** The body's length in bytes. */
  readonly bodyLength: number;
  /** bodyOffset + bodyLength: the message's bytes in `raw` (a datagram may carry more, ignored). */
  readonly length: number;
  readonly raw: Buffer;
}

export type SipParseResult =
  | { readonly ok: true; readonly message: SipMessage }
  | { readonly ok: false; readonly reason: 'malformed' | 'too-large'; readonly detail: string };

export interface SipParseOptions {
  transport: SipTransport;
  /** A larger message is rejected as 'too-large' (sip.maxMessageBytes). */
  maxMessageBytes?: number;
}

const TOKEN = /^[A-Za-z0-9.!%*_+`'~-]+$/;
const SIP_VERSION = /^SIP\/2\.0$/i;
const REQUEST_URI = /^[A-Za-z][A-Za-z0-9+.-]*:\S+$/;
/**
 * A sip: or sips: Request-URI (RFC 3261 §25.1): [user[:password]@]host[:port] then parameters and
 * headers. The user part has no raw '@', so `sip:bob@1@7.0.0.1` (which different parsers split at
 * different '@'s) is refused; the host is a name, an IPv4 address or a bracketed IPv6 address.
 */
const SIP_URI =
  /^sips?:(?:(?:[A-Za-z0-9\-_.!~*'()&=+$,;?/]|%[0-9A-Fa-f]{2})+(?::(?:[A-Za-z0-9\-_.!~*'()&=+$,]|%[0-9A-Fa-f]{2})*)?@)?(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?\.?|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?(?:[;?][^\s@]*)?$/i;
const STATUS_LINE = /^SIP\/2\.0 ([1-6]\d\d)(?:[ \t](.*))?$/i;
const CSEQ = /^(\d{1,10})[ \t\r\n]+([A-Za-z0-9.!%*_+`'~-]+)$/;
const DIGITS = /^\d{1,10}$/;
const SENT_PROTOCOL = /^([A-Za-z0-9.!%*_+`'~-]+)[ \t\r\n]*\/[ \t\r\n]*([A-Za-z0-9.!%*_+`'~-]+)[ \t\r\n]*\/[ \t\r\n]*([A-Za-z0-9.!%*_+`'~-]+)[ \t\r\n]+/;
const HOST_PORT = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+))(?::(\d{1,5}))?$/;
const MAX_CSEQ = 2 ** 31 - 1;

const CR = 13;
const LF = 10;

/** Canonical lower-case name of a header name as written (compact forms expanded). */
export function canonicalHeaderName(name: string): string {
  const lower = name.toLowerCase();
  return lower.length === 1 ? (SIP_COMPACT_FORMS[lower] ?? lower) : lower;
}

function param(params: readonly (readonly [string, string | null])[], name: string): string | null | undefined {
  for (const [k, v] of params) if (k.toLowerCase() === name) return v;
  return undefined;
}

/** Parses a host[:port] (IPv6 in brackets); null when it is not one. */
export function parseSentBy(text: string): { host: string; port: number | null } | null {
  const m = HOST_PORT.exec(text);
  if (!m) return null;
  const port = m[3] === undefined ? null : Number(m[3]);
  if (port !== null && (port < 1 || port > 65535)) return null;
  return { host: (m[1] ?? m[2])!, port };
}

/** Parses one Via value (RFC 3261 §20.42: sent-protocol LWS sent-by *( SEMI via-params )). */
function parseVia(text: string, header: number, start: number, end: number): SipVia {
  const m = SENT_PROTOCOL.exec(text);
  if (!m || m[1]!.toUpperCase() !== 'SIP' || m[2] !== '2.0') fail('Via: expected SIP/2.0/<transport> <sent-by>');
  const rest = text.slice(m[0].length);
  const semi = rest.indexOf(';');
  const sentBy = (semi === -1 ? rest : rest.slice(0, semi)).replace(/[ \t\r\n]*:[ \t\r\n]*/, ':').trim();
  const hp = parseSentBy(sentBy);
  if (!hp) fail(`Via: bad sent-by "${sentBy}"`);
  const params = semi === -1 ? [] : parseParams(unfold(rest.slice(semi + 1)));
  const branch = param(params, 'branch');
  const received = param(params, 'received');
  const rport = param(params, 'rport');
  return {
    transport: m[3]!.toUpperCase(),
    host: hp.host,
    port: hp.port,
    branch: branch ?? null,
    received: received ?? null,
    rport: rport === undefined ? null : (rport ?? ''),
    params,
    header,
    start,
    end,
  };
}

/**
 * The header parameters of a From/To/Contact/Route value (RFC 3261 §20.10): after the closing '>' of
 * a name-addr, or after the first ';' of a bare addr-spec (whose parameters are all header parameters).
 */
export function nameAddrParams(value: string): [string, string | null][] {
  let quoted = false;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (quoted) {
      if (c === 92) i++;
      else if (c === 34) quoted = false;
    } else if (c === 34) quoted = true;
    else if (c === 60) {
      const close = value.indexOf('>', i + 1);
      return close === -1 ? [] : parseParams(value.slice(close + 1));
    } else if (c === 59) return parseParams(value.slice(i + 1));
  }
  return [];
}

/** The URI of a name-addr or addr-spec value: inside <> when present, else up to the first ';'. */
export function nameAddrUri(value: string): string {
  const open = value.indexOf('<');
  if (open !== -1) {
    const close = value.indexOf('>', open + 1);
    return value.slice(open + 1, close === -1 ? value.length : close).trim();
  }
  const semi = value.indexOf(';');
  return (semi === -1 ? value : value.slice(0, semi)).trim();
}

/** The host, port and parameters of a sip: or sips: URI; null for anything else. */
export function parseSipUri(uri: string): { host: string; port: number | null; params: [string, string | null][] } | null {
  const m = /^sips?:(?:[^@]*@)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?([^?]*)/i.exec(uri);
  if (!m) return null;
  const host = m[1]!.startsWith('[') ? m[1]!.slice(1, -1) : m[1]!;
  const port = m[2] === undefined ? null : Number(m[2]);
  return { host, port, params: parseParams(m[3] ?? '') };
}

function tagOf(value: string): string | null {
  const tag = param(nameAddrParams(value), 'tag');
  return tag ? tag : null;
}

/**
 * Parses one SIP message from `raw` (one UDP datagram, or one framed TCP message). Never throws.
 */
export function parseSipMessage(raw: Buffer, options: SipParseOptions): SipParseResult {
  if (options.maxMessageBytes !== undefined && raw.length > options.maxMessageBytes) {
    return { ok: false, reason: 'too-large', detail: `${raw.length} bytes, more than ${options.maxMessageBytes}` };
  }
  return parseOrMalformed(() => parse(raw, options.transport));
}

function parse(raw: Buffer, transport: SipTransport): SipMessage {
  const { first, startLine, text, headersFrom, body: bodyOffset } = readHead(raw);

  let kind: 'request' | 'response';
  let method = '';
  let uri = '';
  let status = 0;
  let reason = '';
  if (/^SIP\//i.test(startLine)) {
    const m = STATUS_LINE.exec(startLine);
    if (!m) fail('bad status line');
    kind = 'response';
    status = Number(m[1]);
    reason = m[2] ?? '';
  } else {
    const parts = startLine.split(' ');
    if (parts.length !== 3) fail('bad request line');
    [method, uri] = parts as [string, string, string];
    if (!TOKEN.test(method)) fail('bad method');
    if (!REQUEST_URI.test(uri) || (/^sips?:/i.test(uri) && !SIP_URI.test(uri))) fail('bad Request-URI');
    if (!SIP_VERSION.test(parts[2]!)) fail('not SIP/2.0');
    kind = 'request';
  }

  // Header lines, continuation lines joined to the previous header.
  const vias: SipVia[] = [];
  let callId = null as string | null;
  let cseqText = null as string | null;
  let fromValue = null as string | null;
  let toValue = null as string | null;
  let contact = null as string | null;
  let maxForwardsText = null as string | null;
  let contentLengthText = null as string | null;

  const headers: SipHeader[] = parseHeaderLines(text, headersFrom, {
    token: TOKEN,
    canonicalName: canonicalHeaderName,
    maxLines: MAX_HEADER_LINES,
    onHeader: ({ name, valueStart: vs, valueEnd: ve, value }, index) => {
      switch (name) {
        case 'via':
          for (const [a, b] of splitCommaList(text, vs, ve)) {
            if (a === b) fail('Via: empty value');
            if (vias.length >= MAX_VIAS) fail('too many Via values');
            vias.push(parseVia(text.slice(a, b), index, a, b));
          }
          break;
        case 'call-id':
          callId = single(callId, value, 'Call-ID');
          break;
        case 'cseq':
          cseqText = single(cseqText, value, 'CSeq');
          break;
        case 'from':
          fromValue = single(fromValue, value, 'From');
          break;
        case 'to':
          toValue = single(toValue, value, 'To');
          break;
        case 'contact':
          if (contact === null) {
            const firstValue = splitCommaList(text, vs, ve)[0]!;
            contact = unfold(text.slice(firstValue[0], firstValue[1]));
          }
          break;
        case 'max-forwards':
          maxForwardsText = single(maxForwardsText, value, 'Max-Forwards');
          break;
        case 'content-length':
          contentLengthText = single(contentLengthText, value, 'Content-Length');
          break;
      }
    },
  });

  // What routing depends on.
  const cid = callId;
  if (cid === null || cid === '' || /\s/.test(cid)) fail('no usable Call-ID');
  if (cseqText === null) fail('no CSeq');
  const cm = CSEQ.exec(cseqText);
  if (!cm) fail('bad CSeq');
  const cseq = Number(cm[1]);
  if (cseq > MAX_CSEQ) fail('CSeq number out of range');
  const cseqMethod = cm[2]!;
  if (kind === 'request' && cseqMethod !== method) fail('CSeq method differs from the request method');
  if (kind === 'response') method = cseqMethod;
  if (vias.length === 0) fail('no Via');
  if (fromValue === null) fail('no From');
  if (toValue === null) fail('no To');
  let maxForwards: number | null = null;
  const mf = maxForwardsText;
  if (mf !== null) {
    if (!DIGITS.test(mf)) fail('bad Max-Forwards');
    maxForwards = Number(mf);
  }

  // Body (RFC 3261 §18.3).
  const available = raw.length - bodyOffset;
  let contentLengthHeader: number | null = null;
  const cl = contentLengthText;
  if (cl !== null) {
    if (!DIGITS.test(cl)) fail('bad Content-Length');
    contentLengthHeader = Number(cl);
    if (contentLengthHeader > available) fail('Content-Length larger than the message');
  } else if (transport === 'tcp') {
    fail('no Content-Length on a stream transport');
  }
  const bodyLength = contentLengthHeader ?? available;

  return {
    kind,
    method,
    uri,
    status,
    reason,
    startLineStart: first,
    headers,
    callId: cid,
    cseq,
    cseqMethod,
    vias,
    fromTag: tagOf(fromValue),
    toTag: tagOf(toValue),
    contact,
    maxForwards,
    contentLengthHeader,
    bodyOffset,
    bodyLength,
    length: bodyOffset + bodyLength,
    raw,
  };
}

/** The first header named `name` (canonical lower-case), or undefined. */
export function findHeader(message: SipMessage, name: string): SipHeader | undefined {
  for (const h of message.headers) if (h.name === name) return h;
  return undefined;
}

/** Every value of every `name` header, in order, with their byte offsets in `raw`. */
export function headerValues(message: SipMessage, name: string): { header: number; start: number; end: number; value: string }[] {
  const out: { header: number; start: number; end: number; value: string }[] = [];
  let text: string | null = null;
  message.headers.forEach((h, index) => {
    if (h.name !== name) return;
    text ??= message.raw.toString('latin1', 0, message.bodyOffset);
    for (const [a, b] of splitCommaList(text, h.valueStart, h.valueEnd)) {
      if (a < b) out.push({ header: index, start: a, end: b, value: unfold(text.slice(a, b)) });
    }
  });
  return out;
}

/** A replacement of raw[start, end) by `text` (latin1); start === end inserts. */
export type SipEdit = TextEdit;

/**
 * The message's bytes (raw[0, length)) with `edits` applied. Edits must not overlap; they are applied
 * in offset order, inserts at the same offset in the order given.
 */
export function applyEdits(message: SipMessage, edits: readonly SipEdit[]): Buffer {
  return spliceEdits(message.raw, message.length, edits);
}

/** host:port as a Via sent-by or URI writes it (IPv6 in brackets). */
export function formatSipHostPort(host: string, port: number | null): string {
  const h = host.includes(':') ? `[${host}]` : host;
  return port === null ? h : `${h}:${port}`;
}

/** A Via value written back from its parts, every parameter in its original order. */
export function formatVia(via: SipVia, params: readonly (readonly [string, string | null])[] = via.params): string {
  let s = `SIP/2.0/${via.transport} ${formatSipHostPort(via.host, via.port)}`;
  for (const [k, v] of params) s += v === null ? `;${k}` : `;${k}=${v}`;
  return s;
}

/**
 * The edit a server transport makes to the top Via of a request received from `srcHost:srcPort`
 * (RFC 3261 §18.2.1: add received= when the sent-by host is not the source address; RFC 3581 §4: fill
 * an empty rport with the source port, and then always add received=). null when nothing changes.
 *
 * Responses are sent to received/rport (§18.2.2, RFC 3581 §4), so neither may keep a value the client
 * wrote: a received= that is not the source address is overwritten (a client naming another host
 * there would have responses reflected to it), and an rport carrying a value gets the real source port.
 */
export function annotateTopVia(message: SipMessage, srcHost: string, srcPort: number): SipEdit | null {
  const via = message.vias[0]!;
  const rportValue = String(srcPort);
  const setRport = via.rport !== null && via.rport !== rportValue;
  const needReceived = via.rport !== null || via.host !== srcHost || via.received !== null;
  if (!setRport && (!needReceived || via.received === srcHost)) return null;
  const params: [string, string | null][] = [];
  let haveReceived = false;
  for (const [k, v] of via.params) {
    const lower = k.toLowerCase();
    if (lower === 'rport') params.push([k, rportValue]);
    else if (lower === 'received') {
      if (haveReceived) continue; // a repeated received: one, ours
      haveReceived = true;
      params.push([k, srcHost]);
    } else params.push([k, v]);
  }
  if (needReceived && !haveReceived) params.push(['received', srcHost]);
  return { start: via.start, end: via.end, text: formatVia(via, params) };
}

/**
 * Where a response goes back to over UDP, from its Via (RFC 3261 §18.2.2: the received address if
 * present, else the sent-by host; RFC 3581 §4: the rport value if present, else the sent-by port, else
 * 5060). `via` defaults to the top one.
 */
export function responseTarget(via: SipVia): { host: string; port: number } {
  const rport = via.rport !== null && DIGITS.test(via.rport) ? Number(via.rport) : null;
  const port = rport !== null && rport >= 1 && rport <= 65535 ? rport : (via.port ?? SIP_DEFAULT_PORT);
  return { host: via.received ?? via.host, port };
}

/** The edit that removes the top Via value (its whole line when the line holds only it). */
export function removeTopVia(message: SipMessage): SipEdit {
  const top = message.vias[0]!;
  const next = message.vias[1];
  if (next && next.header === top.header) return { start: top.start, end: next.start, text: '' };
  const line = message.headers[top.header]!;
  // The line holds other values before this one only if it is not the first Via line: impossible
  // for the top Via, which is the first value of the first Via line.
  return { start: line.start, end: line.end, text: '' };
}

/**
 * A response of our own to `request`, as a UAS builds it (RFC 3261 §8.2.6): the Via values (the top
 * one annotated with received/rport for `srcHost:srcPort`), From, Call-ID and CSeq copied, To copied
 * with `toTag` added when it has none, then `extra` header lines and Content-Length: 0.
 */
export function buildSipResponse(
  request: SipMessage,
  status: number,
  reason: string,
  options: { srcHost: string; srcPort: number; toTag: string; extra?: readonly string[] },
): Buffer {
  const text = request.raw.toString('latin1', 0, request.bodyOffset);
  const annotated = annotateTopVia(request, options.srcHost, options.srcPort);
  let out = `SIP/2.0 ${status} ${reason}\r\n`;
  for (const via of request.vias) {
    const value = via === request.vias[0] && annotated ? annotated.text : unfold(text.slice(via.start, via.end));
    out += `Via: ${value}\r\n`;
  }
  for (const h of request.headers) {
    switch (h.name) {
      case 'from':
      case 'call-id':
      case 'cseq':
        out += `${headerLabel(h.name)}: ${h.value}\r\n`;
        break;
      case 'to':
        out += `To: ${h.value}${request.toTag === null ? `;tag=${options.toTag}` : ''}\r\n`;
        break;
    }
  }
  for (const line of options.extra ?? []) out += `${line}\r\n`;
  out += 'Content-Length: 0\r\n\r\n';
  return Buffer.from(out, 'latin1');
}

function headerLabel(name: string): string {
  return name === 'call-id' ? 'Call-ID' : name === 'cseq' ? 'CSeq' : name.charAt(0).toUpperCase() + name.slice(1);
}

/** What `SipStreamFramer.next()` yields. */
export type SipFrame =
  | { readonly type: 'message'; readonly bytes: Buffer }
  /** RFC 5626 §3.5.1 keep-alive ping (CRLFCRLF): answer with a CRLF pong. */
  | { readonly type: 'ping' }
  /** The stream cannot be framed: the connection must be closed. */
  | FramingError;

/**
 * Frames SIP messages out of a TCP byte stream (RFC 3261 §18.3): a header section ended by a blank
 * line, then Content-Length bytes of body. Between messages, a CRLFCRLF is an RFC 5626 keep-alive ping
 * and a lone CRLF (a pong, or the CRLFs RFC 3261 §7.5 says to ignore) is skipped. A message without
 * Content-Length, with a bad one, or larger than `maxMessageBytes` (head included) is an error after
 * which the framer yields nothing more (the stream has no resynchronisation point).
 *
 * Memory: at most maxMessageBytes plus one read chunk are buffered.
 *
 * CPU: linear in the bytes pushed, however they are chunked (`HeadBuffer`).
 */
export class SipStreamFramer extends TextStreamFramer<SipFrame> {
  constructor(private readonly maxMessageBytes: number) {
    super(maxMessageBytes);
  }

  protected messageLength(head: { body: number }, text: string): number | FramingError {
    const length = contentLengthIn(text, CONTENT_LENGTH_LINE, DIGITS) ?? 'no Content-Length on a stream transport';
    if (typeof length === 'string') return this.fail('malformed', length);
    const total = head.body + length;
    if (total > this.maxMessageBytes) return this.fail('too-large', `message of ${total} bytes, more than ${this.maxMessageBytes}`);
    return total;
  }

  protected frame(bytes: Buffer): SipFrame {
    return { type: 'message', bytes };
  }

  /**
   * Between messages: keep-alives and stray line ends. Merging is cheap here: skipped bytes are taken
   * at once, so at most 3 bytes of an unfinished CRLF / CRLFCRLF wait in front of a new chunk.
   */
  protected between(buf: Buffer): SipFrame | null | undefined {
    let skip = 0;
    for (;;) {
      if (skip >= buf.length) return this.wait(skip);
      const c = buf[skip];
      if (c === LF) {
        skip++;
        continue;
      }
      if (c !== CR) break;
      // A CR must be a CRLF, and a CRLF may be the first half of a CRLFCRLF ping.
      if (skip + 1 >= buf.length) return this.wait(skip);
      if (buf[skip + 1] !== LF) return this.fail('malformed', 'stray CR between messages');
      if (skip + 2 >= buf.length) return this.wait(skip);
      if (buf[skip + 2] === CR) {
        if (skip + 3 >= buf.length) return this.wait(skip);
        if (buf[skip + 3] !== LF) return this.fail('malformed', 'stray CR between messages');
        this.take(skip + 4);
        return { type: 'ping' };
      }
      skip += 2;
    }
    if (skip === 0) return undefined;
    this.take(skip);
    return this.next();
  }

  /** Drops `skip` bytes of line ends and waits for more. */
  private wait(skip: number): null {
    if (skip > 0) this.take(skip);
    return null;
  }
}

/** The Content-Length lines of a head, compact form `l` included, for `contentLengthIn`. */
const CONTENT_LENGTH_LINE = /(?:^|\n)(?:content-length|l)[ \t]*:[ \t]*([^\r\n]*)/gi;
