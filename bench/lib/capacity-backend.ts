/**
 * @module An HTTP backend with a real, fixed capacity that reports its own load (issue 8 benchmark and
 * e2e tests), run as a child process: `node capacity-backend.js '<json CapacityBackendOptions>'`.
 *
 * At most `workers` requests are served at once, each holding its worker for `serviceMs` (timer work:
 * the capacity is workers / serviceMs whatever else the shared machine runs); the rest wait in a FIFO
 * of at most `queueMax` (beyond: 503 from the backend itself). A waiting request whose client went
 * away is skipped when its turn comes. So past capacity the queue, and the latency, grow without
 * bound: a multi-step session then misses its client's deadlines.
 *
 * A request without the `cookie` gets one (`Set-Cookie: <cookie>=<pid>-<n>`): the session id.
 *
 * Load, reported every `report.intervalMs` through a load vector (lib/load-reporter.ts): the work done
 * plus the work waiting, as a fraction of the work the workers could do over the report window —
 * (busy worker-ms + mean queue length x serviceMs) / (workers x window ms) — capped at 1, times
 * `loadScale` (default 1; a test sets it under 1 to put a saturated backend in a chosen SA2C band).
 * So 1 is capacity: below it the figure is the utilisation plus a small backlog term, past it the
 * backlog saturates it. (The queue term was mean queue length / workers, which counts each waiting
 * request as a worker busy for the whole window: 4x its work with 25 ms requests and 100 ms windows,
 * so a backend at 65 % of capacity read about 0.9, above SA2C's T3.) Prints `listening <port>` once
 * ready. `GET /__stats` answers the counters.
 */
import http from 'node:http';
import { startLoadReporter, type LoadReporter } from './load-reporter.js';
import { runIfMain } from './main.js';

export interface CapacityBackendOptions {
  readonly port: number;
  readonly workers: number;
  readonly serviceMs: number;
  readonly queueMax?: number;
  readonly cookie?: string;
  readonly loadScale?: number;
  readonly report?: LoadReportTarget;
}

/** Where a capacity server sends its load vectors: its agent host id, the monitor, the cluster key. */
export interface LoadReportTarget {
  readonly host: number;
  readonly monitor: string;
  readonly keyHex: string;
  readonly intervalMs: number;
}

interface Job {
  readonly req: http.IncomingMessage;
  readonly res: http.ServerResponse;
  readonly setCookie: string | null;
}

/**
 * The load as reported: (busy worker-ms + mean queue length x serviceMs) / (workers x elapsedMs) —
 * work done plus work waiting, over the work the workers could do in the window — capped at 1, scaled.
 */
export function reportedLoad(busyMs: number, elapsedMs: number, workers: number, queued: number, serviceMs: number, scale: number): number {
  const load = elapsedMs > 0 ? (busyMs + queued * serviceMs) / (workers * elapsedMs) : 0;
  return (load >= 1 ? 1 : load > 0 ? load : 0) * scale;
}

/**
 * Busy worker-time and queue-length integrals of a capacity server (HTTP here, SIP in
 * capacity-sip-uas.ts), read by the load vectors it reports. `account()` before every change of the
 * busy or queued count.
 */
export class WorkMeter {
  private busyMs = 0;
  private queuedMs = 0;
  private markAt = performance.now();
  private lastReportAt = this.markAt;

  constructor(
    private readonly busy: () => number,
    private readonly queued: () => number,
  ) {}

  readonly account = (): void => {
    const now = performance.now();
    this.busyMs += this.busy() * (now - this.markAt);
    this.queuedMs += this.queued() * (now - this.markAt);
    this.markAt = now;
  };

  /** Reports reportedLoad() over each interval to `target`. */
  report(target: LoadReportTarget, workers: number, serviceMs: number, scale: number): LoadReporter {
    const at = target.monitor.lastIndexOf(':');
    return startLoadReporter({
      host: target.host,
      monitorHost: target.monitor.slice(0, at),
      monitorPort: Number(target.monitor.slice(at + 1)),
      key: Buffer.from(target.keyHex, 'hex'),
      intervalMs: target.intervalMs,
      load: () => {
        this.account();
        const now = performance.now();
        const elapsed = now - this.lastReportAt;
        const load = reportedLoad(this.busyMs, elapsed, workers, elapsed > 0 ? this.queuedMs / elapsed : 0, serviceMs, scale);
        this.busyMs = 0;
        this.queuedMs = 0;
        this.lastReportAt = now;
        return load;
      },
    });
  }
}

export function startCapacityBackend(opts: CapacityBackendOptions): Promise<{ port: number; close(): void }> {
  const queueMax = opts.queueMax ?? 10_000;
  const cookie = opts.cookie ?? 'SID';
  const cookieRe = new RegExp(`(?:^|;\\s*)${cookie}=([^;\\s]+)`);
  const queue: Job[] = [];
  let head = 0;
  let busy = 0;
  let served = 0;
  let skipped = 0;
  let overflow = 0;
  let nextId = 0;
  const meter = new WorkMeter(
    () => busy,
    () => queue.length - head,
  );
  const account = meter.account;

  const run = (): void => {
    while (busy < opts.workers && head < queue.length) {
      account();
      const job = queue[head]!;
      queue[head++] = undefined as unknown as Job;
      if (head > 1024 && head * 2 > queue.length) {
        queue.splice(0, head);
        head = 0;
      }
      if (job.req.socket.destroyed) {
        skipped++;
        continue;
      }
      busy++;
      setTimeout(() => {
        account();
        busy--;
        served++;
        if (!job.res.destroyed) {
          const headers: http.OutgoingHttpHeaders = { 'content-type': 'text/plain', 'content-length': '3' };
          if (job.setCookie !== null) headers['set-cookie'] = job.setCookie;
          job.res.writeHead(200, headers);
          job.res.end('ok\n');
        }
        run();
      }, opts.serviceMs);
    }
  };

  const server = http.createServer({ keepAlive: true }, (req, res) => {
    if (req.url === '/__stats') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ served, skipped, overflow, busy, queued: queue.length - head }));
      return;
    }
    req.resume();
    const has = cookieRe.test(req.headers.cookie ?? '');
    if (queue.length - head >= queueMax) {
      overflow++;
      res.writeHead(503, { 'content-length': '0', 'retry-after': '1' });
      res.end();
      return;
    }
    account();
    queue.push({ req, res, setCookie: has ? null : `${cookie}=${process.pid}-${++nextId}; Path=/` });
    run();
  });
  server.keepAliveTimeout = 60_000;

  const reporter: LoadReporter | null = opts.report ? meter.report(opts.report, opts.workers, opts.serviceMs, opts.loadScale ?? 1) : null;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, '127.0.0.1', () => {
      const address = server.address();
      resolve({
        port: typeof address === 'object' && address ? address.port : opts.port,
        close() {
          reporter?.close();
          server.closeAllConnections();
          server.close();
        },
      });
    });
  });
}

runIfMain(import.meta.url, async () => {
  const b = await startCapacityBackend(JSON.parse(process.argv[2] ?? '{}') as CapacityBackendOptions);
  process.stdout.write(`listening ${b.port}\n`);
  process.on('SIGTERM', () => {
    b.close();
    process.exit(0);
  });
});
