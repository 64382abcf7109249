/**
 * @module The failover chaos benchmark's client: a seeded mix of requests over the origin's reply
 * classes, sent on keep-alive connections with no client-side retry, every reply checked byte for
 * byte by SHA-256; and the reader of the proxy's failover metrics (Prometheus text).
 *
 * A request fails when: the connection fails before a reply head (`connection`), the status is not
 * 2xx (`status`), the body ends early (`truncated`), its bytes differ (`mismatch`), or no complete
 * reply came within the request timeout (`timeout`). One attempt per request, always: retrying here
 * would hide exactly what the benchmark measures.
 */
import { prng } from './prng.js';
import { createHash } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import { performance } from 'node:perf_hooks';
import { BodyStore, prngBytes, sha256Hex } from './chaos-origin.js';

/** DESIGN.md's failure table, as request classes. Only `rand-large` may fail under holdfast. */
export type RequestClass = 'det' | 'rand-small' | 'rand-large' | 'static' | 'echo';
export const CLASSES: readonly RequestClass[] = ['det', 'rand-small', 'rand-large', 'static', 'echo'];

export type FailureReason = 'connection' | 'status' | 'truncated' | 'mismatch' | 'timeout';
export const FAILURE_REASONS: readonly FailureReason[] = ['connection', 'status', 'truncated', 'mismatch', 'timeout'];

/**
 * Share of each class in the mix. What a kill hits is the replies in progress on the killed origin,
 * so a class's exposure is its share × how long its replies take: a 1–4 MiB static object is paced
 * over 115–355 ms, a 256 KiB rand-large reply over ~55 ms, a 32 KiB one over ~15 ms. rand-large (the class the comparison with
 * HAProxy rests on) gets a large share so that a 30 s run cuts a few of them; static objects get a
 * small one and still take most of the hits.
 */
export const CLASS_WEIGHTS: Readonly<Record<RequestClass, number>> = {
  det: 0.3,
  'rand-small': 0.15,
  'rand-large': 0.25,
  static: 0.08,
  echo: 0.22,
};
/** /det sizes: half up to holdfast's default holdReplyBytes (64 KiB, held), half above (verified replay). */
export const DET_SIZES: readonly number[] = [1024, 4096, 16384, 65536, 131072, 262144, 524288, 1048576];
/** Distinct /det keys; each is one cached 1 MiB stream in the client and in every origin. */
export const DET_KEYS = 32;
/** Non-deterministic replies small enough to be held (≤ 32 KiB) ... */
export const RAND_SMALL_SIZES: readonly number[] = [1024, 4096, 16384, 32768];
/** ... and one size well above holdReplyBytes: the class no proxy can complete once bytes are out. */
export const RAND_LARGE_BYTES = 256 * 1024;
/** Distinct /static objects (1–4 MiB each). */
export const STATIC_KEYS = 8;
/** /echo request body sizes. */
export const ECHO_SIZES: readonly number[] = [1024, 8192, 32768, 131072];
/** A request with no complete reply after this long fails as `timeout` (far above any failover). */
export const REQUEST_TIMEOUT_MS = 15_000;
/** Failures kept with their details (the counts are always complete). */
export const MAX_FAILURES_KEPT = 500;

/** What a correct reply looks like. */
export type Expectation =
  /** Exactly these bytes (det, static, echo). */
  | { readonly kind: 'digest'; readonly length: number; readonly sha256: string }
  /** `length` bytes whose SHA-256 the X-Body-SHA256 header gives (rand). */
  | { readonly kind: 'header'; readonly length: number };

export interface PlannedRequest {
  readonly cls: RequestClass;
  readonly method: 'GET' | 'POST';
  readonly path: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Buffer | null;
  readonly expect: Expectation;
}

/** A seeded PRNG in [0, 1), so two runs (and two targets) draw the same mix. */
export const seededRandom = prng;

/** Draws requests from CLASS_WEIGHTS with a seeded PRNG and knows each one's expected reply. */
export class RequestMix {
  private readonly random: () => number;
  private readonly store = new BodyStore();
  private readonly detHashes = new Map<string, string>();
  private echoCount = 0;

  constructor(
    readonly seed: number,
    private readonly weights: Readonly<Record<RequestClass, number>> = CLASS_WEIGHTS,
  ) {
    this.random = seededRandom(seed);
  }

  private pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.random() * items.length)]!;
  }

  private pickClass(): RequestClass {
    const total = CLASSES.reduce((s, c) => s + this.weights[c], 0);
    let x = this.random() * total;
    for (const c of CLASSES) {
      x -= this.weights[c];
      if (x < 0) return c;
    }
    return CLASSES[CLASSES.length - 1]!;
  }

  next(): PlannedRequest {
    return this.make(this.pickClass());
  }

  /** One request of class `cls` (also for tests that want one of each). */
  make(cls: RequestClass): PlannedRequest {
    switch (cls) {
      case 'det': {
        const n = Math.floor(this.random() * DET_KEYS);
        const size = this.pick(DET_SIZES);
        const key = `${n}:${size}`;
        let sha256 = this.detHashes.get(key);
        if (sha256 === undefined) {
          sha256 = sha256Hex(this.store.detBody(n, size));
          this.detHashes.set(key, sha256);
        }
        return { cls, method: 'GET', path: `/det/${n}?size=${size}`, headers: {}, body: null, expect: { kind: 'digest', length: size, sha256 } };
      }
      case 'rand-small':
      case 'rand-large': {
        const size = cls === 'rand-small' ? this.pick(RAND_SMALL_SIZES) : RAND_LARGE_BYTES;
        return { cls, method: 'GET', path: `/rand?size=${size}`, headers: {}, body: null, expect: { kind: 'header', length: size } };
      }
      case 'static': {
        const n = Math.floor(this.random() * STATIC_KEYS);
        const obj = this.store.staticObject(n);
        return {
          cls,
          method: 'GET',
          path: `/static/${n}`,
          headers: {},
          body: null,
          expect: { kind: 'digest', length: obj.body.length, sha256: obj.sha256 },
        };
      }
      case 'echo': {
        const id = this.echoCount++;
        const size = this.pick(ECHO_SIZES);
        const body = prngBytes((this.seed * 1_000_003 + id) | 0, size);
        return {
          cls,
          method: 'POST',
          path: '/echo',
          headers: {
            'Content-Type': 'application/octet-stream',
            'Content-Length': String(size),
            'Idempotency-Key': `chaos-${this.seed}-${id}`,
          },
          body,
          expect: { kind: 'digest', length: size, sha256: sha256Hex(body) },
        };
      }
    }
  }
}

/** What came back for one request. */
export interface Observation {
  /** The reply status; null when no reply head arrived. */
  readonly status: number | null;
  /** The body arrived to its end as framed (Content-Length or the last chunk). */
  readonly complete: boolean;
  /** No complete reply within the request timeout. */
  readonly timedOut: boolean;
  readonly bodyBytes: number;
  readonly bodySha256: string;
  /** X-Body-SHA256 as received, or null. */
  readonly headerSha256: string | null;
}

/** The verdict on one reply: null when it is exactly what the request expects, else why not. */
export function judge(expect: Expectation, obs: Observation): FailureReason | null {
  if (obs.timedOut) return 'timeout';
  if (obs.status === null) return 'connection';
  if (obs.status < 200 || obs.status > 299) return 'status';
  if (!obs.complete || obs.bodyBytes < expect.length) return 'truncated';
  if (obs.bodyBytes > expect.length) return 'mismatch';
  if (expect.kind === 'digest') return obs.bodySha256 === expect.sha256 ? null : 'mismatch';
  return obs.headerSha256 !== null && obs.headerSha256.toLowerCase() === obs.bodySha256 ? null : 'mismatch';
}

export interface RequestFailure {
  readonly cls: RequestClass;
  readonly method: string;
  readonly path: string;
  /** Request body bytes (echo). */
  readonly requestBytes: number;
  readonly reason: FailureReason;
  readonly status: number | null;
  /** Body bytes received before the failure. */
  readonly bodyBytes: number;
  /** When it was sent and when it ended, in ms on the client's clock (see ChaosClientOptions.now). */
  readonly startMs: number;
  readonly endMs: number;
  /** The socket error, if any. */
  readonly error: string | null;
}

export interface ClassStats {
  requests: number;
  failures: number;
  reasons: Record<FailureReason, number>;
  /** Durations of every request of the class, ms (for percentiles). */
  readonly durationsMs: number[];
}

function emptyStats(): ClassStats {
  return { requests: 0, failures: 0, reasons: { connection: 0, status: 0, truncated: 0, mismatch: 0, timeout: 0 }, durationsMs: [] };
}

export interface ChaosClientOptions {
  readonly host: string;
  readonly port: number;
  /** Keep-alive connections, one request at a time each. */
  readonly connections: number;
  readonly mix: RequestMix;
  readonly requestTimeoutMs?: number;
  /** The clock failures are stamped with; default performance.now(). */
  readonly now?: () => number;
  /** Speak HTTPS (the proxy terminates TLS; its certificate is not verified). */
  readonly tls?: boolean;
}

/** A keep-alive agent for the proxy: HTTPS when `tls` (certificate not verified: a test CA). */
export function chaosAgent(tls: boolean, opts: http.AgentOptions): http.Agent {
  return tls ? new https.Agent({ ...opts, rejectUnauthorized: false }) : new http.Agent(opts);
}

/** Performs one request on `agent` and reports what came back; never rejects. */
export function execute(
  agent: http.Agent,
  host: string,
  port: number,
  p: PlannedRequest,
  timeoutMs: number,
): Promise<Observation & { error: string | null }> {
  return new Promise((resolve) => {
    const hash = createHash('sha256');
    let status: number | null = null;
    let headerSha256: string | null = null;
    let bodyBytes = 0;
    let settled = false;
    let timedOut = false;
    let error: string | null = null;
    const finish = (complete: boolean): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ status, complete, timedOut, bodyBytes, bodySha256: hash.digest('hex'), headerSha256, error });
    };
    const request = agent instanceof https.Agent ? https.request : http.request;
    const req = request({ agent, host, port, method: p.method, path: p.path, headers: p.headers });
    const timer = setTimeout(() => {
      timedOut = true;
      req.destroy(new Error(`no complete reply after ${timeoutMs} ms`));
    }, timeoutMs);
    req.on('error', (err: NodeJS.ErrnoException) => {
      error ??= err.code ?? err.message;
      finish(false);
    });
    req.on('response', (res) => {
      status = res.statusCode ?? null;
      const h = res.headers['x-body-sha256'];
      headerSha256 = typeof h === 'string' ? h : null;
      res.on('data', (chunk: Buffer) => {
        bodyBytes += chunk.length;
        hash.update(chunk);
      });
      res.on('error', (err: NodeJS.ErrnoException) => {
        error ??= err.code ?? err.message;
      });
      // 'close' comes after 'end' for a whole body, or alone when the connection broke mid-body.
      res.on('close', () => finish(res.complete));
    });
    req.end(p.body ?? undefined);
  });
}

/**
 * `connections` workers, each sending the mix's next request as soon as its last one ended, over one
 * keep-alive http.Agent (so one connection each while the proxy keeps them open; a connection the
 * proxy cuts is replaced for the next request, never for a retry).
 */
export class ChaosClient {
  readonly stats = new Map<RequestClass, ClassStats>(CLASSES.map((c) => [c, emptyStats()]));
  readonly failures: RequestFailure[] = [];
  private readonly agent: http.Agent;
  private readonly now: () => number;
  private readonly timeoutMs: number;
  private workers: Promise<void>[] = [];
  private stopping = false;
  private active = 0;

  constructor(private readonly opts: ChaosClientOptions) {
    this.agent = chaosAgent(opts.tls ?? false, { keepAlive: true, maxSockets: opts.connections, scheduling: 'fifo' });
    this.now = opts.now ?? (() => performance.now());
    this.timeoutMs = opts.requestTimeoutMs ?? REQUEST_TIMEOUT_MS;
  }

  /** Requests sent and not yet ended. */
  get inFlight(): number {
    return this.active;
  }

  start(): void {
    if (this.workers.length > 0) throw new Error('ChaosClient: already started');
    for (let i = 0; i < this.opts.connections; i++) this.workers.push(this.work());
  }

  /** Stops sending; resolves when every request in flight has ended (each within the request timeout). */
  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(this.workers);
    this.agent.destroy();
  }

  private async work(): Promise<void> {
    while (!this.stopping) {
      const p = this.opts.mix.next();
      this.active++;
      const startMs = this.now();
      const obs = await execute(this.agent, this.opts.host, this.opts.port, p, this.timeoutMs);
      const endMs = this.now();
      this.active--;
      const s = this.stats.get(p.cls)!;
      s.requests++;
      s.durationsMs.push(endMs - startMs);
      const reason = judge(p.expect, obs);
      if (reason === null) continue;
      s.failures++;
      s.reasons[reason]++;
      if (this.failures.length < MAX_FAILURES_KEPT) {
        this.failures.push({
          cls: p.cls,
          method: p.method,
          path: p.path,
          requestBytes: p.body?.length ?? 0,
          reason,
          status: obs.status,
          bodyBytes: obs.bodyBytes,
          startMs,
          endMs,
          error: obs.error,
        });
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The proxy's side of the story: holdfast's failover metrics, read from its Prometheus text.

export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/** Parses Prometheus text exposition format 0.0.4 (comments skipped, label escapes undone). */
export function parsePrometheusText(text: string): Sample[] {
  const out: Sample[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const nameEnd = line.search(/[{\s]/);
    if (nameEnd <= 0) continue;
    const name = line.slice(0, nameEnd);
    const labels: Record<string, string> = {};
    let i = nameEnd;
    if (line[i] === '{') {
      i++;
      while (i < line.length && line[i] !== '}') {
        const eq = line.indexOf('=', i);
        if (eq < 0 || line[eq + 1] !== '"') break;
        const key = line.slice(i, eq).trim().replace(/^,\s*/, '');
        let value = '';
        let j = eq + 2;
        for (; j < line.length && line[j] !== '"'; j++) {
          if (line[j] === '\\' && j + 1 < line.length) {
            j++;
            value += line[j] === 'n' ? '\n' : line[j];
          } else {
            value += line[j];
          }
        }
        labels[key] = value;
        i = j + 1;
        while (line[i] === ',' || line[i] === ' ') i++;
      }
      i++;
    }
    const valueText = line.slice(i).trim().split(/\s+/)[0] ?? '';
    const value = valueText === '+Inf' ? Infinity : valueText === '-Inf' ? -Infinity : Number(valueText);
    if (valueText === '' || (Number.isNaN(value) && valueText !== 'NaN')) continue;
    out.push({ name, labels, value });
  }
  return out;
}

export interface Bucket {
  /** Upper bound (Infinity for +Inf). */
  readonly le: number;
  /** Cumulative count of observations ≤ le. */
  readonly count: number;
}

/**
 * The q-quantile of a cumulative histogram, as Prometheus's histogram_quantile() estimates it:
 * linear interpolation inside the bucket holding the rank, the lower bound of the first bucket
 * taken as 0, and the last finite bound when the rank falls in +Inf. Null with no observations.
 */
export function histogramQuantile(q: number, buckets: readonly Bucket[]): number | null {
  const sorted = [...buckets].sort((a, b) => a.le - b.le);
  const total = sorted[sorted.length - 1]?.count ?? 0;
  if (total <= 0 || sorted[sorted.length - 1]!.le !== Infinity) return null;
  const rank = q * total;
  let prevLe = 0;
  let prevCount = 0;
  for (const b of sorted) {
    if (b.count >= rank) {
      if (b.le === Infinity) return prevLe;
      if (b.count === prevCount) return b.le;
      return prevLe + ((b.le - prevLe) * (rank - prevCount)) / (b.count - prevCount);
    }
    prevLe = b.le;
    prevCount = b.count;
  }
  return prevLe;
}

export interface FailoverCount {
  readonly strategy: string;
  readonly result: string;
  readonly count: number;
}

export interface FailoverMetrics {
  /** holdfast_failover_total summed over services, by strategy and result (non-zero rows). */
  readonly failovers: readonly FailoverCount[];
  /** From holdfast_failover_recovery_seconds; null when holdfast does not expose it. */
  readonly recovery: { readonly count: number; readonly p50Ms: number | null; readonly p99Ms: number | null } | null;
  /** holdfast_request_log_overflow_total summed over services; null when absent. */
  readonly logOverflows: number | null;
}

/** holdfast's failover figures from its /metrics text; null when it has no failover metrics at all. */
export function failoverMetrics(text: string): FailoverMetrics | null {
  const samples = parsePrometheusText(text);
  const totals = samples.filter((s) => s.name === 'holdfast_failover_total');
  const buckets = samples.filter((s) => s.name === 'holdfast_failover_recovery_seconds_bucket');
  const overflow = samples.filter((s) => s.name === 'holdfast_request_log_overflow_total');
  if (totals.length === 0 && buckets.length === 0 && overflow.length === 0) return null;

  const byKey = new Map<string, FailoverCount>();
  for (const s of totals) {
    const strategy = s.labels.strategy ?? '';
    const result = s.labels.result ?? '';
    const key = `${strategy}\0${result}`;
    byKey.set(key, { strategy, result, count: (byKey.get(key)?.count ?? 0) + s.value });
  }
  const failovers = [...byKey.values()].filter((f) => f.count > 0).sort((a, b) => a.strategy.localeCompare(b.strategy) || a.result.localeCompare(b.result));

  let recovery: FailoverMetrics['recovery'] = null;
  if (buckets.length > 0) {
    // Sum the buckets of every label set except le (services) into one histogram.
    const byLe = new Map<number, number>();
    for (const b of buckets) {
      const le = b.labels.le === '+Inf' ? Infinity : Number(b.labels.le);
      if (Number.isNaN(le)) continue;
      byLe.set(le, (byLe.get(le) ?? 0) + b.value);
    }
    const hist = [...byLe].map(([le, count]) => ({ le, count }));
    const count = byLe.get(Infinity) ?? 0;
    const q = (x: number): number | null => {
      const s = histogramQuantile(x, hist);
      return s === null ? null : s * 1000;
    };
    recovery = { count, p50Ms: q(0.5), p99Ms: q(0.99) };
  }
  return {
    failovers,
    recovery,
    logOverflows: overflow.length > 0 ? overflow.reduce((s, x) => s + x.value, 0) : null,
  };
}
