/**
 * @module Decoding a chunked HTTP/1.1 reply into HTTP/2 DATA and trailers. The bytes come from the
 * HTTP/1.1 exchange, whose scanner has already refused malformed framing (or from its own re-framing
 * during a resume), so this decoder only needs to find the data and collect the trailer lines; it
 * still fails cleanly (returns -1) on anything it does not expect rather than guess.
 */
import type { Field } from '../http/http-head.js';

const enum S {
  Size,
  Line,
  Data,
  DataCr,
  DataLf,
  Trailer,
  Done,
}

/** Trailer section bytes kept at most (the HTTP/1.1 scanner's own bound). */
const MAX_TRAILER_BYTES = 16 * 1024;

export class Dechunker {
  private state = S.Size;
  private size = 0;
  private remaining = 0;
  private line = '';
  private trailerBytes = 0;
  readonly trailers: Field[] = [];

  get done(): boolean {
    return this.state === S.Done;
  }

  /**
   * Decodes buf[start, end); `onData` gets each range of body data. Returns the bytes consumed (less
   * than end - start only once the body is complete), or -1 on framing it cannot follow.
   */
  feed(buf: Buffer, start: number, end: number, onData: (buf: Buffer, start: number, end: number) => void): number {
    let i = start;
    while (i < end) {
      switch (this.state) {
        case S.Size: {
          const c = buf[i]!;
          const v = c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : c >= 65 && c <= 70 ? c - 55 : -1;
          if (v >= 0) {
            this.size = this.size * 16 + v;
            if (this.size > Number.MAX_SAFE_INTEGER) return -1;
            i++;
          } else {
            this.state = S.Line; // extensions, up to the LF
          }
          break;
        }
        case S.Line: {
          const lf = buf.indexOf(10, i);
          if (lf < 0 || lf >= end) {
            i = end;
            break;
          }
          i = lf + 1;
          if (this.size === 0) {
            this.state = S.Trailer;
            this.line = '';
          } else {
            this.remaining = this.size;
            this.state = S.Data;
          }
          break;
        }
        case S.Data: {
          const n = Math.min(this.remaining, end - i);
          onData(buf, i, i + n);
          i += n;
          this.remaining -= n;
          if (this.remaining === 0) this.state = S.DataCr;
          break;
        }
        case S.DataCr:
          if (buf[i++] !== 13) return -1;
          this.state = S.DataLf;
          break;
        case S.DataLf:
          if (buf[i++] !== 10) return -1;
          this.state = S.Size;
          this.size = 0;
          break;
        case S.Trailer: {
          const c = buf[i++]!;
          if (++this.trailerBytes > MAX_TRAILER_BYTES) return -1;
          if (c !== 10) {
            if (c !== 13) this.line += String.fromCharCode(c);
            break;
          }
          if (this.line === '') {
            this.state = S.Done;
            return i - start;
          }
          const colon = this.line.indexOf(':');
          if (colon <= 0) return -1;
          const name = this.line.slice(0, colon).toLowerCase();
          this.trailers.push({ name, value: this.line.slice(colon + 1).replace(/^[\t ]+|[\t ]+$/g, ''), line: this.line });
          this.line = '';
          break;
        }
        case S.Done:
          return i - start;
      }
    }
    return i - start;
  }
}
