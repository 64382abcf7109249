/**
 * @module The stream framing that SIP over TCP (RFC 3261 §18.3) and RTSP (RFC 2326 §4.3) share: a
 * message is a header section ended by a blank line, then Content-Length bytes of body. Owns the byte
 * queue of a connection's unframed bytes with a linear-time search for the blank line (`HeadBuffer`),
 * the blank-line search itself (`findHeadEnd`) and the early Content-Length read the framers need
 * before a full parse. The protocol framers (`SipStreamFramer`, `RtspStreamFramer`) decide what may
 * stand between messages (keep-alives, interleaved frames) and the size bounds.
 */

const CR = 13;
const LF = 10;

/**
 * Where the header section ends in `raw`: the offset of the LF that ends the last header line
 * (`lineEnd`) and of the body (`body`), or null when there is no blank line yet. A blank line is an
 * empty line ended by CRLF or LF.
 */
export function findHeadEnd(raw: Buffer, from = 0): { lineEnd: number; body: number } | null {
  let i = raw.indexOf(LF, from);
  while (i !== -1) {
    const next = raw[i + 1];
    if (next === LF) return { lineEnd: i, body: i + 2 };
    if (next === CR && raw[i + 2] === LF) return { lineEnd: i, body: i + 3 };
    i = raw.indexOf(LF, i + 1);
  }
  return null;
}

/**
 * The bytes of a stream not framed yet, as the chunks read. Memory: what was pushed and not taken
 * (the framers bound it).
 *
 * CPU: linear in the bytes pushed, however they are chunked. Until the blank line has arrived, each
 * `scanHead()` scans only the chunks pushed since the last call (the blank line may straddle a chunk
 * boundary, so the last 2 bytes of the previous chunks are looked at again); the chunks are merged
 * once, when the head is complete.
 */
export class HeadBuffer {
  private chunks: Buffer[] = [];
  private buffered = 0;
  /** How many chunks, and bytes, of the current head were scanned for the blank line without finding it. */
  private scannedChunks = 0;
  private scannedBytes = 0;
  /**
   * seam[0, tailLength): the last (at most 2) bytes scanned, where a blank line may begin and end in
   * the next chunk; the chunk's first bytes are copied after them to look for it (no allocation).
   */
  private readonly seam = Buffer.alloc(4);
  private tailLength = 0;

  /** Bytes held. */
  get length(): number {
    return this.buffered;
  }

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
  }

  /** Everything held as one buffer (concatenated once). */
  merged(): Buffer {
    if (this.chunks.length > 1) this.chunks = [Buffer.concat(this.chunks, this.buffered)];
    return this.chunks[0]!;
  }

  /** Removes and returns the first `n` bytes; a head scan then starts again from the new first byte. */
  take(n: number): Buffer {
    const buf = this.merged();
    const out = buf.subarray(0, n);
    const rest = buf.subarray(n);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.buffered -= n;
    this.scannedChunks = 0;
    this.scannedBytes = 0;
    this.tailLength = 0;
    return out;
  }

  clear(): void {
    this.chunks = [];
    this.buffered = 0;
  }

  /**
   * The end of the head that starts at the first byte held (offsets in the whole buffer), scanning
   * only the chunks not scanned yet, each preceded by the tail of the ones before; null when the
   * blank line has not arrived. The first byte must not be a line end (framers skip those first).
   */
  scanHead(): { lineEnd: number; body: number } | null {
    while (this.scannedChunks < this.chunks.length) {
      const chunk = this.chunks[this.scannedChunks++]!;
      const seam = this.seam;
      const t = this.tailLength;
      const base = this.scannedBytes;
      this.scannedBytes += chunk.length;
      if (t > 0) {
        // A blank line that begins in the tail ends within the chunk's first 2 bytes.
        const n = t + chunk.copy(seam, t, 0, 2);
        const found = findHeadEnd(seam.subarray(0, n));
        if (found && found.lineEnd < t) return { lineEnd: base - t + found.lineEnd, body: base - t + found.body };
      }
      const found = findHeadEnd(chunk);
      if (found) return { lineEnd: base + found.lineEnd, body: base + found.body };
      const last = chunk.length - 1;
      if (last >= 1) {
        seam[0] = chunk[last - 1]!;
        seam[1] = chunk[last]!;
        this.tailLength = 2;
      } else if (t > 0) {
        seam[0] = seam[t - 1]!;
        seam[1] = chunk[0]!;
        this.tailLength = 2;
      } else {
        seam[0] = chunk[0]!;
        this.tailLength = 1;
      }
    }
    return null;
  }
}

/**
 * The Content-Length of a header section `head` (latin1, ending with its last line's LF) from the
 * lines `nameLine` matches (a regex with the g and i flags, capturing the value to the line end, see
 * the framers) whose values must match `digits`; null when there is none, or why it is unusable. Only
 * framing needs it this early; the full parse checks everything else once framed.
 */
export function contentLengthIn(head: string, nameLine: RegExp, digits: RegExp): number | null | string {
  let found: number | null = null;
  nameLine.lastIndex = 0;
  for (let m = nameLine.exec(head); m; m = nameLine.exec(head)) {
    const text = m[1]!.trim();
    if (!digits.test(text)) return 'bad Content-Length';
    const n = Number(text);
    if (found !== null && found !== n) return 'Content-Length repeated with different values';
    found = n;
  }
  return found;
}

/** The stream cannot be framed: the connection must be closed. */
export interface FramingError {
  readonly type: 'error';
  readonly reason: 'malformed' | 'too-large';
  readonly detail: string;
}

/**
 * A framer of head + Content-Length body messages over a `HeadBuffer`; a protocol says what stands
 * between messages (`between`), how long a message whose head was read is (`messageLength`), and what
 * a complete frame is (`frame`). An error ends the stream: the framer then yields nothing more (the
 * stream has no resynchronisation point) and drops what it held.
 *
 * Memory: until the blank line arrives, at most `maxHeadBytes` plus one read chunk are held; then what
 * `messageLength` allows.
 */
export abstract class TextStreamFramer<F> {
  private readonly buffer = new HeadBuffer();
  /** The whole frame's length once known, else -1. */
  private need = -1;
  /** The buffer starts with a message's first byte (what stands before it was dealt with). */
  private started = false;
  private failed = false;

  constructor(private readonly maxHeadBytes: number) {}

  /** Bytes held (an incomplete frame). */
  get bufferedBytes(): number {
    return this.buffer.length;
  }

  push(chunk: Buffer): void {
    if (this.failed || chunk.length === 0) return;
    this.buffer.push(chunk);
  }

  /** The next complete frame, or null until more bytes are pushed. */
  next(): F | FramingError | null {
    if (this.failed || this.buffer.length === 0) return null;
    if (this.need >= 0) {
      if (this.buffer.length < this.need) return null;
      const bytes = this.take(this.need);
      this.need = -1;
      return this.frame(bytes);
    }
    if (!this.started) {
      const between = this.between(this.buffer.merged());
      if (between !== undefined) return between;
      this.started = true;
    }
    const head = this.buffer.scanHead();
    if (!head) {
      if (this.buffer.length > this.maxHeadBytes) return this.fail('too-large', `header section over ${this.maxHeadBytes} bytes`);
      return null;
    }
    const length = this.messageLength(head, this.buffer.merged().toString('latin1', 0, head.lineEnd + 1));
    if (typeof length !== 'number') return length;
    this.need = length;
    return this.next();
  }

  /**
   * Called before a message starts, with every byte held (a new chunk is merged into at most what was
   * left waiting here, so keep that small): skip (`take`) what stands between messages and return the
   * next frame or null to wait, or `expect` a frame of a known length and return `next()`; undefined
   * when a message's head starts at the first byte.
   */
  protected abstract between(buf: Buffer): F | FramingError | null | undefined;

  /** The whole length of the message whose head `head` is (`text`: the head as latin1), or an error (`fail`). */
  protected abstract messageLength(head: { lineEnd: number; body: number }, text: string): number | FramingError;

  /** The frame of a message or of a frame announced with `expect`. */
  protected abstract frame(bytes: Buffer): F;

  /** The next frame is the next `length` bytes. */
  protected expect(length: number): void {
    this.need = length;
  }

  /** Removes the first `n` bytes; what follows is between messages again. */
  protected take(n: number): Buffer {
    this.started = false;
    return this.buffer.take(n);
  }

  protected fail(reason: 'malformed' | 'too-large', detail: string): FramingError {
    this.failed = true;
    this.buffer.clear();
    return { type: 'error', reason, detail };
  }
}
