/**
 * @module A raw TCP peer for HTTP end-to-end tests: writes exact bytes and parses exactly one HTTP/1.1
 * message at a time from one buffered stream, so pipelined responses, interim 1xx responses and the
 * bytes of an upgraded tunnel are all read in order from the same buffer. Nothing here is lenient on
 * purpose: a test must see what the proxy really sent (raw chunk framing, duplicate header lines,
 * truncation, reset). `wrapSocket` also serves scripted backends, which read requests with
 * `readRequest()`.
 */
import net from 'node:net';

/** How long one read may wait for bytes before it rejects with what was seen so far. */
export const DEFAULT_READ_TIMEOUT_MS = 5_000;
/** A head larger than this is a test failure, not something to buffer forever. */
const MAX_HEAD_BYTES = 1024 * 1024;

export interface Address {
  readonly host: string;
  readonly port: number;
}

/** Lower-cased field name → every value, one entry per header line, in arrival order. */
export type HeaderMap = Record<string, string[]>;

interface MessageCommon {
  /** "HTTP/1.1" */
  readonly version: string;
  readonly headers: HeaderMap;
  /** [name as sent, value] per line, in order. */
  readonly rawHeaders: ReadonlyArray<readonly [string, string]>;
  /** The head exactly as received, CRLFCRLF included (latin1). */
  readonly rawHead: string;
  /** Decoded body (chunk framing removed). */
  readonly body: Buffer;
  /** Body bytes exactly as on the wire (chunk sizes, CRLFs and trailers included when chunked). */
  readonly rawBody: Buffer;
  readonly chunked: boolean;
  readonly trailers: HeaderMap;
  /** Joined values of a field (", "), or undefined. */
  get(name: string): string | undefined;
}

export interface RawResponse extends MessageCommon {
  readonly status: number;
  readonly reason: string;
  /** The body ran until the peer closed (no Content-Length, not chunked). */
  readonly closeDelimited: boolean;
  /** The body length when a `sink` consumed it instead of `body`. */
  readonly bodyLength: number;
}

export interface RawRequest extends MessageCommon {
  readonly method: string;
  readonly target: string;
}

export interface ReadResponseOptions {
  /** The response answers a HEAD request: no body whatever the headers say. */
  head?: boolean;
  timeoutMs?: number;
  /**
   * Receive decoded body bytes here instead of collecting them (for bodies of hundreds of MB);
   * `body` and `rawBody` are then empty and `bodyLength` counts.
   */
  sink?: (chunk: Buffer) => void;
}

/** The stream ended or broke before a whole message arrived. */
export class IncompleteMessageError extends Error {
  constructor(
    message: string,
    /** The peer reset the connection (ECONNRESET), rather than a clean FIN. */
    readonly reset: boolean,
    /** Status of the response whose body was cut, if its head arrived. */
    readonly status: number | undefined,
    /** Decoded body bytes that did arrive. */
    readonly received: number,
  ) {
    super(message);
    this.name = 'IncompleteMessageError';
  }
}

/** The peer sent bytes that are not HTTP/1.1 as this parser reads it. */
export class MalformedMessageError extends Error {
  override name = 'MalformedMessageError';
}

/** A read waited longer than its timeout. */
export class ReadTimeoutError extends Error {
  override name = 'ReadTimeoutError';
}

export interface CloseInfo {
  /** The connection ended with ECONNRESET (or another socket error) rather than a FIN. */
  readonly reset: boolean;
  readonly error?: Error;
}

export interface UntilClose extends CloseInfo {
  readonly data: Buffer;
}

function printable(buf: Buffer, max = 300): string {
  const s = buf.subarray(0, max).toString('latin1');
  return JSON.stringify(s) + (buf.length > max ? `…(+${buf.length - max} bytes)` : '');
}

function makeGet(headers: HeaderMap): (name: string) => string | undefined {
  return (name) => headers[name.toLowerCase()]?.join(', ');
}

function parseFields(lines: string[], what: string): { headers: HeaderMap; rawHeaders: [string, string][] } {
  const headers: HeaderMap = Object.create(null) as HeaderMap;
  const rawHeaders: [string, string][] = [];
  for (const line of lines) {
    const colon = line.indexOf(':');
    if (colon <= 0) throw new MalformedMessageError(`${what}: header line without name/colon: ${JSON.stringify(line)}`);
    const name = line.slice(0, colon);
    const value = line.slice(colon + 1).trim();
    rawHeaders.push([name, value]);
    (headers[name.toLowerCase()] ??= []).push(value);
  }
  return { headers, rawHeaders };
}

/** Connect to `addr` and wrap the socket. Rejects with a clear message on refusal or timeout. */
export function connect(addr: Address, opts: { timeoutMs?: number } = {}): Promise<RawConnection> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_READ_TIMEOUT_MS;
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: addr.host, port: addr.port });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new ReadTimeoutError(`connect to ${addr.host}:${addr.port}: no connection after ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeListener('error', onError);
      resolve(new RawConnection(socket, `${addr.host}:${addr.port}`));
    });
    const onError = (err: Error): void => {
      clearTimeout(timer);
      reject(new Error(`connect to ${addr.host}:${addr.port} failed: ${err.message}`, { cause: err }));
    };
    socket.once('error', onError);
  });
}

/** Wrap an already connected socket (e.g. one a scripted backend accepted). */
export function wrapSocket(socket: net.Socket, label = 'peer'): RawConnection {
  return new RawConnection(socket, label);
}

/**
 * One buffered byte stream with HTTP/1.1 message readers on top. All readers consume from the same
 * buffer, so they must be awaited one after another.
 */
export class RawConnection {
  private buf: Buffer = Buffer.alloc(0);
  private ended = false;
  private wasReset = false;
  private error: Error | undefined;
  private wake: (() => void) | null = null;
  /** Resolves when the socket is fully closed; never rejects. */
  readonly closed: Promise<CloseInfo>;
  /** Total bytes received from the peer. */
  bytesIn = 0;

  private readonly onData = (chunk: Buffer): void => {
    this.bytesIn += chunk.length;
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    this.notify();
  };

  constructor(readonly socket: net.Socket, readonly label: string) {
    socket.on('data', this.onData);
    socket.on('end', () => {
      this.ended = true;
      this.notify();
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      this.error = err;
      this.wasReset = true;
      this.ended = true;
      this.notify();
    });
    this.closed = new Promise((resolve) => {
      socket.once('close', () => {
        this.ended = true;
        this.notify();
        resolve(this.error ? { reset: true, error: this.error } : { reset: this.wasReset });
      });
    });
  }

  /** Bytes received and not yet consumed by a reader. */
  get buffered(): number {
    return this.buf.length;
  }

  /** The stream has ended (FIN, reset or error); buffered bytes may remain. */
  get isEnded(): boolean {
    return this.ended;
  }

  write(data: string | Uint8Array): boolean {
    return this.socket.write(typeof data === 'string' ? Buffer.from(data, 'latin1') : data);
  }

  /** Write and resolve once the bytes were handed to the kernel. */
  writeAsync(data: string | Uint8Array): Promise<void> {
    return new Promise((resolve, reject) => {
      this.socket.write(typeof data === 'string' ? Buffer.from(data, 'latin1') : data, (err) =>
        err ? reject(err) : resolve(),
      );
    });
  }

  /** Half-close: send FIN, keep reading. */
  end(): void {
    this.socket.end();
  }

  destroy(): void {
    this.socket.destroy();
  }

  /** Stop reading from the kernel (the peer's writes stall once the TCP windows fill). */
  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }

  private notify(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  /** Wait until more bytes arrive or the stream ends; false when nothing more can come. */
  private async more(deadline: number, what: () => string): Promise<boolean> {
    if (this.ended) return false;
    const left = deadline - Date.now();
    if (left <= 0) throw new ReadTimeoutError(`${this.label}: timed out ${what()}`);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.wake = null;
        reject(new ReadTimeoutError(`${this.label}: timed out ${what()}`));
      }, left);
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    return true;
  }

  private take(n: number): Buffer {
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  /** Read exactly `n` bytes (e.g. from an upgraded tunnel). */
  async read(n: number, opts: { timeoutMs?: number } = {}): Promise<Buffer> {
    const deadline = Date.now() + (opts.timeoutMs ?? DEFAULT_READ_TIMEOUT_MS);
    while (this.buf.length < n) {
      const ok = await this.more(deadline, () => `waiting for ${n} bytes, have ${printable(this.buf)}`);
      if (!ok && this.buf.length < n) {
        throw new IncompleteMessageError(
          `${this.label}: stream ended (${this.wasReset ? 'reset' : 'FIN'}) after ${this.buf.length} of ${n} bytes`,
          this.wasReset,
          undefined,
          this.buf.length,
        );
      }
    }
    return Buffer.from(this.take(n));
  }

  /** Whatever is buffered, waiting for at least one byte (at most `max`). Empty at end of stream. */
  async readAvailable(max = Infinity, opts: { timeoutMs?: number } = {}): Promise<Buffer> {
    const deadline = Date.now() + (opts.timeoutMs ?? DEFAULT_READ_TIMEOUT_MS);
    while (this.buf.length === 0) {
      const ok = await this.more(deadline, () => 'waiting for any byte');
      if (!ok) return Buffer.alloc(0);
    }
    return this.take(Math.min(max, this.buf.length));
  }

  /** Everything until the peer closes (FIN or reset). Resolves on reset too, with `reset: true`. */
  async readUntilClose(opts: { timeoutMs?: number } = {}): Promise<UntilClose> {
    const deadline = Date.now() + (opts.timeoutMs ?? DEFAULT_READ_TIMEOUT_MS);
    const parts: Buffer[] = [];
    for (;;) {
      if (this.buf.length) parts.push(this.take(this.buf.length));
      const ok = await this.more(deadline, () => {
        const got = Buffer.concat(parts);
        return `waiting for the connection to close; it is still open after ${got.length} more bytes: ${printable(got)}`;
      });
      if (!ok) break;
    }
    if (this.buf.length) parts.push(this.take(this.buf.length));
    const info = await this.closed;
    return { data: Buffer.concat(parts), reset: info.reset || this.wasReset, ...(info.error ? { error: info.error } : {}) };
  }

  /** Read one head (start line + fields + CRLFCRLF). Returns null when the stream ended cleanly first. */
  private async readHead(deadline: number, what: string): Promise<{ start: string; lines: string[]; raw: string } | null> {
    for (;;) {
      const idx = this.buf.indexOf('\r\n\r\n', 0, 'latin1');
      if (idx >= 0) {
        const raw = this.take(idx + 4).toString('latin1');
        const all = raw.slice(0, -4).split('\r\n');
        return { start: all[0]!, lines: all.slice(1), raw };
      }
      if (this.buf.length > MAX_HEAD_BYTES) {
        throw new MalformedMessageError(`${this.label}: ${what} head over ${MAX_HEAD_BYTES} bytes: ${printable(this.buf)}`);
      }
      const ok = await this.more(deadline, () => `waiting for a ${what} head; have ${printable(this.buf)}`);
      if (!ok) {
        if (this.buf.length === 0 && !this.wasReset) return null;
        throw new IncompleteMessageError(
          `${this.label}: stream ended (${this.wasReset ? 'reset' : 'FIN'}) before a complete ${what} head; have ${printable(this.buf)}`,
          this.wasReset,
          undefined,
          0,
        );
      }
    }
  }

  private async readBody(
    headers: HeaderMap,
    mode: 'none' | 'framed' | 'close',
    deadline: number,
    what: string,
    status: number | undefined,
    sink: ((chunk: Buffer) => void) | undefined,
  ): Promise<{ body: Buffer; rawBody: Buffer; chunked: boolean; trailers: HeaderMap; closeDelimited: boolean; length: number }> {
    const trailers: HeaderMap = Object.create(null) as HeaderMap;
    const bodyParts: Buffer[] = [];
    const rawParts: Buffer[] = [];
    let length = 0;
    const emit = (b: Buffer, raw: boolean): void => {
      if (sink) {
        sink(b);
        length += b.length;
        return;
      }
      if (b.length) bodyParts.push(b);
      length += b.length;
      if (raw) rawParts.push(b);
    };
    const cut = (detail: string): IncompleteMessageError =>
      new IncompleteMessageError(
        `${this.label}: ${what} body truncated (${this.wasReset ? 'reset' : 'FIN'}) ${detail}`,
        this.wasReset,
        status,
        length,
      );
    const result = (chunked: boolean, closeDelimited: boolean) => ({
      body: Buffer.concat(bodyParts),
      rawBody: Buffer.concat(rawParts),
      chunked,
      trailers,
      closeDelimited,
      length,
    });
    if (mode === 'none') return result(false, false);

    const te = headers['transfer-encoding'];
    const chunked = te !== undefined && /(?:^|,)\s*chunked\s*$/i.test(te.join(', '));
    if (chunked) {
      const readLine = async (): Promise<string> => {
        for (;;) {
          const idx = this.buf.indexOf('\r\n', 0, 'latin1');
          if (idx >= 0) {
            const line = this.take(idx + 2);
            if (!sink) rawParts.push(line);
            return line.subarray(0, idx).toString('latin1');
          }
          const ok = await this.more(deadline, () => `reading a chunk line of a ${what} body; have ${printable(this.buf)}`);
          if (!ok) throw cut(`in a chunk line after ${length} body bytes`);
        }
      };
      for (;;) {
        const sizeLine = await readLine();
        const m = /^([0-9a-fA-F]+)(?:\s*;.*)?$/.exec(sizeLine);
        if (!m) throw new MalformedMessageError(`${this.label}: bad chunk size line ${JSON.stringify(sizeLine)} in ${what}`);
        const size = parseInt(m[1]!, 16);
        if (size === 0) break;
        let left = size;
        while (left > 0) {
          if (this.buf.length === 0) {
            const ok = await this.more(deadline, () => `reading chunk data of a ${what} body (${left} of ${size} left)`);
            if (!ok) throw cut(`inside a chunk, ${left} of ${size} bytes missing, after ${length} body bytes`);
          }
          const piece = this.take(Math.min(left, this.buf.length));
          left -= piece.length;
          if (sink) {
            sink(piece);
            length += piece.length;
          } else {
            bodyParts.push(piece);
            rawParts.push(piece);
            length += piece.length;
          }
        }
        const crlf = await readLine();
        if (crlf !== '') throw new MalformedMessageError(`${this.label}: chunk not followed by CRLF in ${what}: ${JSON.stringify(crlf)}`);
      }
      for (;;) {
        const line = await readLine();
        if (line === '') break;
        const colon = line.indexOf(':');
        if (colon <= 0) throw new MalformedMessageError(`${this.label}: bad trailer line ${JSON.stringify(line)} in ${what}`);
        (trailers[line.slice(0, colon).toLowerCase()] ??= []).push(line.slice(colon + 1).trim());
      }
      return result(true, false);
    }

    const cl = headers['content-length'];
    if (cl !== undefined && mode === 'framed') {
      if (cl.length !== 1 || !/^\d+$/.test(cl[0]!)) {
        throw new MalformedMessageError(`${this.label}: ${what} has Content-Length ${JSON.stringify(cl)}`);
      }
      let left = Number(cl[0]);
      const total = left;
      while (left > 0) {
        if (this.buf.length === 0) {
          const ok = await this.more(deadline, () => `reading a ${what} body: ${total - left} of ${total} bytes`);
          if (!ok) throw cut(`after ${total - left} of ${total} bytes (Content-Length)`);
        }
        const piece = this.take(Math.min(left, this.buf.length));
        left -= piece.length;
        emit(piece, true);
      }
      return result(false, false);
    }
    if (mode === 'framed') return result(false, false); // a request without length has no body
    // Close-delimited response body.
    for (;;) {
      if (this.buf.length) emit(this.take(this.buf.length), true);
      const ok = await this.more(deadline, () => `reading a close-delimited ${what} body after ${length} bytes`);
      if (!ok) break;
    }
    if (this.buf.length) emit(this.take(this.buf.length), true);
    if (this.wasReset) throw cut(`close-delimited body ended by a reset after ${length} bytes`);
    return result(false, true);
  }

  /**
   * Parse exactly one response. 1xx responses are returned on their own (call again for the final
   * one); HEAD, 1xx, 204 and 304 responses have no body whatever their headers say.
   */
  async readResponse(opts: ReadResponseOptions = {}): Promise<RawResponse> {
    const deadline = Date.now() + (opts.timeoutMs ?? DEFAULT_READ_TIMEOUT_MS);
    const head = await this.readHead(deadline, 'response');
    if (!head) {
      throw new IncompleteMessageError(`${this.label}: connection closed (FIN) before any response byte`, false, undefined, 0);
    }
    const m = /^(HTTP\/\d\.\d) (\d{3}) ?(.*)$/.exec(head.start);
    if (!m) throw new MalformedMessageError(`${this.label}: bad status line ${JSON.stringify(head.start)}`);
    const status = Number(m[2]);
    const { headers, rawHeaders } = parseFields(head.lines, 'response');
    const noBody = opts.head === true || (status >= 100 && status < 200) || status === 204 || status === 304;
    const hasLength = headers['transfer-encoding'] !== undefined || headers['content-length'] !== undefined;
    const b = await this.readBody(headers, noBody ? 'none' : hasLength ? 'framed' : 'close', deadline, `${status} response`, status, opts.sink);
    return {
      version: m[1]!,
      status,
      reason: m[3]!,
      headers,
      rawHeaders,
      rawHead: head.raw,
      body: b.body,
      rawBody: b.rawBody,
      chunked: b.chunked,
      trailers: b.trailers,
      closeDelimited: b.closeDelimited,
      bodyLength: b.length,
      get: makeGet(headers),
    };
  }

  /** Read the next final (non-1xx) response, collecting any interim responses before it. */
  async readFinalResponse(opts: ReadResponseOptions = {}): Promise<RawResponse & { interim: RawResponse[] }> {
    const interim: RawResponse[] = [];
    for (;;) {
      const r = await this.readResponse(opts);
      if (r.status >= 200 || r.status === 101) return Object.assign(r, { interim });
      interim.push(r);
    }
  }

  /**
   * Parse exactly one request (for scripted backends). Returns null when the peer closed cleanly
   * between requests. Bodies: Content-Length or chunked; otherwise none.
   */
  async readRequest(opts: { timeoutMs?: number } = {}): Promise<RawRequest | null> {
    const deadline = Date.now() + (opts.timeoutMs ?? DEFAULT_READ_TIMEOUT_MS);
    const head = await this.readHead(deadline, 'request');
    if (!head) return null;
    const m = /^(\S+) (\S+) (HTTP\/\d\.\d)$/.exec(head.start);
    if (!m) throw new MalformedMessageError(`${this.label}: bad request line ${JSON.stringify(head.start)}`);
    const { headers, rawHeaders } = parseFields(head.lines, 'request');
    const b = await this.readBody(headers, 'framed', deadline, `${m[1]} request`, undefined, undefined);
    return {
      method: m[1]!,
      target: m[2]!,
      version: m[3]!,
      headers,
      rawHeaders,
      rawHead: head.raw,
      body: b.body,
      rawBody: b.rawBody,
      chunked: b.chunked,
      trailers: b.trailers,
      get: makeGet(headers),
    };
  }

  /** Read only a request head (the body is left in the buffer, e.g. for a backend that stalls). */
  async readRequestHead(opts: { timeoutMs?: number } = {}): Promise<Omit<RawRequest, 'body' | 'rawBody' | 'trailers' | 'chunked'> | null> {
    const deadline = Date.now() + (opts.timeoutMs ?? DEFAULT_READ_TIMEOUT_MS);
    const head = await this.readHead(deadline, 'request');
    if (!head) return null;
    const m = /^(\S+) (\S+) (HTTP\/\d\.\d)$/.exec(head.start);
    if (!m) throw new MalformedMessageError(`${this.label}: bad request line ${JSON.stringify(head.start)}`);
    const { headers, rawHeaders } = parseFields(head.lines, 'request');
    return { method: m[1]!, target: m[2]!, version: m[3]!, headers, rawHeaders, rawHead: head.raw, get: makeGet(headers) };
  }

  /**
   * Stop buffering: the caller takes the socket over (e.g. to echo an upgraded tunnel) and gets the
   * bytes that were received but not yet consumed.
   */
  detach(): Buffer {
    this.socket.removeListener('data', this.onData);
    return Buffer.from(this.take(this.buf.length));
  }
}
