/**
 * @module `dispatcher.workers: N` (issue 16): N worker processes (node:cluster) share the listeners of
 * the services that can be spread, each worker with its own event loop, pools and forwarders; the
 * primary keeps everything that needs one place: detectors and probes (one view of health, copied to
 * the workers), agents, admission, pins, elections, UDP, the admin API. Which services spread, the
 * primary's side of the workers (fork, health broadcast, failure reports, metrics, restart, close),
 * and the messages between them.
 *
 * The messages go over the IPC channel node:cluster gives each worker (a socketpair inherited by that
 * child only, not reachable from the network): versioned (`v`), not MAC'd.
 */
import cluster, { type Worker } from 'node:cluster';
import diagnostics_channel from 'node:diagnostics_channel';
import net from 'node:net';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { formatHostPort, parseHostPort, type HostPort } from '../core/address.js';
import type { Backend, BackendState } from '../core/backend.js';
import type { Clock, TimerHandle } from '../core/clock.js';
import type { Config, ServiceConfig } from '../config/schema.js';
import type { HealthReport } from '../monitor/index.js';
import { channels } from '../core/diagnostics.js';
import type { ConnectVerdict } from '../edge/client-limits.js';
import type { AddressLeases } from '../edge/shared-limits.js';
import type { SessionAuthority, SessionShareDown, SessionShareUp } from '../sessions/session-share.js';

/** The message version; a worker refuses a start message of another. */
export const WORKER_PROTOCOL_VERSION = 1;
/** A worker that died is replaced after this (not at once: a worker crashing at start must not spin). */
export const WORKER_RESTART_DELAY_MS = 500;
/** How long a worker may take from fork to listening. */
export const WORKER_START_TIMEOUT_MS = 20_000;
/** A worker's replica of a session table never times a session out itself (the primary does). */
export const WORKER_SESSION_TIMEOUT_MS = 2 ** 50;
/** Starts tried when a port the primary picked (port 0) is taken before the workers bind it. */
const PORT_ATTEMPTS = 3;
/** How long a scrape waits for the workers' metrics. */
export const METRICS_TIMEOUT_MS = 1000;
/** After its close grace, a worker that has not exited is killed. */
const WORKER_EXIT_MARGIN_MS = 2000;

const WORKER_MAIN = fileURLToPath(new URL('./worker-main.js', import.meta.url));

/** Balancers that read load vectors (kept by the primary's load manager): not spread. */
const LOAD_DRIVEN_BALANCERS = new Set(['shell', 'least-loaded']);

export type ToWorker =
  | { v: 1; t: 'start'; config: Config; services: string[]; index: number; workers: number }
  | { v: 1; t: 'state'; service: string; backend: string; state: BackendState; reason: string; since: number }
  | { v: 1; t: 'metrics'; id: number }
  /** The verdict on an `acquire` (per-address connection bounds are the primary's: edge/shared-limits.ts). */
  | { v: 1; t: 'gate'; id: number; verdict: ConnectVerdict }
  /** The primary's session table changed, or answers a `get` (sessions/session-share.ts). */
  | { v: 1; t: 'session'; service: string; m: SessionShareDown }
  /** The answer to `requests`: request tokens of an address (0: over requestsPerSecond). */
  | { v: 1; t: 'tokens'; id: number; granted: number; retryAfterS: number }
  /** Re-read the TLS certificates (SIGHUP); the primary re-reads the same files and reports refusals. */
  | { v: 1; t: 'reload' }
  | { v: 1; t: 'close'; graceMs: number };

/**
 * Events a worker relays to the primary, which publishes them again on the same channel: the rare,
 * per-failure ones that the event stream, the logs and a test in the primary's process watch. The
 * worker does not count them in its own metrics (the primary does, once). Per-request events
 * (`holdfast:http:exchange`) stay in the worker and reach the primary as aggregated metrics.
 */
export const RELAYED_CHANNELS: ReadonlySet<string> = new Set(
  [channels.failover, channels.requestLogOverflow, channels.backendError, channels.httpRefuse, channels.sessionRefuse].map((c) => String(c.name)),
);

export type FromWorker =
  /** The worker listens for messages (sent before anything else: earlier messages would be lost). */
  | { v: 1; t: 'hello' }
  | { v: 1; t: 'ready'; addresses: Record<string, HostPort> }
  | { v: 1; t: 'failed'; message: string }
  | { v: 1; t: 'report'; service: string; report: HealthReport }
  | { v: 1; t: 'event'; channel: string; message: unknown }
  | { v: 1; t: 'metrics'; id: number; metrics: unknown[] }
  /** A connection from `address` was accepted: may it stay (per-address bounds of the whole dispatcher)? */
  | { v: 1; t: 'acquire'; service: string; id: number; address: string }
  /** A connection the primary admitted closed. */
  | { v: 1; t: 'release'; service: string; address: string }
  /** Request tokens of `address` (requestsPerSecond is one bucket for all workers). */
  | { v: 1; t: 'requests'; service: string; id: number; address: string; want: number }
  /** A change of the worker's session replica, a lookup, or its sessions' traffic (sessions/session-share.ts). */
  | { v: 1; t: 'session'; service: string; m: SessionShareUp };

/** `dispatcher.workers` as a count: `auto` is the number of cores Node may use. */
export function workerCount(config: Config): number {
  const w = config.dispatcher?.workers ?? 1;
  return w === 'auto' ? Math.max(1, os.availableParallelism()) : w;
}

/**
 * Why `service` stays in the primary, or null when workers can share it: HTTP and TCP only (UDP is
 * not load-shared by node:cluster; SIP and RTSP keep dialogs and media ports), and none of the state
 * that one process must hold: no SA2C admission, no balancer that reads load vectors, no election
 * group (bound and released with the VIP), no TLS passthrough. Virtual sessions (cookie, header) are
 * spread: the primary's session table is the authority, each worker a replica (sessions/session-share.ts).
 */
export function notSpreadBecause(service: ServiceConfig, grouped: ReadonlySet<string>): string | null {
  if (service.protocol !== 'http' && service.protocol !== 'tcp') return `protocol ${service.protocol}`;
  if (grouped.has(service.name)) return 'moves with an election group';
  if (service.admission.enabled) return 'SA2C admission';
  if (LOAD_DRIVEN_BALANCERS.has(service.balancer)) return `balancer ${service.balancer} reads load vectors`;
  if (service.tlsPassthrough !== undefined) return 'TLS passthrough';
  if (service.protocol === 'http' && service.http.http2.enabled) return 'HTTP/2 (not in workers yet)';
  return null;
}

/**
 * A service's per-client limits as one of `workers` workers applies them. The listener-wide bound
 * (`maxConnections`) is divided among the workers (rounded up): round-robin hands each an equal share
 * of all new connections. The per-address connection bounds (`maxConnectionsPerAddress`,
 * `connectionsPerSecond`) are not divided: the primary decides them for every worker (each accept
 * asks it, edge/shared-limits.ts). The request rate (`requestsPerSecond`) is applied whole by each
 * worker: one address's connections on N workers may send up to N times it.
 */
export function workerLimits(limits: ServiceConfig['limits'], workers: number): ServiceConfig['limits'] {
  return { ...limits, maxConnections: limits.maxConnections === 0 ? 0 : Math.max(1, Math.ceil(limits.maxConnections / workers)) };
}

/**
 * A spread service's configuration as one of `workers` workers runs it: its limits (workerLimits),
 * and its share of `http.failover.maxTotalLogBytes` ("all logged requests of the service together"),
 * so that the request logs of all workers together stay within the configured bound.
 */
export function workerServiceConfig(service: ServiceConfig, workers: number): ServiceConfig {
  const failover = service.http.failover;
  const keyed = service.sessions.cookie !== undefined || service.sessions.header !== undefined;
  return {
    ...service,
    // A worker's session table is a replica: its sessions end when the primary's do, never on their own.
    ...(keyed ? { sessions: { ...service.sessions, sessionTimeoutMs: WORKER_SESSION_TIMEOUT_MS } } : {}),
    limits: workerLimits(service.limits, workers),
    http: { ...service.http, failover: { ...failover, maxTotalLogBytes: Math.floor(failover.maxTotalLogBytes / workers) } },
  };
}

/**
 * A free port on `host`, for a spread service configured with port 0. node:cluster shares a listen
 * handle between workers by address and port, so two dispatchers in one process (tests) that both
 * ask for port 0 would share one listener; the primary picks the port and every worker binds it.
 */
async function freePortOn(host: string): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>((resolve, reject) => {
    probe.once('error', reject);
    probe.listen({ host, port: 0, exclusive: true }, resolve);
  });
  const { port } = probe.address() as net.AddressInfo;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

/** `config` with every spread service on port 0 given a concrete free port. */
export async function withConcretePorts(config: Config, spread: ReadonlySet<string>): Promise<Config> {
  const services = await Promise.all(
    config.services.map(async (s) => {
      const at = parseHostPort(s.listen);
      if (!spread.has(s.name) || !at || at.port !== 0) return s;
      return { ...s, listen: formatHostPort({ host: at.host, port: await freePortOn(at.host) }) };
    }),
  );
  return { ...config, services };
}

/** What the primary needs of one spread service. */
export interface SpreadService {
  readonly name: string;
  readonly backends: readonly Backend[];
  /** The primary's health monitor: reports from workers go to it. */
  reportFailure(backend: Backend, kind: Extract<HealthReport, { kind: 'failure' }>['failure']): void;
  reportSuccess(backend: Backend): void;
  /** Subscribes to the primary's state changes of its backends. */
  onChange(listener: (backend: Backend) => void): () => void;
  /** The authority for per-address connection bounds (the primary's edge limiter), or null when they are off. */
  readonly leases: AddressLeases | null;
  /** The authority for the service's virtual sessions (the primary's table), or null without them. */
  readonly sessions: SessionAuthority | null;
}

export interface WorkerPoolStats {
  readonly workers: number;
  readonly alive: number;
  readonly restarts: number;
}

export interface WorkerPool {
  /** The address each spread service listens on (shared by every worker). */
  readonly addresses: ReadonlyMap<string, HostPort>;
  /** Every live worker's metrics (prom-client's getMetricsAsJSON), for AggregatorRegistry.aggregate. */
  metrics(): Promise<unknown[][]>;
  stats(): WorkerPoolStats;
  /** Worker pids, in worker order (a restarted worker's new pid). */
  pids(): number[];
  /** Every live worker re-reads its services' TLS certificates. */
  reloadCertificates(): void;
  /** Tells every worker to stop listening and finish its exchanges within graceMs; resolves when all exited. */
  close(graceMs: number): Promise<void>;
}

interface Slot {
  worker: Worker | null;
  ready: boolean;
  /** Sent its start message and the session snapshot: session changes go to it from then on. */
  sessionsLive: boolean;
}

/**
 * Forks `count` workers serving `spread`, waits until every one listens, and wires them to the
 * primary: state changes go out to every worker, failure reports come in, a worker that dies is
 * replaced after WORKER_RESTART_DELAY_MS. Rejects (and stops those started) when a worker fails to start.
 */
export async function startWorkers(configured: Config, spread: readonly SpreadService[], count: number, clock: Clock, log?: (msg: string, fields?: object) => void): Promise<WorkerPool> {
  cluster.setupPrimary({ exec: WORKER_MAIN, args: [] });
  const names = new Set(spread.map((s) => s.name));
  let config = await withConcretePorts(configured, names);
  const byName = new Map(spread.map((s) => [s.name, s]));
  const slots: Slot[] = Array.from({ length: count }, () => ({ worker: null, ready: false, sessionsLive: false }));
  const addresses = new Map<string, HostPort>();
  let closing = false;
  let restarts = 0;
  const restartTimers = new Set<TimerHandle>();
  let nextMetricsId = 1;
  const pendingMetrics = new Map<number, { waiting: Set<Worker>; got: unknown[][]; done: () => void }>();

  const send = (w: Worker, m: ToWorker): void => {
    if (w.isConnected()) w.send(m);
  };
  const snapshot = (w: Worker): void => {
    for (const s of spread) {
      for (const b of s.backends) send(w, { v: 1, t: 'state', service: s.name, backend: b.id, state: b.state, reason: b.reason, since: b.since });
    }
  };
  for (const s of spread) {
    s.sessions?.connect((m) => {
      const msg: ToWorker = { v: 1, t: 'session', service: s.name, m };
      for (const slot of slots) if (slot.worker && slot.sessionsLive) send(slot.worker, msg);
    });
  }
  const unsubscribe = spread.map((s) =>
    s.onChange((b) => {
      const m: ToWorker = { v: 1, t: 'state', service: s.name, backend: b.id, state: b.state, reason: b.reason, since: b.since };
      for (const slot of slots) if (slot.worker && slot.ready) send(slot.worker, m);
    }),
  );

  const settleMetrics = (w: Worker): void => {
    for (const p of pendingMetrics.values()) {
      if (p.waiting.delete(w) && p.waiting.size === 0) p.done();
    }
  };

  const fork = (index: number): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      const w = cluster.fork({ HOLDFAST_WORKER_INDEX: String(index) });
      const slot = slots[index]!;
      slot.worker = w;
      slot.ready = false;
      slot.sessionsLive = false;
      let started = false;
      const timeout = clock.setTimeout(() => {
        if (started) return;
        w.process.kill('SIGKILL');
        reject(new Error(`dispatcher worker ${index}: not listening after ${WORKER_START_TIMEOUT_MS} ms`));
      }, WORKER_START_TIMEOUT_MS);
      w.on('message', (m: FromWorker) => {
        if (m?.v !== WORKER_PROTOCOL_VERSION) return;
        switch (m.t) {
          case 'hello':
            send(w, { v: 1, t: 'start', config, services: spread.map((s) => s.name), index, workers: count });
            // The session tables as they are now, then every change: the worker's replica starts complete.
            for (const s of spread) for (const m of s.sessions?.snapshot() ?? []) send(w, { v: 1, t: 'session', service: s.name, m });
            slot.sessionsLive = true;
            break;
          case 'session': {
            const answer = byName.get(m.service)?.sessions?.handle(m.m) ?? null;
            if (answer !== null) send(w, { v: 1, t: 'session', service: m.service, m: answer });
            break;
          }
          case 'ready':
            started = true;
            timeout.cancel();
            for (const [name, at] of Object.entries(m.addresses)) addresses.set(name, at);
            slot.ready = true;
            // States may have moved between fork and ready: the worker starts from the primary's view.
            snapshot(w);
            resolve();
            break;
          case 'failed':
            started = true;
            timeout.cancel();
            reject(new Error(`dispatcher worker ${index}: ${m.message}`));
            break;
          case 'report': {
            const s = byName.get(m.service);
            const b = s?.backends.find((x) => x.id === m.report.backend);
            if (!s || !b) return;
            if (m.report.kind === 'failure') s.reportFailure(b, m.report.failure);
            else s.reportSuccess(b);
            break;
          }
          case 'acquire': {
            const leases = byName.get(m.service)?.leases;
            send(w, { v: 1, t: 'gate', id: m.id, verdict: leases ? leases.acquire(index, m.address) : 'accept' });
            break;
          }
          case 'release':
            byName.get(m.service)?.leases?.release(index, m.address);
            break;
          case 'requests': {
            const leases = byName.get(m.service)?.leases;
            const r = leases ? leases.takeRequests(m.address, m.want) : { granted: m.want, retryAfterS: 0 };
            send(w, { v: 1, t: 'tokens', id: m.id, granted: r.granted, retryAfterS: r.retryAfterS });
            break;
          }
          case 'event':
            if (RELAYED_CHANNELS.has(m.channel)) diagnostics_channel.channel(m.channel).publish(m.message);
            break;
          case 'metrics': {
            const p = pendingMetrics.get(m.id);
            if (p && p.waiting.delete(w)) {
              p.got.push(m.metrics);
              if (p.waiting.size === 0) p.done();
            }
            break;
          }
        }
      });
      w.on('exit', (code, signal) => {
        slot.ready = false;
        if (slot.worker === w) slot.sessionsLive = false;
        settleMetrics(w);
        // Its connections died with it: their per-address slots are free again.
        if (slot.worker === w) for (const s of spread) s.leases?.dropHolder(index);
        if (!started) {
          timeout.cancel();
          reject(new Error(`dispatcher worker ${index} exited at start (${signal ?? code})`));
          return;
        }
        if (closing || slot.worker !== w) return;
        slot.worker = null;
        log?.(`dispatcher worker ${index} exited (${signal ?? code}); replacing it`, { worker: index, code, signal });
        const t = clock.setTimeout(() => {
          restartTimers.delete(t);
          if (closing) return;
          restarts++;
          fork(index).catch((err: Error) => log?.(`dispatcher worker ${index} not replaced: ${err.message}`, { worker: index }));
        }, WORKER_RESTART_DELAY_MS);
        restartTimers.add(t);
      });
    });

  /** Stops every worker (none is replaced: each slot is emptied first). */
  const stopWorkers = (graceMs: number): Promise<unknown> =>
    Promise.all(
      slots.map(async (slot) => {
        const w = slot.worker;
        slot.worker = null;
        slot.ready = false;
        slot.sessionsLive = false;
        if (!w || w.isDead()) return;
        const exited = new Promise<void>((resolve) => w.once('exit', () => resolve()));
        send(w, { v: 1, t: 'close', graceMs });
        const kill = clock.setTimeout(() => w.process.kill('SIGKILL'), graceMs + WORKER_EXIT_MARGIN_MS);
        await exited;
        kill.cancel();
      }),
    );
  const stopAll = async (graceMs: number): Promise<void> => {
    closing = true;
    for (const t of restartTimers) t.cancel();
    restartTimers.clear();
    for (const u of unsubscribe) u();
    await stopWorkers(graceMs);
  };

  for (let attempt = 1; ; attempt++) {
    try {
      // One at a time: the first worker's listen(port 0) fixes the port every later worker shares.
      for (let i = 0; i < count; i++) await fork(i);
      break;
    } catch (err) {
      // A port the primary picked for a service configured with port 0 was taken before the worker
      // bound it (another process on the host): pick again.
      const pickedPort = config.services.some((s, i) => s.listen !== configured.services[i]!.listen);
      if (!pickedPort || attempt >= PORT_ATTEMPTS || !/: cannot listen on /.test((err as Error).message)) {
        await stopAll(0);
        throw err;
      }
      await stopWorkers(0);
      addresses.clear();
      log?.(`dispatcher workers: ${(err as Error).message}; picking another port`, { attempt });
      config = await withConcretePorts(configured, names);
    }
  }

  return {
    addresses,
    metrics: () =>
      new Promise<unknown[][]>((resolve) => {
        const live = slots.filter((s) => s.ready && s.worker?.isConnected()).map((s) => s.worker!);
        if (live.length === 0) return resolve([]);
        const id = nextMetricsId++;
        const p = { waiting: new Set(live), got: [] as unknown[][], done: () => {} };
        // A worker that does not answer (busy, dying) leaves its series out of this scrape.
        const late = clock.setTimeout(() => p.done(), METRICS_TIMEOUT_MS);
        p.done = () => {
          late.cancel();
          pendingMetrics.delete(id);
          resolve(p.got);
        };
        pendingMetrics.set(id, p);
        for (const w of live) send(w, { v: 1, t: 'metrics', id });
      }),
    stats: () => ({ workers: count, alive: slots.filter((s) => s.ready).length, restarts }),
    pids: () => slots.map((s) => s.worker?.process.pid ?? 0),
    reloadCertificates: () => {
      for (const slot of slots) if (slot.worker && slot.ready) send(slot.worker, { v: 1, t: 'reload' });
    },
    close: stopAll,
  };
}
