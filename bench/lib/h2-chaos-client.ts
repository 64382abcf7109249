/**
 * @module The chaos benchmark's client over HTTP/2 (issue 19's chaos-over-h2): `connections`
 * prior-knowledge h2c sessions, `streams` workers on each, every worker sending the mix's next
 * request as soon as its last one ended, and judging each reply as the HTTP/1.1 ChaosClient does
 * (chaos-client.ts `judge`). A stream reset or a session that goes away fails the requests on it
 * (never retried); the next request opens a new session.
 */
import { createHash } from 'node:crypto';
import http2, { type ClientHttp2Session } from 'node:http2';
import { performance } from 'node:perf_hooks';
import {
  CLASSES,
  MAX_FAILURES_KEPT,
  REQUEST_TIMEOUT_MS,
  judge,
  type ClassStats,
  type Observation,
  type PlannedRequest,
  type RequestClass,
  type RequestFailure,
  type RequestMix,
} from './chaos-client.js';

/** Flow-control windows the client grants, as Chrome does. */
export const STREAM_WINDOW_BYTES = 6 * 1024 * 1024;
export const CONNECTION_WINDOW_BYTES = 15 * 1024 * 1024;

export interface H2ChaosClientOptions {
  readonly host: string;
  readonly port: number;
  readonly connections: number;
  /** Concurrent streams per connection. */
  readonly streams: number;
  readonly mix: RequestMix;
  readonly requestTimeoutMs?: number;
  readonly now?: () => number;
}

function emptyStats(): ClassStats {
  return { requests: 0, failures: 0, reasons: { connection: 0, status: 0, truncated: 0, mismatch: 0, timeout: 0 }, durationsMs: [] };
}

/** One request on `session`; never rejects. */
export function executeH2(session: ClientHttp2Session, p: PlannedRequest, timeoutMs: number): Promise<Observation & { error: string | null }> {
  return new Promise((resolve) => {
    const hash = createHash('sha256');
    let status: number | null = null;
    let headerSha256: string | null = null;
    let bodyBytes = 0;
    let ended = false;
    let settled = false;
    let timedOut = false;
    let error: string | null = null;
    let timer: NodeJS.Timeout | undefined;
    const finish = (complete: boolean): void => {
      if (settled) return;
      settled = true;
      if (timer !== undefined) clearTimeout(timer);
      resolve({ status, complete, timedOut, bodyBytes, bodySha256: hash.digest('hex'), headerSha256, error });
    };
    let s: http2.ClientHttp2Stream;
    try {
      s = session.request({ ':method': p.method, ':path': p.path, ...p.headers }, { endStream: p.body === null });
    } catch (err) {
      error = (err as Error).message; // the session went away under us
      finish(false);
      return;
    }
    timer = setTimeout(() => {
      timedOut = true;
      s.destroy(new Error(`no complete reply after ${timeoutMs} ms`));
    }, timeoutMs);
    s.on('response', (h) => {
      status = Number(h[':status']);
      const x = h['x-body-sha256'];
      headerSha256 = typeof x === 'string' ? x : null;
    });
    s.on('data', (chunk: Buffer) => {
      bodyBytes += chunk.length;
      hash.update(chunk);
    });
    s.on('end', () => {
      ended = true;
    });
    s.on('error', (err: NodeJS.ErrnoException) => {
      error ??= err.code ?? err.message;
    });
    s.on('close', () => finish(ended && s.rstCode === http2.constants.NGHTTP2_NO_ERROR));
    if (p.body !== null) s.end(p.body);
  });
}

export class H2ChaosClient {
  readonly stats = new Map<RequestClass, ClassStats>(CLASSES.map((c) => [c, emptyStats()]));
  readonly failures: RequestFailure[] = [];
  private readonly sessions: (ClientHttp2Session | null)[];
  private readonly now: () => number;
  private readonly timeoutMs: number;
  private workers: Promise<void>[] = [];
  private stopping = false;
  private active = 0;

  constructor(private readonly opts: H2ChaosClientOptions) {
    this.sessions = new Array<ClientHttp2Session | null>(opts.connections).fill(null);
    this.now = opts.now ?? (() => performance.now());
    this.timeoutMs = opts.requestTimeoutMs ?? REQUEST_TIMEOUT_MS;
  }

  get inFlight(): number {
    return this.active;
  }

  start(): void {
    if (this.workers.length > 0) throw new Error('H2ChaosClient: already started');
    for (let c = 0; c < this.opts.connections; c++) for (let i = 0; i < this.opts.streams; i++) this.workers.push(this.work(c));
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(this.workers);
    for (const s of this.sessions) s?.close();
  }

  /** Connection `c`'s session, a new one if it went away. */
  private session(c: number): ClientHttp2Session {
    const cur = this.sessions[c];
    if (cur && !cur.closed && !cur.destroyed) return cur;
    // Chrome's flow-control windows (6 MiB per stream, 15 MiB per connection): node's defaults
    // (64 KiB for the whole connection) make a 4 MiB reply take seconds and span several kills.
    const s = http2.connect(`http://${this.opts.host}:${this.opts.port}`, { settings: { initialWindowSize: STREAM_WINDOW_BYTES } });
    s.on('connect', () => s.setLocalWindowSize(CONNECTION_WINDOW_BYTES));
    s.on('error', () => {});
    s.on('goaway', () => {
      if (this.sessions[c] === s) this.sessions[c] = null;
    });
    s.on('close', () => {
      if (this.sessions[c] === s) this.sessions[c] = null;
    });
    this.sessions[c] = s;
    return s;
  }

  private async work(c: number): Promise<void> {
    while (!this.stopping) {
      const p = this.opts.mix.next();
      this.active++;
      const startMs = this.now();
      const obs = await executeH2(this.session(c), p, this.timeoutMs);
      const endMs = this.now();
      this.active--;
      const st = this.stats.get(p.cls)!;
      st.requests++;
      st.durationsMs.push(endMs - startMs);
      const reason = judge(p.expect, obs);
      if (reason === null) continue;
      st.failures++;
      st.reasons[reason]++;
      if (this.failures.length < MAX_FAILURES_KEPT) {
        this.failures.push({ cls: p.cls, method: p.method, path: p.path, requestBytes: p.body?.length ?? 0, reason, status: obs.status, bodyBytes: obs.bodyBytes, startMs, endMs, error: obs.error });
      }
    }
  }
}
