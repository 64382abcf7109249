/**
 * @module The RTSP inspector (RFC 2326, RTSP/1.0): parses one RTSP message framed from a TCP stream by
 * `RtspStreamFramer` into what routing and the media relay need — start line, CSeq, Session (with its
 * `;timeout=`), the Transport specs with their client_port/server_port (RFC 2326 §12.39), Content-Length
 * and the body offset — keeping the byte offsets of every header line so that the forwarder rewrites a
 * message by splicing a few edits into the original bytes (`applyRtspEdits`). Also frames the
 * interleaved binary data of RFC 2326 §10.12 (`$` channel length data) and builds a proxy's own replies.
 *
 * Never throws on any input: `parseRtspMessage` returns a result union. Malformed (strict where
 * routing or rewriting depends on it): no blank line after the headers; a start line that is neither
 * `Method SP Request-URI SP RTSP/d.d` nor `RTSP/d.d SP 3DIGIT [SP reason]` (status 100-599); a header
 * line without a colon or with a name that is not a token; a folded line before any header; a missing
 * or non-numeric CSeq (RFC 2326 §12.17: every request and response carries one); a CSeq, Session or
 * Content-Length repeated with different values; a Session id that is not 1*(ALPHA / DIGIT / safe)
 * (§3.4) or is longer than MAX_SESSION_ID_CHARS; a non-numeric Session timeout; a Content-Length larger
 * than the bytes present; more than MAX_HEADER_LINES header lines. Lenient where harmless: bare LF line
 * ends, LWS folding (values unfolded with one SP), case-insensitive header names, unknown headers, and
 * Transport specs the inspector does not understand (kept as they are, never rewritten).
 *
 * The head is decoded as latin1 (one char per byte), so string indices are byte offsets.
 */
import { fail, parseHeaderLines, parseOrMalformed, parseParams, readHead, single, spliceEdits, splitCommaList, unfold, type HeaderLine, type TextEdit } from './text-headers.js';
import { contentLengthIn, TextStreamFramer, type FramingError } from './text-stream-framer.js';

/** A message with more header lines than this is malformed (bounds the work per message). */
export const RTSP_MAX_HEADER_LINES = 256;
/** RFC 2326 §3.4 sets no bound on a session id; the session table keeps it as a key, so one is set here. */
export const MAX_SESSION_ID_CHARS = 256;
/** Transport specs looked at in one Transport header (the rest are passed through untouched). */
export const MAX_TRANSPORT_SPECS = 32;

export interface RtspHeader extends HeaderLine {
  /** Lower-case name as written. */
  readonly name: string;
}

/** The Session header (RFC 2326 §12.37): `session-id [;timeout=delta-seconds]`. */
export interface RtspSession {
  readonly id: string;
  /** Seconds, null when absent (the default is 60 s). */
  readonly timeoutS: number | null;
}

export type PortRange = readonly [number, number];

/** One transport-spec of a Transport header (RFC 2326 §12.39). */
export interface TransportSpec {
  /** Offsets of the spec in the message's raw bytes. */
  readonly start: number;
  readonly end: number;
  /** Upper-case `RTP/AVP`, `RTP/AVP/UDP`, `RTP/AVP/TCP`... as written before the first ';'. */
  readonly protocol: string;
  /** The lower transport: UDP when the spec names none (§12.39: "the default is UDP"). */
  readonly lower: 'UDP' | 'TCP' | 'OTHER';
  /** false when the spec says multicast; true otherwise (unicast is the default for RTP/AVP). */
  readonly unicast: boolean;
  /** Parameters in order, names lower-cased, null for a parameter without '='. */
  readonly params: readonly (readonly [string, string | null])[];
  readonly clientPort: PortRange | null;
  readonly serverPort: PortRange | null;
  readonly interleaved: PortRange | null;
}

export interface RtspMessage {
  readonly kind: 'request' | 'response';
  readonly method: string;
  readonly uri: string;
  /** `RTSP/1.0` as written (upper-cased). */
  readonly version: string;
  readonly status: number;
  readonly reason: string;
  readonly headers: readonly RtspHeader[];
  readonly cseq: number;
  readonly session: RtspSession | null;
  /** Index in `headers` of the Transport header, -1 when absent. */
  readonly transportHeader: number;
  readonly transports: readonly TransportSpec[];
  readonly bodyOffset: number;
  readonly bodyLength: number;
  /** bodyOffset + bodyLength. */
  readonly length: number;
  readonly raw: Buffer;
}

export type RtspParseResult =
  | { readonly ok: true; readonly message: RtspMessage }
  | { readonly ok: false; readonly reason: 'malformed'; readonly detail: string };

const TOKEN = /^[A-Za-z0-9.!%*_+`'~#$&^|-]+$/;
const REQUEST_LINE = /^([A-Za-z0-9.!%*_+`'~#$&^|-]+) (\S+) (RTSP\/\d\.\d)$/i;
const STATUS_LINE = /^(RTSP\/\d\.\d) ([1-5]\d\d)(?:[ \t](.*))?$/i;
const DIGITS = /^\d{1,9}$/;
/** RFC 2326 §3.4: session-id = 1*( ALPHA | DIGIT | safe ), safe = "$" | "-" | "_" | "." | "+". */
const SESSION_ID = /^[A-Za-z0-9$\-_.+]+$/;
const PORT_RANGE = /^(\d{1,5})(?:-(\d{1,5}))?$/;
const CHANNEL_RANGE = /^(\d{1,3})(?:-(\d{1,3}))?$/;

const CR = 13;
const LF = 10;
const DOLLAR = 36;

/** `a[-b]` with ports in [0, 65535] (a single port p means p-p+1 for RTP, §12.39: "port=3456-3457"). */
function portRange(text: string | null, max: number, re: RegExp): PortRange | null {
  if (text === null) return null;
  const m = re.exec(text.trim());
  if (!m) return null;
  const a = Number(m[1]);
  const b = m[2] === undefined ? a + 1 : Number(m[2]);
  if (a > max || b > max || b < a) return null;
  return [a, b];
}

/**
 * Parses a Transport header value (RFC 2326 §12.39) into its specs; `base` is the value's offset in the
 * raw bytes. A spec with unparsable port parameters has those ports null (it is then never rewritten).
 */
export function parseTransport(text: string, from: number, to: number, base = 0): TransportSpec[] {
  const out: TransportSpec[] = [];
  for (const [a, b] of splitCommaList(text, from, to)) {
    if (out.length >= MAX_TRANSPORT_SPECS) break;
    if (a === b) continue;
    const spec = unfold(text.slice(a, b));
    const semi = spec.indexOf(';');
    const protocol = (semi === -1 ? spec : spec.slice(0, semi)).trim().toUpperCase();
    const params = (semi === -1 ? [] : parseParams(spec.slice(semi + 1))).map(([k, v]) => [k.toLowerCase(), v] as const);
    const parts = protocol.split('/');
    const lowerName = parts[2] ?? 'UDP';
    const lower = lowerName === 'UDP' ? 'UDP' : lowerName === 'TCP' ? 'TCP' : 'OTHER';
    const get = (name: string): string | null => {
      for (const [k, v] of params) if (k === name) return v;
      return null;
    };
    const has = (name: string): boolean => params.some(([k]) => k === name);
    out.push({
      start: base + a - from,
      end: base + b - from,
      protocol,
      lower,
      unicast: !has('multicast'),
      params,
      clientPort: portRange(get('client_port'), 65535, PORT_RANGE),
      serverPort: portRange(get('server_port'), 65535, PORT_RANGE),
      interleaved: portRange(get('interleaved'), 255, CHANNEL_RANGE),
    });
  }
  return out;
}

/** Whether the relay handles this spec: RTP over UDP unicast (RTP/AVP or RTP/AVP/UDP). */
export function isRelayableTransport(spec: TransportSpec): boolean {
  return spec.protocol.startsWith('RTP/AVP') && spec.lower === 'UDP' && spec.unicast && spec.interleaved === null;
}

/** A transport-spec written back with some parameters replaced (`set`, by lower-case name); order kept. */
export function formatTransportSpec(spec: TransportSpec, set: Readonly<Record<string, string>>): string {
  let s = spec.protocol;
  for (const [k, v] of spec.params) {
    const value = Object.hasOwn(set, k) ? set[k]! : v;
    s += value === null ? `;${k}` : `;${k}=${value}`;
  }
  return s;
}

/** Parses one RTSP message (a framed TCP message). Never throws. */
export function parseRtspMessage(raw: Buffer): RtspParseResult {
  return parseOrMalformed(() => parse(raw));
}

function parse(raw: Buffer): RtspMessage {
  const { startLine, text, headersFrom, body: bodyOffset } = readHead(raw);
  let kind: 'request' | 'response';
  let method = '';
  let uri = '';
  let version: string;
  let status = 0;
  let reason = '';
  const sm = STATUS_LINE.exec(startLine);
  if (sm) {
    kind = 'response';
    version = sm[1]!.toUpperCase();
    status = Number(sm[2]);
    reason = sm[3] ?? '';
  } else {
    const rm = REQUEST_LINE.exec(startLine);
    if (!rm) fail(/^RTSP\//i.test(startLine) ? 'bad status line' : 'bad request line');
    kind = 'request';
    method = rm[1]!;
    uri = rm[2]!;
    version = rm[3]!.toUpperCase();
  }

  let cseqText = null as string | null;
  let sessionText = null as string | null;
  let lengthText = null as string | null;
  let transportHeader = -1;
  const headers: RtspHeader[] = parseHeaderLines(text, headersFrom, {
    token: TOKEN,
    canonicalName: (name) => name.toLowerCase(),
    maxLines: RTSP_MAX_HEADER_LINES,
    onHeader: ({ name, value }, index) => {
      switch (name) {
        case 'cseq':
          cseqText = single(cseqText, value, 'CSeq');
          break;
        case 'session':
          sessionText = single(sessionText, value, 'Session');
          break;
        case 'content-length':
          lengthText = single(lengthText, value, 'Content-Length');
          break;
        case 'transport':
          // Several Transport lines are one comma-separated list (RFC 2616 §4.2); the first one is used.
          if (transportHeader === -1) transportHeader = index;
          break;
      }
    },
  });

  const cs = cseqText;
  if (cs === null) fail('no CSeq');
  if (!DIGITS.test(cs)) fail('bad CSeq');
  const cseq = Number(cs);

  let session: RtspSession | null = null;
  const st = sessionText;
  if (st !== null) {
    const semi = st.indexOf(';');
    const id = (semi === -1 ? st : st.slice(0, semi)).trim();
    if (id.length === 0 || id.length > MAX_SESSION_ID_CHARS || !SESSION_ID.test(id)) fail('bad Session id');
    let timeoutS: number | null = null;
    if (semi !== -1) {
      for (const [k, v] of parseParams(st.slice(semi + 1))) {
        if (k.toLowerCase() !== 'timeout') continue;
        if (v === null || !DIGITS.test(v)) fail('bad Session timeout');
        timeoutS = Number(v);
      }
    }
    session = { id, timeoutS };
  }

  const transports =
    transportHeader === -1
      ? []
      : parseTransport(text, headers[transportHeader]!.valueStart, headers[transportHeader]!.valueEnd, headers[transportHeader]!.valueStart);

  let bodyLength = 0;
  const lt = lengthText;
  if (lt !== null) {
    if (!DIGITS.test(lt)) fail('bad Content-Length');
    bodyLength = Number(lt);
    if (bodyLength > raw.length - bodyOffset) fail('Content-Length larger than the message');
  }
  return {
    kind,
    method,
    uri,
    version,
    status,
    reason,
    headers,
    cseq,
    session,
    transportHeader,
    transports,
    bodyOffset,
    bodyLength,
    length: bodyOffset + bodyLength,
    raw,
  };
}

/** A replacement of raw[start, end) by `text` (latin1). */
export type RtspEdit = TextEdit;

/** The message's bytes with non-overlapping `edits` applied in offset order. */
export function applyRtspEdits(message: RtspMessage, edits: readonly RtspEdit[]): Buffer {
  if (edits.length === 0) return message.raw.subarray(0, message.length);
  return spliceEdits(message.raw, message.length, edits);
}

/**
 * A reply of our own to `request` (RFC 2326 §7): status line, the request's CSeq (when it could be
 * read: a 400 to an unparsable request may not have one) and Session, then `extra` lines.
 */
export function buildRtspResponse(status: number, reason: string, request: { cseq: number | null; session?: RtspSession | null }, extra: readonly string[] = []): Buffer {
  let out = `RTSP/1.0 ${status} ${reason}\r\n`;
  if (request.cseq !== null) out += `CSeq: ${request.cseq}\r\n`;
  if (request.session) out += `Session: ${request.session.id}\r\n`;
  for (const line of extra) out += `${line}\r\n`;
  out += 'Content-Length: 0\r\n\r\n';
  return Buffer.from(out, 'latin1');
}

/** The CSeq of a head that failed to parse, when a CSeq line can still be read (for the 400's CSeq). */
export function salvageCseq(raw: Buffer): number | null {
  const head = raw.toString('latin1', 0, Math.min(raw.length, 64 * 1024));
  const m = /(?:^|\n)cseq[ \t]*:[ \t]*(\d{1,9})[ \t]*\r?\n/i.exec(head);
  return m ? Number(m[1]) : null;
}

/** What `RtspStreamFramer.next()` yields. */
export type RtspFrame =
  | { readonly type: 'message'; readonly bytes: Buffer }
  /** RFC 2326 §10.12: `$`, channel, 16-bit length, data; `bytes` is the whole frame, header included. */
  | { readonly type: 'interleaved'; readonly channel: number; readonly bytes: Buffer }
  /** The stream cannot be framed: the connection must be closed. */
  | FramingError;

/**
 * Frames RTSP messages and interleaved binary frames out of a TCP byte stream: a message is a header
 * section ended by a blank line, then Content-Length bytes of body (RFC 2326 §4.3: no Content-Length
 * means no body); a `$` where a message would start begins an interleaved frame of 4 + length bytes.
 * CRLFs between messages are skipped. A header section over `maxHeaderBytes`, a body over
 * `maxBodyBytes`, or an unusable Content-Length is an error after which the framer yields nothing more
 * (the stream has no resynchronisation point).
 *
 * Memory: at most maxHeaderBytes + maxBodyBytes plus one read chunk are buffered.
 *
 * CPU: linear in the bytes pushed, however they are chunked (`HeadBuffer`).
 */
export class RtspStreamFramer extends TextStreamFramer<RtspFrame> {
  /** The channel of the interleaved frame expected, else -1. */
  private needChannel = -1;

  constructor(
    private readonly maxHeaderBytes: number,
    private readonly maxBodyBytes: number,
  ) {
    super(maxHeaderBytes);
  }

  /**
   * Between frames: line ends are skipped, then a `$` begins an interleaved frame. Merging is cheap
   * here: skipped bytes are taken at once, and at most 3 bytes of a `$` header wait for a new chunk.
   */
  protected between(buf: Buffer): RtspFrame | null | undefined {
    let skip = 0;
    while (skip < buf.length && (buf[skip] === CR || buf[skip] === LF)) skip++;
    if (skip > 0) {
      this.take(skip);
      if (this.bufferedBytes === 0) return null;
      buf = buf.subarray(skip);
    }
    if (buf[0] !== DOLLAR) return undefined;
    if (buf.length < 4) return null;
    this.needChannel = buf[1]!;
    this.expect(4 + buf.readUInt16BE(2));
    return this.next();
  }

  protected messageLength(head: { body: number }, text: string): number | FramingError {
    if (head.body > this.maxHeaderBytes) return this.fail('too-large', `header section over ${this.maxHeaderBytes} bytes`);
    const length = contentLengthIn(text, CONTENT_LENGTH_LINE, DIGITS) ?? 0;
    if (typeof length === 'string') return this.fail('malformed', length);
    if (length > this.maxBodyBytes) return this.fail('too-large', `body of ${length} bytes, more than ${this.maxBodyBytes}`);
    return head.body + length;
  }

  protected frame(bytes: Buffer): RtspFrame {
    const channel = this.needChannel;
    this.needChannel = -1;
    return channel >= 0 ? { type: 'interleaved', channel, bytes } : { type: 'message', bytes };
  }
}

/** The Content-Length lines of a head, for `contentLengthIn` (absent: no body, RFC 2326 §4.3). */
const CONTENT_LENGTH_LINE = /(?:^|\n)content-length[ \t]*:[ \t]*([^\r\n]*)/gi;
