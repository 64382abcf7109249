/**
 * @module Chunked transfer coding scanner (RFC 9112 §7.1). It does not decode: bytes are relayed as
 * they are, and the scanner only follows the framing to find where the message ends and to refuse
 * malformed framing (a smuggling vector). Large chunk data is skipped in one step.
 */
import type { Field } from './http-head.js';

const CR = 13;
const LF = 10;
const SP = 32;
const HTAB = 9;
const SEMI = 59;

/** More hex digits than this in a chunk size is refused (RFC 9112 leaves it open; 16 fits 64 bits). */
export const MAX_CHUNK_SIZE_DIGITS = 16;

/**
 * chunk-ext (RFC 9112 §7.1.1) as llhttp accepts it in strict mode: `;name` or `;name=value`, the
 * value a token or a quoted-string, no whitespace. A proxy that let through what its backend's
 * parser refuses would frame the rest of the stream differently from it.
 */
const CHUNK_EXT = /^(?:;[!#$%&'*+\-.^_`|~0-9A-Za-z]+(?:=(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+|"(?:[\t\x20\x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t\x20-\x7e\x80-\xff])*"))?)+$/;
const FRAMING_TRAILER = /^(?:content-length|transfer-encoding):/i;
/** A trailer field line: token ":" value without control characters (RFC 9110 §5.5). */
const TRAILER_LINE = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t\x20-\x7e\x80-\xff]*$/;

const enum S {
  Size,
  Ext,
  SizeLf,
  Data,
  DataCr,
  DataLf,
  TrailerStart,
  Trailer,
  TrailerLf,
  EndLf,
  Done,
}

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

/** A trailer line already checked against TRAILER_LINE, as a Field. */
function trailerField(line: string): Field {
  const colon = line.indexOf(':');
  return { name: line.slice(0, colon).toLowerCase(), value: line.slice(colon + 1).replace(/^[\t ]+|[\t ]+$/g, ''), line };
}

export class ChunkedScanner {
  private state = S.Size;
  private digits = 0;
  private size = 0;
  private remaining = 0;
  private trailerBytes = 0;
  /** The chunk extension or trailer line being read (bounded by maxTrailerBytes), checked at its CR. */
  private line = '';
  /** Why the framing was refused, once `scan` returned -1. */
  error = '';
  /**
   * The trailer fields, when constructed with `collectTrailers` (a reply turned into HTTP/2 DATA and
   * trailers, forward/http2/); null otherwise (relayed as they are).
   */
  readonly trailers: Field[] | null;

  constructor(
    private readonly maxTrailerBytes = 16 * 1024,
    collectTrailers = false,
  ) {
    this.trailers = collectTrailers ? [] : null;
  }

  get done(): boolean {
    return this.state === S.Done;
  }

  reset(): void {
    this.state = S.Size;
    this.digits = 0;
    this.size = 0;
    this.remaining = 0;
    this.trailerBytes = 0;
    this.line = '';
    this.error = '';
    if (this.trailers !== null) this.trailers.length = 0;
  }

  /** Where the message stands, for a proxy that must finish a chunked stream it started. */
  get position(): 'data' | 'data-crlf' | 'data-lf' | 'boundary' | 'other' {
    switch (this.state) {
      case S.Data:
        return 'data';
      case S.DataCr:
        return 'data-crlf';
      case S.DataLf:
        return 'data-lf';
      case S.Size:
        return this.digits === 0 ? 'boundary' : 'other';
      default:
        return 'other';
    }
  }

  /** Bytes of the current chunk's data still to come (in state 'data'). */
  get chunkRemaining(): number {
    return this.state === S.Data ? this.remaining : 0;
  }

  /**
   * Follows the framing over buf[start, end). Returns how many bytes belong to the message (all of
   * them unless the message ended inside the range), or -1 when the framing is malformed.
   * `onData`, when given, receives every range of chunk data (the decoded body), in order.
   */
  scan(buf: Uint8Array, start: number, end: number, onData?: (buf: Uint8Array, start: number, end: number) => void): number {
    let i = start;
    while (i < end) {
      switch (this.state) {
        case S.Size: {
          const c = buf[i]!;
          const v = hexValue(c);
          if (v >= 0) {
            if (++this.digits > MAX_CHUNK_SIZE_DIGITS) return this.fail('chunk size has too many digits');
            this.size = this.size * 16 + v;
            if (this.size > Number.MAX_SAFE_INTEGER) return this.fail('chunk size too large');
          } else if (this.digits === 0) {
            return this.fail('chunk size is not hexadecimal');
          } else if (c === CR) {
            this.state = S.SizeLf;
          } else if (c === SP || c === HTAB) {
            // Whitespace after the size: RFC 9112's BWS, but llhttp (strict) refuses it.
            return this.fail('whitespace after chunk size');
          } else if (c === SEMI) {
            this.state = S.Ext;
            this.line = ';';
          } else {
            return this.fail('chunk size is not hexadecimal');
          }
          i++;
          break;
        }
        case S.Ext: {
          // Extensions are relayed, not interpreted; they end at CR, and a bare LF is refused.
          const c = buf[i++]!;
          if (c === CR) {
            if (!CHUNK_EXT.test(this.line)) return this.fail('malformed chunk extension');
            this.line = '';
            this.state = S.SizeLf;
          } else if (c === LF) return this.fail('bare LF in chunk extension');
          else if (++this.trailerBytes > this.maxTrailerBytes) return this.fail('chunk extension too long');
          else this.line += String.fromCharCode(c);
          break;
        }
        case S.SizeLf: {
          if (buf[i++] !== LF) return this.fail('chunk size line not ended by CRLF');
          this.trailerBytes = 0;
          if (this.size === 0) {
            this.state = S.TrailerStart;
          } else {
            this.remaining = this.size;
            this.state = S.Data;
          }
          break;
        }
        case S.Data: {
          const n = Math.min(this.remaining, end - i);
          if (onData !== undefined && n > 0) onData(buf, i, i + n);
          i += n;
          this.remaining -= n;
          if (this.remaining === 0) this.state = S.DataCr;
          break;
        }
        case S.DataCr:
          if (buf[i++] !== CR) return this.fail('chunk data not followed by CRLF');
          this.state = S.DataLf;
          break;
        case S.DataLf:
          if (buf[i++] !== LF) return this.fail('chunk data not followed by CRLF');
          this.state = S.Size;
          this.digits = 0;
          this.size = 0;
          break;
        case S.TrailerStart: {
          const c = buf[i++]!;
          if (c === CR) this.state = S.EndLf;
          else if (c === LF) return this.fail('bare LF in trailer');
          else {
            this.state = S.Trailer;
            this.line = String.fromCharCode(c);
          }
          break;
        }
        case S.Trailer: {
          const c = buf[i++]!;
          if (++this.trailerBytes > this.maxTrailerBytes) return this.fail('trailer section too large');
          if (c === CR) {
            if (!TRAILER_LINE.test(this.line)) return this.fail('malformed trailer field');
            // Framing fields have no meaning in a trailer (RFC 9110 §6.5.1); llhttp checks them there.
            if (FRAMING_TRAILER.test(this.line)) return this.fail('framing field in trailer');
            if (this.trailers !== null) this.trailers.push(trailerField(this.line));
            this.line = '';
            this.state = S.TrailerLf;
          } else if (c === LF) return this.fail('bare LF in trailer');
          else this.line += String.fromCharCode(c);
          break;
        }
        case S.TrailerLf:
          if (buf[i++] !== LF) return this.fail('trailer line not ended by CRLF');
          this.state = S.TrailerStart;
          break;
        case S.EndLf:
          if (buf[i++] !== LF) return this.fail('chunked body not ended by CRLF');
          this.state = S.Done;
          return i - start;
        case S.Done:
          return i - start;
      }
    }
    return i - start;
  }

  private fail(why: string): number {
    this.error = why;
    return -1;
  }
}
