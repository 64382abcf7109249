/**
 * @module The node's load, as SARA III.G measures it: CPU usage, memory usage, network buffer usage,
 * I/O queue length and the application's backlog, each read from Linux's /proc (the backlog from the
 * application's stats URL), each normalised to [0,1] by the formula in its parser's JSDoc, and the
 * scalar load l_j as their weighted sum. The parsers are pure functions of the file text so that they
 * are tested on fixture files (test/fixtures/proc/); `LoadCollector` keeps the previous counters that
 * the rate-based indicators need.
 */
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import type { LoadWeights } from '../config/agent-schema.js';
import { realClock, type Clock } from '../core/clock.js';

/** The five load indicators, in the load vector's order. */
export const INDICATORS = ['cpu', 'memory', 'network', 'io', 'backlog'] as const;
export type Indicator = (typeof INDICATORS)[number];

export interface LoadSample {
  cpu: number;
  memory: number;
  network: number;
  io: number;
  backlog: number;
  /** Σ w_i x_i over the indicators that could be measured, divided by the sum of their weights. */
  load: number;
  /** Indicators that could not be measured this time (reported as 0, left out of `load`). */
  missing: readonly Indicator[];
}

// ---------------------------------------------------------------------------------------------
// CPU: /proc/stat

export interface CpuTimes {
  /** Jiffies spent doing anything but idling, summed over every CPU. */
  busy: number;
  /** All jiffies, summed over every CPU. */
  total: number;
}

/**
 * The aggregate `cpu` line of /proc/stat. total = user + nice + system + idle + iowait + irq +
 * softirq + steal; busy = total − idle − iowait (iowait is idle time with I/O outstanding: the I/O
 * indicator counts it). guest and guest_nice are already inside user and nice, so they are not added.
 * Null when the line is missing or short (a kernel older than 2.6.11 has no steal column: absent
 * columns count as 0, but user, nice, system and idle must be there).
 */
export function parseCpuTimes(text: string): CpuTimes | null {
  const line = lineStartingWith(text, 'cpu ');
  if (line === null) return null;
  const f = numbers(line, 1);
  if (f.length < 4) return null;
  const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = f;
  const total = user + nice + system + idle + iowait + irq + softirq + steal;
  return { busy: total - idle - iowait, total };
}

/**
 * CPU usage over an interval = Δbusy / Δtotal, in [0,1] by construction (0 when no time passed or
 * the counters went backwards).
 */
export function cpuUsage(prev: CpuTimes, next: CpuTimes): number {
  const total = next.total - prev.total;
  const busy = next.busy - prev.busy;
  if (!(total > 0) || busy < 0) return 0;
  return clamp01(busy / total);
}

// ---------------------------------------------------------------------------------------------
// Memory: /proc/meminfo

/**
 * Memory usage = 1 − MemAvailable / MemTotal: the share of memory the kernel cannot hand to a new
 * workload without swapping (MemAvailable counts reclaimable page cache as free, unlike MemFree).
 * Kernels before 3.14 have no MemAvailable: MemFree + Buffers + Cached stands in for it. Null when
 * MemTotal is missing or zero.
 */
export function parseMemoryUsage(text: string): number | null {
  const kb = (key: string): number | null => {
    const line = lineStartingWith(text, `${key}:`);
    if (line === null) return null;
    const n = numbers(line, 1)[0];
    return n === undefined ? null : n;
  };
  const total = kb('MemTotal');
  if (total === null || !(total > 0)) return null;
  let available = kb('MemAvailable');
  if (available === null) {
    const free = kb('MemFree');
    if (free === null) return null;
    available = free + (kb('Buffers') ?? 0) + (kb('Cached') ?? 0);
  }
  return clamp01(1 - available / total);
}

// ---------------------------------------------------------------------------------------------
// Network buffers: /proc/net/sockstat, tcp_mem / udp_mem, /proc/net/snmp and snmp6

export interface SocketMemory {
  /** Pages allocated to TCP socket buffers (`TCP: ... mem N`). */
  tcpPages: number | null;
  /** Pages allocated to UDP socket buffers (`UDP: ... mem N`). */
  udpPages: number | null;
}

/** The `mem` counters of /proc/net/sockstat (in pages, system-wide, IPv4 and IPv6 together). */
export function parseSockstat(text: string): SocketMemory {
  const mem = (prefix: string): number | null => {
    const line = lineStartingWith(text, prefix);
    const m = line === null ? null : / mem (\d+)/.exec(line);
    return m ? Number(m[1]) : null;
  };
  return { tcpPages: mem('TCP:'), udpPages: mem('UDP:') };
}

/**
 * The pressure threshold (the second of the three values, in pages) of /proc/sys/net/ipv4/tcp_mem or
 * udp_mem: above it the kernel starts shrinking socket buffers, so it is where "full" starts for an
 * application. Null when the file does not hold three numbers.
 */
export function parseMemPressure(text: string): number | null {
  const f = numbers(text.trim(), 0);
  return f.length === 3 && f[1]! > 0 ? f[1]! : null;
}

/**
 * Datagrams dropped for lack of socket buffer space since boot: RcvbufErrors + SndbufErrors of the
 * `Udp:` table of /proc/net/snmp (IPv4), or of Udp6RcvbufErrors + Udp6SndbufErrors in
 * /proc/net/snmp6 (IPv6; pass `ipv6`). Null when the counters are not there.
 */
export function parseUdpBufferErrors(text: string, ipv6 = false): number | null {
  if (ipv6) {
    let sum = 0;
    let found = 0;
    for (const name of ['Udp6RcvbufErrors', 'Udp6SndbufErrors']) {
      const line = lineStartingWith(text, `${name} `) ?? lineStartingWith(text, `${name}\t`);
      const n = line === null ? undefined : numbers(line, 1)[0];
      if (n !== undefined) {
        sum += n;
        found++;
      }
    }
    return found > 0 ? sum : null;
  }
  // /proc/net/snmp: a header line of names and a line of values, both starting "Udp:".
  const lines = text.split('\n').filter((l) => l.startsWith('Udp:'));
  if (lines.length < 2) return null;
  const names = lines[0]!.split(/\s+/).slice(1);
  const values = lines[1]!.split(/\s+/).slice(1).map(Number);
  let sum = 0;
  let found = 0;
  for (const name of ['RcvbufErrors', 'SndbufErrors']) {
    const v = values[names.indexOf(name)];
    if (names.includes(name) && v !== undefined && Number.isFinite(v)) {
      sum += v;
      found++;
    }
  }
  return found > 0 ? sum : null;
}

/** Buffer drops per second at which the drop signal reads 0.5 (see `udpDropSaturation`). */
export const UDP_DROPS_HALF_PER_S = 10;

/**
 * Saturation signal from UDP buffer drops: r / (r + UDP_DROPS_HALF_PER_S), with r the drops per
 * second over the interval. A single drop already means some socket's buffer was full, so the signal
 * rises from 0 at once: 1 drop/s → 0.09, 10/s → 0.5, 100/s → 0.91, and tends to 1.
 */
export function udpDropSaturation(prevErrors: number, nextErrors: number, intervalMs: number): number {
  const drops = nextErrors - prevErrors;
  if (!(intervalMs > 0) || !(drops > 0)) return 0;
  const rate = drops / (intervalMs / 1000);
  return rate / (rate + UDP_DROPS_HALF_PER_S);
}

/**
 * Network buffer usage = the highest of: TCP buffer pages / tcp_mem pressure, UDP buffer pages /
 * udp_mem pressure (each capped at 1), and the UDP drop signal. The highest, not a mean, because one
 * saturated path (a SIP server's full UDP receive buffer) hurts the node however idle TCP is. Null
 * when none of them could be measured.
 */
export function networkUsage(parts: { tcp: number | null; udp: number | null; drops: number | null }): number | null {
  let worst: number | null = null;
  for (const v of [parts.tcp, parts.udp, parts.drops]) if (v !== null) worst = Math.max(worst ?? 0, clamp01(v));
  return worst;
}

// ---------------------------------------------------------------------------------------------
// I/O queue: /proc/diskstats

/**
 * Per device, the "weighted time spent doing I/Os" counter (ms; the 14th column of
 * /proc/diskstats: each millisecond counts once per request in flight). Memory-backed devices
 * (ram*, zram*) are skipped: they have no queue worth the name.
 */
export function parseDiskWeightedMs(text: string): Map<string, number> {
  const devices = new Map<string, number>();
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 14) continue;
    const name = f[2]!;
    if (/^(ram|zram)\d+$/.test(name)) continue;
    const weighted = Number(f[13]);
    if (Number.isFinite(weighted)) devices.set(name, weighted);
  }
  return devices;
}

/**
 * Average I/O queue length over the interval of the busiest device: Δweighted_ms / interval_ms (what
 * iostat prints as aqu-sz). The busiest device rather than a sum, because a partition or a device
 * mapper volume repeats the queue of the disk under it and a sum would count it twice.
 */
export function ioQueueLength(prev: ReadonlyMap<string, number>, next: ReadonlyMap<string, number>, intervalMs: number): number {
  if (!(intervalMs > 0)) return 0;
  let worst = 0;
  for (const [name, weighted] of next) {
    const before = prev.get(name);
    if (before === undefined || weighted < before) continue; // new device, or a counter reset
    worst = Math.max(worst, (weighted - before) / intervalMs);
  }
  return worst;
}

/**
 * Queue length → [0,1] as q / (1 + q): an idle disk is 0, an average of one request in flight
 * (the device always busy, nothing waiting) is 0.5, three is 0.75, and the value tends to 1.
 */
export function normaliseQueue(q: number): number {
  return q > 0 ? q / (1 + q) : 0;
}

// ---------------------------------------------------------------------------------------------
// Backlog: the application's stats URL

/**
 * The backlog in a stats answer: a JSON object with a numeric `backlog`, or a bare number (JSON or
 * plain text). Null for anything else, a negative number included.
 */
export function parseBacklog(body: string): number | null {
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch {
    return null;
  }
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) value = (value as Record<string, unknown>).backlog;
  return typeof value === 'number' && Number.isFinite(value) && value >= 0 ? value : null;
}

/** Backlog → [0,1] as min(1, backlog / capacity): the configured capacity is full load. */
export function normaliseBacklog(backlog: number, capacity: number): number {
  return clamp01(backlog / capacity);
}

/** A stats answer larger than this is not a counter: the fetch gives up. */
const MAX_STATS_BODY_BYTES = 64 * 1024;

/**
 * GETs `url` and parses the backlog; null on any error, a non-2xx status, `timeoutMs` passing or
 * `signal` aborting.
 */
export function fetchBacklog(url: string, timeoutMs: number, signal?: AbortSignal): Promise<number | null> {
  return new Promise((resolve) => {
    let done = false;
    const settle = (v: number | null): void => {
      if (done) return;
      done = true;
      req.destroy();
      resolve(v);
    };
    const options: http.RequestOptions = { timeout: timeoutMs, headers: { 'user-agent': 'holdfast-agent', connection: 'close' } };
    if (signal) options.signal = signal;
    const req = http.get(url, options, (res) => {
      if (!res.statusCode || res.statusCode < 200 || res.statusCode >= 300) return settle(null);
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        body += chunk;
        if (body.length > MAX_STATS_BODY_BYTES) settle(null);
      });
      res.on('end', () => settle(parseBacklog(body)));
      res.on('error', () => settle(null));
    });
    req.on('timeout', () => settle(null));
    req.on('error', () => settle(null));
  });
}

// ---------------------------------------------------------------------------------------------
// The weighted load

/**
 * SARA's node load l_j = Σ w_i x_i over the measured indicators, divided by the sum of their
 * weights: an indicator that cannot be measured (no stats URL, no /proc file) does not pull the load
 * towards 0; its weight is shared among the others. Weights come normalised from the config.
 */
export function weightedLoad(values: Readonly<Record<Indicator, number | null>>, weights: LoadWeights): number | null {
  let sum = 0;
  let weight = 0;
  for (const name of INDICATORS) {
    const x = values[name];
    if (x === null) continue;
    sum += weights[name] * clamp01(x);
    weight += weights[name];
  }
  // Nothing weighted could be measured (a stats fetch timed out, say): no answer rather than 0,
  // which would make an unmeasurable node look idle and draw traffic to it.
  return weight > 0 ? clamp01(sum / weight) : null;
}

// ---------------------------------------------------------------------------------------------
// The collector

/** Reads a file under /proc by its path relative to /proc; null when it cannot be read. */
export type ProcReader = (path: string) => Promise<string | null>;

export const readProc: ProcReader = (path) => readFile(`/proc/${path}`, 'utf8').catch(() => null);

/** The /proc files the collector reads, relative to /proc. */
export const PROC_FILES = {
  stat: 'stat',
  meminfo: 'meminfo',
  sockstat: 'net/sockstat',
  tcpMem: 'sys/net/ipv4/tcp_mem',
  udpMem: 'sys/net/ipv4/udp_mem',
  snmp: 'net/snmp',
  snmp6: 'net/snmp6',
  diskstats: 'diskstats',
} as const;

/** The stats fetch never takes longer than this, however long the load interval. */
export const STATS_TIMEOUT_MAX_MS = 1000;

export interface LoadCollectorOptions {
  weights: LoadWeights;
  backlogCapacity: number;
  /** The application's stats URL; without it the backlog indicator is not measured. */
  statsUrl?: string;
  /** The stats fetch timeout; default STATS_TIMEOUT_MAX_MS. */
  statsTimeoutMs?: number;
  clock?: Clock;
  read?: ProcReader;
  /** Injectable for tests; default fetchBacklog. */
  fetchBacklog?: typeof fetchBacklog;
}

interface Counters {
  at: number;
  cpu: CpuTimes | null;
  udpErrors: number | null;
  disks: Map<string, number> | null;
}

/**
 * Samples the node's load. The rate-based indicators (CPU, UDP drops, I/O queue) are measured over
 * the time since the previous call, so call `prime()` once first; the level-based ones (memory,
 * socket buffer pages, backlog) are read as they are.
 */
export class LoadCollector {
  private readonly clock: Clock;
  private readonly read: ProcReader;
  private readonly fetch: typeof fetchBacklog;
  private prev: Counters | null = null;
  /** The last load that could be computed, repeated while no weighted indicator can be measured. */
  private lastLoad = 0;
  private statsEnabled = true;
  /** Aborts the stats fetch in flight, so that a stopping agent does not wait for it. */
  private readonly abort = new AbortController();

  constructor(private readonly opts: LoadCollectorOptions) {
    this.clock = opts.clock ?? realClock;
    this.read = opts.read ?? readProc;
    this.fetch = opts.fetchBacklog ?? fetchBacklog;
  }

  /** Stops fetching the stats URL (a draining node must not be kept busy by its own agent). */
  disableStats(): void {
    this.statsEnabled = false;
  }

  /** Aborts a stats fetch in flight and fetches no more. */
  close(): void {
    this.statsEnabled = false;
    this.abort.abort();
  }

  /** Reads the counters that the first sample's rates start from. */
  async prime(): Promise<void> {
    this.prev = await this.counters();
  }

  async sample(): Promise<LoadSample> {
    const statsUrl = this.statsEnabled ? this.opts.statsUrl : undefined;
    const [counters, meminfo, sockstat, tcpMem, udpMem, backlog] = await Promise.all([
      this.counters(),
      this.read(PROC_FILES.meminfo),
      this.read(PROC_FILES.sockstat),
      this.read(PROC_FILES.tcpMem),
      this.read(PROC_FILES.udpMem),
      statsUrl === undefined ? null : this.fetch(statsUrl, this.opts.statsTimeoutMs ?? STATS_TIMEOUT_MAX_MS, this.abort.signal),
    ]);
    const prev = this.prev;
    this.prev = counters;
    const intervalMs = prev ? counters.at - prev.at : 0;

    const cpu = prev?.cpu && counters.cpu ? cpuUsage(prev.cpu, counters.cpu) : null;
    const memory = meminfo === null ? null : parseMemoryUsage(meminfo);
    const pages = sockstat === null ? { tcpPages: null, udpPages: null } : parseSockstat(sockstat);
    const ratio = (used: number | null, pressureText: string | null): number | null => {
      const pressure = pressureText === null ? null : parseMemPressure(pressureText);
      return used === null || pressure === null ? null : used / pressure;
    };
    const drops =
      prev?.udpErrors != null && counters.udpErrors !== null
        ? udpDropSaturation(prev.udpErrors, counters.udpErrors, intervalMs)
        : null;
    const network = networkUsage({ tcp: ratio(pages.tcpPages, tcpMem), udp: ratio(pages.udpPages, udpMem), drops });
    const io = prev?.disks && counters.disks ? normaliseQueue(ioQueueLength(prev.disks, counters.disks, intervalMs)) : null;
    const backlogLoad = backlog === null ? null : normaliseBacklog(backlog, this.opts.backlogCapacity);

    const values: Record<Indicator, number | null> = { cpu, memory, network, io, backlog: backlogLoad };
    return {
      cpu: cpu ?? 0,
      memory: memory ?? 0,
      network: network ?? 0,
      io: io ?? 0,
      backlog: backlogLoad ?? 0,
      load: (this.lastLoad = weightedLoad(values, this.opts.weights) ?? this.lastLoad),
      missing: INDICATORS.filter((name) => values[name] === null),
    };
  }

  private async counters(): Promise<Counters> {
    const [stat, snmp, snmp6, diskstats] = await Promise.all([
      this.read(PROC_FILES.stat),
      this.read(PROC_FILES.snmp),
      this.read(PROC_FILES.snmp6),
      this.read(PROC_FILES.diskstats),
    ]);
    const v4 = snmp === null ? null : parseUdpBufferErrors(snmp);
    const v6 = snmp6 === null ? null : parseUdpBufferErrors(snmp6, true);
    return {
      at: this.clock.now(),
      cpu: stat === null ? null : parseCpuTimes(stat),
      udpErrors: v4 === null && v6 === null ? null : (v4 ?? 0) + (v6 ?? 0),
      disks: diskstats === null ? null : parseDiskWeightedMs(diskstats),
    };
  }
}

// ---------------------------------------------------------------------------------------------

function clamp01(x: number): number {
  return x > 0 ? (x < 1 ? x : 1) : 0;
}

/** The first line that starts with `prefix`, or null. */
function lineStartingWith(text: string, prefix: string): string | null {
  let start = 0;
  while (start < text.length) {
    const end = text.indexOf('\n', start);
    const stop = end === -1 ? text.length : end;
    if (text.startsWith(prefix, start)) return text.slice(start, stop);
    start = stop + 1;
  }
  return null;
}

/** The numeric fields of a whitespace-separated line, from field `from` on, up to the first non-number. */
function numbers(line: string, from: number): number[] {
  const out: number[] = [];
  for (const field of line.trim().split(/\s+/).slice(from)) {
    const n = Number(field);
    if (field === '' || !Number.isFinite(n)) break;
    out.push(n);
  }
  return out;
}
