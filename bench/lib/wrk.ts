/**
 * @module The load driver: runs wrk (Debian package `wrk`, 4.1) against one URL and parses its text
 * report into numbers. wrk is used because it is a C event loop that costs the machine far less per
 * request than any Node client, and HAProxy's own published numbers come from it.
 *
 * A run with more than ERROR_RATIO_MAX of failed requests (socket errors or non-2xx/3xx) throws: a
 * proxy that answers fast with errors must not look fast.
 */
import { runProcess } from './procs.js';

/** Failed requests tolerated in a run, as a fraction of completed requests (0.1 %). */
export const ERROR_RATIO_MAX = 0.001;
/** Extra time wrk may take beyond its duration before it is killed. */
const WRK_SLACK_MS = 15_000;

export interface WrkOptions {
  readonly url: string;
  readonly seconds: number;
  /** wrk -t: load-driver threads. */
  readonly threads?: number;
  /** wrk -c: keep-alive connections, spread over the threads. */
  readonly connections?: number;
  /** wrk --timeout, seconds: a request slower than this counts as a timeout error. */
  readonly timeoutSeconds?: number;
  /** Path to wrk; default from PATH. */
  readonly wrk?: string;
  /** Throw when errors exceed ERROR_RATIO_MAX (default true). */
  readonly failOnErrors?: boolean;
  /** Request header lines (wrk -H), e.g. 'Connection: close' for a new connection per request. */
  readonly headers?: readonly string[];
}

export interface SocketErrors {
  readonly connect: number;
  readonly read: number;
  readonly write: number;
  readonly timeout: number;
}

export interface WrkResult {
  readonly requestsPerSec: number;
  /** Completed requests in the run. */
  readonly requests: number;
  readonly durationSec: number;
  readonly latencyP50Ms: number;
  readonly latencyP75Ms: number;
  readonly latencyP90Ms: number;
  readonly latencyP99Ms: number;
  readonly latencyMaxMs: number;
  /** Responses with a status of 400 or more (wrk's "Non-2xx or 3xx responses"). */
  readonly non2xx: number;
  readonly socketErrors: SocketErrors;
  /** (non2xx + all socket errors) / requests. */
  readonly errorRatio: number;
}

/** Thrown when a run's error ratio exceeds ERROR_RATIO_MAX; carries the parsed result. */
export class WrkErrorsError extends Error {
  constructor(readonly result: WrkResult, readonly url: string, readonly raw: string) {
    super(
      `wrk ${url}: ${(result.errorRatio * 100).toFixed(3)} % of requests failed ` +
        `(non-2xx/3xx ${result.non2xx}, socket errors ${JSON.stringify(result.socketErrors)}, ` +
        `requests ${result.requests}); limit ${ERROR_RATIO_MAX * 100} %\n${raw}`,
    );
    this.name = 'WrkErrorsError';
  }
}

/** Milliseconds per wrk time unit; microseconds divide (1/1000 is not exact in binary). */
const MS_PER_UNIT: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** "337.23us" → 0.33723, "1.20ms" → 1.2, "2.00s" → 2000 (wrk's format_time units). */
export function parseDurationMs(text: string): number {
  const m = /^([\d.]+)(us|ms|s|m|h)$/.exec(text.trim());
  if (!m) throw new Error(`wrk: cannot parse a time from "${text}"`);
  const n = Number(m[1]);
  return m[2] === 'us' ? n / 1000 : n * MS_PER_UNIT[m[2]!]!;
}

/** Parses wrk's report (printed with --latency). Throws if a needed line is missing. */
export function parseWrkOutput(raw: string): WrkResult {
  const need = (re: RegExp, what: string): RegExpExecArray => {
    const m = re.exec(raw);
    if (!m) throw new Error(`wrk: no ${what} in output:\n${raw}`);
    return m;
  };
  const percentile = (p: number): number =>
    parseDurationMs(need(new RegExp(`^\\s*${p}%\\s+(\\S+)\\s*$`, 'm'), `${p}% latency line (was --latency given?)`)[1]!);

  const rps = Number(need(/^Requests\/sec:\s+([\d.]+)/m, 'Requests/sec line')[1]);
  const total = need(/^\s*(\d+) requests in ([\d.]+(?:us|ms|s|m|h)),/m, '"N requests in T" line');
  // "Latency   337.23us  100.01us   3.00ms   90.00%": avg, stdev, max.
  const latency = need(/^\s*Latency\s+(\S+)\s+(\S+)\s+(\S+)/m, 'Latency stats line');
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(raw);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(raw);

  const requests = Number(total[1]);
  const socketErrors: SocketErrors = {
    connect: Number(sock?.[1] ?? 0),
    read: Number(sock?.[2] ?? 0),
    write: Number(sock?.[3] ?? 0),
    timeout: Number(sock?.[4] ?? 0),
  };
  const bad = Number(non2xx?.[1] ?? 0);
  const errors = bad + socketErrors.connect + socketErrors.read + socketErrors.write + socketErrors.timeout;
  return {
    requestsPerSec: rps,
    requests,
    durationSec: parseDurationMs(total[2]!) / 1000,
    latencyP50Ms: percentile(50),
    latencyP75Ms: percentile(75),
    latencyP90Ms: percentile(90),
    latencyP99Ms: percentile(99),
    latencyMaxMs: parseDurationMs(latency[3]!),
    non2xx: bad,
    socketErrors,
    // No completed request at all is total failure, not a ratio of 0/0.
    errorRatio: requests > 0 ? errors / requests : 1,
  };
}

/** Runs `wrk -t<threads> -c<connections> -d<seconds>s --latency <url>` and parses the report. */
export async function runWrk(opts: WrkOptions): Promise<WrkResult> {
  const threads = opts.threads ?? 1;
  const connections = opts.connections ?? 32;
  if (connections < threads) throw new RangeError(`wrk: connections (${connections}) must be >= threads (${threads})`);
  const args = [`-t${threads}`, `-c${connections}`, `-d${opts.seconds}s`, '--latency'];
  if (opts.timeoutSeconds !== undefined) args.push('--timeout', `${opts.timeoutSeconds}s`);
  for (const h of opts.headers ?? []) args.push('-H', h);
  args.push(opts.url);
  const wrk = opts.wrk ?? 'wrk';
  const run = await runProcess(wrk, args, opts.seconds * 1000 + WRK_SLACK_MS);
  if (run.code !== 0) {
    throw new Error(`${wrk} ${args.join(' ')}: exit code ${run.code} signal ${run.signal}\n${run.stdout}${run.stderr}`);
  }
  const result = parseWrkOutput(run.stdout);
  if ((opts.failOnErrors ?? true) && result.errorRatio > ERROR_RATIO_MAX) {
    throw new WrkErrorsError(result, opts.url, run.stdout);
  }
  return result;
}
