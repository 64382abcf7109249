/**
 * @module The origin of the failover chaos benchmark: an HTTP/1.1 server whose replies fall into the
 * classes of DESIGN.md's failure table, and the body generators it shares with the checking client.
 *
 * Every reply except /rand is a pure function of its URL (and request body), so any of the three
 * origin processes — or a fresh one restarted after a SIGKILL — sends the same bytes, which is what
 * lets a proxy splice a reply from another backend:
 *
 *   GET  /det/<n>?size=S   S bytes (1 ≤ S ≤ DET_MAX_BYTES) of the PRNG stream seeded by n
 *   GET  /rand?size=S      S random bytes, never the same twice; their SHA-256 in X-Body-SHA256
 *   GET  /static/<n>       1–4 MiB object (size and bytes from n), strong ETag from its hash,
 *                          Accept-Ranges: bytes; honours `Range: bytes=k-` / `bytes=k-e` and If-Range
 *   POST /echo             the request body back (the client sends an Idempotency-Key)
 *
 * Bodies are paced: written piece by piece, PACE_INTERVAL_MS apart (and after 'drain' when the socket
 * is full) — the first PACE_SMALL_SPAN_BYTES in PACE_SMALL_CHUNK_BYTES pieces, the rest in
 * PACE_CHUNK_BYTES pieces — so a reply takes a while and a SIGKILL often lands in the middle of one,
 * the case proxies get wrong; small replies (the ones a proxy can hold) get cut too. Yielding with
 * setImmediate alone is not enough: loopback socket buffers take a whole 4 MiB reply at once, and a
 * process killed with its reply queued in the kernel still gets it delivered (the kernel closes the
 * socket with FIN after the queued bytes), so nothing is cut.
 *
 * node:http rather than raw `net` (unlike bench/lib/backend.ts): this origin must parse request
 * bodies, Range and If-Range, and is not the bottleneck being measured.
 */
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import type net from 'node:net';

/** Largest /det reply. */
export const DET_MAX_BYTES = 1024 * 1024;
/** Bounds of /static object sizes. */
export const STATIC_MIN_BYTES = 1024 * 1024;
export const STATIC_MAX_BYTES = 4 * 1024 * 1024;
/** Largest /rand reply and /echo body the origin accepts. */
export const RAND_MAX_BYTES = 4 * 1024 * 1024;
export const ECHO_MAX_BYTES = 4 * 1024 * 1024;
/** One write of a paced reply past its first PACE_SMALL_SPAN_BYTES. */
export const PACE_CHUNK_BYTES = 64 * 1024;
/** The first bytes of a reply go out in smaller pieces, so replies of up to 64 KiB can be cut too. */
export const PACE_SMALL_SPAN_BYTES = 64 * 1024;
export const PACE_SMALL_CHUNK_BYTES = 8 * 1024;
/**
 * Pause between two writes of a paced reply. A 32 KiB reply then takes ~15 ms, 64 KiB ~35 ms,
 * 1 MiB ~110 ms and a 4 MiB /static object ~350 ms (about 13 MB/s per reply once past 64 KiB).
 */
export const PACE_INTERVAL_MS = 5;

/** Where the paced write that starts at `offset` of a `length`-byte body ends. */
export function pieceEnd(offset: number, length: number): number {
  const size = offset < PACE_SMALL_SPAN_BYTES ? PACE_SMALL_CHUNK_BYTES : PACE_CHUNK_BYTES;
  return Math.min(offset + size, length);
}
/** Generated bodies kept per cache (det streams are DET_MAX_BYTES each, static objects ≤ 4 MiB). */
export const BODY_CACHE_ENTRIES = 32;
/** Longer than any proxy's idle timeout towards backends, so the origin never closes an idle
 * keep-alive connection first (a close racing a reused connection would look like chaos). */
export const ORIGIN_KEEP_ALIVE_MS = 120_000;
/** Seeds of /static objects are offset so that /static/3 is not /det/3 again. */
const STATIC_SEED_SALT = 0x51a71c00;

/**
 * `length` bytes of an xorshift32 stream from `seed`: cheap (about 1 ms per MiB) and identical in
 * every process on the machine. Not cryptographic, just different per seed. The bytes are the words'
 * in-memory order (little-endian on every machine this runs on).
 */
export function prngBytes(seed: number, length: number): Buffer {
  if (!Number.isSafeInteger(length) || length < 0) throw new RangeError(`length: expected an integer >= 0, received ${length}`);
  const words = new Uint32Array(Math.ceil(length / 4));
  // Scramble the seed (golden-ratio multiply) so neighbouring seeds start far apart; 0 is xorshift's fixed point.
  let s = (Math.imul(seed | 0, 0x9e3779b1) ^ 0x2545f491) >>> 0 || 1;
  for (let i = 0; i < words.length; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    words[i] = s;
  }
  return Buffer.from(words.buffer, 0, length);
}

/** A 32-bit mix of n (splitmix-style), for sizes derived from a key. */
export function mix32(n: number): number {
  let x = Math.imul((n | 0) ^ 0x7f4a7c15, 0x85ebca6b);
  x ^= x >>> 13;
  x = Math.imul(x, 0xc2b2ae35);
  x ^= x >>> 16;
  return x >>> 0;
}

/** The size of /static/<n>: from STATIC_MIN_BYTES to STATIC_MAX_BYTES, fixed by n. */
export function staticSize(n: number): number {
  return STATIC_MIN_BYTES + (mix32(n) % (STATIC_MAX_BYTES - STATIC_MIN_BYTES + 1));
}

export function sha256Hex(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** A strong validator (no W/) derived from the content, so every origin gives an object the same one. */
export function strongEtag(body: Buffer): string {
  return `"sha256-${sha256Hex(body).slice(0, 32)}"`;
}

/** A Map that forgets its oldest entry past `max` entries. */
class BoundedCache<K, V> {
  private readonly map = new Map<K, V>();
  constructor(private readonly max: number) {}
  get(key: K, make: () => V): V {
    let v = this.map.get(key);
    if (v === undefined) {
      v = make();
      this.map.set(key, v);
      if (this.map.size > this.max) this.map.delete(this.map.keys().next().value as K);
    }
    return v;
  }
}

export interface StaticObject {
  readonly body: Buffer;
  readonly etag: string;
  readonly sha256: string;
}

/**
 * The deterministic bodies, generated on first use and cached: /det/<n> is a prefix of n's stream
 * (so one stream of DET_MAX_BYTES serves every size), /static/<n> a whole object with its ETag.
 * The origin serves from it; the client regenerates the same bytes to know the expected hash.
 */
export class BodyStore {
  private readonly det = new BoundedCache<number, Buffer>(BODY_CACHE_ENTRIES);
  private readonly statics = new BoundedCache<number, StaticObject>(BODY_CACHE_ENTRIES);

  detBody(n: number, size: number): Buffer {
    if (!Number.isInteger(size) || size < 0 || size > DET_MAX_BYTES) {
      throw new RangeError(`det size: expected 0..${DET_MAX_BYTES}, received ${size}`);
    }
    return this.det.get(n, () => prngBytes(n, DET_MAX_BYTES)).subarray(0, size);
  }

  staticObject(n: number): StaticObject {
    return this.statics.get(n, () => {
      const body = prngBytes((n ^ STATIC_SEED_SALT) | 0, staticSize(n));
      const sha256 = sha256Hex(body);
      return { body, sha256, etag: `"sha256-${sha256.slice(0, 32)}"` };
    });
  }
}

/**
 * The byte range a request asks of an object of `total` bytes, per RFC 9110 §14.2 and §13.1.5:
 * `null` to send it whole (no Range, a Range that is not one `bytes=` range, or an If-Range that does
 * not match `etag`), `'unsatisfiable'` for 416, else the first and last byte offsets (inclusive).
 * Only single ranges `k-` and `k-e` are honoured; anything else is ignored (allowed by §14.2).
 */
export function selectRange(
  range: string | undefined,
  ifRange: string | undefined,
  etag: string,
  total: number,
): { start: number; end: number } | 'unsatisfiable' | null {
  if (range === undefined) return null;
  // If-Range with a validator that is not the current (strong) one: the object changed, send it all.
  if (ifRange !== undefined && ifRange.trim() !== etag) return null;
  const m = /^\s*bytes\s*=\s*(\d+)\s*-\s*(\d*)\s*$/i.exec(range);
  if (!m) return null;
  const start = Number(m[1]);
  const end = m[2] === '' ? total - 1 : Math.min(Number(m[2]), total - 1);
  if (!Number.isSafeInteger(start) || start >= total) return 'unsatisfiable';
  if (end < start) return null;
  return { start, end };
}

/** Parses `/det/<n>`, `/static/<n>` keys: a non-negative 31-bit integer, or null. */
export function parseKey(text: string): number | null {
  if (!/^\d{1,10}$/.test(text)) return null;
  const n = Number(text);
  return n <= 0x7fffffff ? n : null;
}

/** `size` query parameter within 0..max, or null. */
export function parseSize(query: URLSearchParams, max: number): number | null {
  const text = query.get('size');
  if (text === null || !/^\d{1,10}$/.test(text)) return null;
  const n = Number(text);
  return n <= max ? n : null;
}

/**
 * Writes `body` in pieces (pieceEnd), `intervalMs` apart (or after 'drain' when the socket buffer is
 * full), then ends the reply. A body of one piece goes out at once. Stops if the connection goes.
 */
export function writePaced(res: http.ServerResponse, body: Buffer, intervalMs = PACE_INTERVAL_MS): void {
  let offset = 0;
  const step = (): void => {
    if (res.destroyed) return;
    const end = pieceEnd(offset, body.length);
    const more = end < body.length;
    const ok = end > offset ? res.write(body.subarray(offset, end)) : true;
    offset = end;
    if (!more) {
      res.end();
      return;
    }
    if (!ok) res.once('drain', () => setTimeout(step, intervalMs));
    else setTimeout(step, intervalMs);
  };
  step();
}

export interface ChaosOriginOptions {
  readonly host?: string;
  /** 0 picks a free port; a restarted origin passes its old one. */
  readonly port?: number;
}

export interface ChaosOrigin {
  readonly host: string;
  readonly port: number;
  /** Replies started since start, per route ('det', 'rand', 'static', 'echo', 'other'). */
  readonly served: Readonly<Record<string, number>>;
  close(): Promise<void>;
}

function reply(res: http.ServerResponse, status: number, text: string): void {
  res.writeHead(status, { 'Content-Type': 'text/plain', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

/** Starts the origin and resolves once it listens. */
export function startChaosOrigin(opts: ChaosOriginOptions = {}): Promise<ChaosOrigin> {
  const host = opts.host ?? '127.0.0.1';
  const store = new BodyStore();
  const served: Record<string, number> = { det: 0, rand: 0, static: 0, echo: 0, other: 0 };
  const sockets = new Set<net.Socket>();

  const send = (req: http.IncomingMessage, res: http.ServerResponse, status: number, headers: http.OutgoingHttpHeaders, body: Buffer): void => {
    res.writeHead(status, { 'Content-Type': 'application/octet-stream', 'Content-Length': body.length, ...headers });
    if (req.method === 'HEAD') res.end();
    else writePaced(res, body);
  };

  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://origin');
    const parts = url.pathname.split('/');
    const route = parts[1] ?? '';
    const isGet = req.method === 'GET' || req.method === 'HEAD';
    if (route === 'det' && isGet && parts.length === 3) {
      const n = parseKey(parts[2]!);
      const size = parseSize(url.searchParams, DET_MAX_BYTES);
      if (n === null || size === null) return reply(res, 400, `expected /det/<n>?size=0..${DET_MAX_BYTES}\n`);
      served.det!++;
      return send(req, res, 200, {}, store.detBody(n, size));
    }
    if (route === 'rand' && isGet && parts.length === 2) {
      const size = parseSize(url.searchParams, RAND_MAX_BYTES);
      if (size === null) return reply(res, 400, `expected /rand?size=0..${RAND_MAX_BYTES}\n`);
      served.rand!++;
      const body = randomBytes(size);
      return send(req, res, 200, { 'X-Body-SHA256': sha256Hex(body) }, body);
    }
    if (route === 'static' && isGet && parts.length === 3) {
      const n = parseKey(parts[2]!);
      if (n === null) return reply(res, 400, 'expected /static/<n>\n');
      served.static!++;
      const obj = store.staticObject(n);
      const total = obj.body.length;
      const common = { ETag: obj.etag, 'Accept-Ranges': 'bytes' };
      const ifRange = req.headers['if-range'];
      const r = selectRange(req.headers.range, Array.isArray(ifRange) ? ifRange[0] : ifRange, obj.etag, total);
      if (r === 'unsatisfiable') {
        res.writeHead(416, { ...common, 'Content-Range': `bytes */${total}`, 'Content-Length': 0 });
        return res.end();
      }
      if (r === null) return send(req, res, 200, common, obj.body);
      return send(req, res, 206, { ...common, 'Content-Range': `bytes ${r.start}-${r.end}/${total}` }, obj.body.subarray(r.start, r.end + 1));
    }
    if (route === 'echo' && req.method === 'POST' && parts.length === 2) {
      const chunks: Buffer[] = [];
      let bytes = 0;
      req.on('data', (c: Buffer) => {
        bytes += c.length;
        if (bytes > ECHO_MAX_BYTES) {
          reply(res, 413, 'echo body too large\n');
          req.destroy();
          return;
        }
        chunks.push(c);
      });
      req.on('end', () => {
        if (bytes > ECHO_MAX_BYTES) return;
        served.echo!++;
        send(req, res, 200, {}, Buffer.concat(chunks, bytes));
      });
      return;
    }
    served.other!++;
    reply(res, 404, 'routes: GET /det/<n>?size=S, GET /rand?size=S, GET /static/<n>, POST /echo\n');
  });
  server.keepAliveTimeout = ORIGIN_KEEP_ALIVE_MS;
  // headersTimeout must not be below keepAliveTimeout or Node closes idle connections early.
  server.headersTimeout = ORIGIN_KEEP_ALIVE_MS + 1000;
  server.on('connection', (s: net.Socket) => {
    s.setNoDelay(true);
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });

  return new Promise<ChaosOrigin>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port: opts.port ?? 0, backlog: 1024 }, () => {
      server.off('error', reject);
      const addr = server.address() as net.AddressInfo;
      resolve({
        host,
        port: addr.port,
        served,
        close: () =>
          new Promise<void>((done) => {
            for (const s of sockets) s.destroy();
            server.close(() => done());
          }),
      });
    });
  });
}
