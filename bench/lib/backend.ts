/**
 * @module The benchmark origin: a minimal HTTP/1.1 keep-alive server on raw `net` sockets that answers
 * every request head with one precomputed `200 OK` response of a fixed body size.
 *
 * Why not `node:http`: the origin shares a 2-core machine with the load driver and the proxy under
 * test, so every cycle it spends is a cycle the proxy does not get. `node:http` parses each head with
 * llhttp, allocates request/response objects and formats headers per response; here a request costs
 * one native `indexOf` over the bytes and one `write` of a shared Buffer.
 *
 * What it understands: request heads ending in CRLFCRLF, without bodies (the benchmark sends GETs).
 * Several heads in one read (pipelining) get as many responses, in order, in one write. A head split
 * over several reads is found by carrying the last 3 bytes of each read into the next scan.
 */
import net from 'node:net';

const HEAD_END = Buffer.from('\r\n\r\n', 'latin1');
/** Bytes of a head terminator that can end one read and continue in the next. */
const CARRY_BYTES = HEAD_END.length - 1;
/** A connection that sends this much without a CRLFCRLF is not a benchmark client: drop it. */
const MAX_HEAD_BYTES = 64 * 1024;

export interface OriginOptions {
  /** Body bytes in every response. */
  readonly size: number;
  readonly host?: string;
  /** 0 picks a free port. */
  readonly port?: number;
}

export interface Origin {
  readonly host: string;
  readonly port: number;
  /** Responses written since start (pipelined ones counted one by one). */
  readonly responses: number;
  close(): Promise<void>;
}

/** The exact bytes of one response: status line, Content-Length, body of `size` bytes ('x'). */
export function buildResponse(size: number): Buffer {
  if (!Number.isSafeInteger(size) || size < 0) throw new RangeError(`size: expected an integer >= 0, received ${size}`);
  const head = Buffer.from(
    `HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: ${size}\r\n\r\n`,
    'latin1',
  );
  const out = Buffer.allocUnsafe(head.length + size);
  head.copy(out, 0);
  out.fill(0x78, head.length);
  return out;
}

/**
 * Counts complete request heads in a byte stream fed read by read. Returns how many heads ended in
 * `chunk`; remembers the unterminated tail (at most 3 bytes kept, plus a running length for the
 * MAX_HEAD_BYTES guard).
 */
export class HeadCounter {
  private carry: Buffer | null = null;
  /** Bytes seen since the last head ended. */
  private partial = 0;

  feed(chunk: Buffer): number {
    let data = chunk;
    // Only the carried bytes (< 4) can be prepended, so a terminator straddling reads is found.
    const carried = this.carry;
    if (carried !== null) data = Buffer.concat([carried, chunk]);
    let count = 0;
    let from = 0;
    let lastEnd = 0;
    for (;;) {
      const at = data.indexOf(HEAD_END, from);
      if (at < 0) break;
      count++;
      lastEnd = at + HEAD_END.length;
      from = lastEnd;
    }
    const tailStart = Math.max(lastEnd, data.length - CARRY_BYTES);
    this.carry = tailStart < data.length ? Buffer.from(data.subarray(tailStart)) : null;
    this.partial = count > 0 ? data.length - lastEnd : this.partial + chunk.length;
    return count;
  }

  /** True when the stream has gone on too long without a head terminator. */
  get overlong(): boolean {
    return this.partial > MAX_HEAD_BYTES;
  }
}

/** Starts the origin and resolves once it listens. */
export function startOrigin(opts: OriginOptions): Promise<Origin> {
  const response = buildResponse(opts.size);
  const host = opts.host ?? '127.0.0.1';
  let responses = 0;
  const sockets = new Set<net.Socket>();

  const server = net.createServer({ noDelay: true }, (socket) => {
    sockets.add(socket);
    const counter = new HeadCounter();
    socket.on('data', (chunk: Buffer) => {
      const n = counter.feed(chunk);
      if (n === 1) {
        socket.write(response);
      } else if (n > 1) {
        // One write for a pipelined batch: one syscall, responses stay in order.
        const parts: Buffer[] = new Array<Buffer>(n).fill(response);
        socket.write(Buffer.concat(parts, response.length * n));
      }
      responses += n;
      if (counter.overlong) socket.destroy();
    });
    socket.on('error', () => socket.destroy());
    socket.on('close', () => sockets.delete(socket));
  });

  return new Promise<Origin>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port: opts.port ?? 0, backlog: 4096 }, () => {
      server.off('error', reject);
      const addr = server.address() as net.AddressInfo;
      resolve({
        host,
        port: addr.port,
        get responses() {
          return responses;
        },
        close: () =>
          new Promise<void>((done) => {
            for (const s of sockets) s.destroy();
            server.close(() => done());
          }),
      });
    });
  });
}
