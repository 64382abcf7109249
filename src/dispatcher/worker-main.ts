/**
 * @module Composition root of one dispatcher worker (issue 16, workers.ts): started by the primary
 * through node:cluster, it builds the spread services it is told to serve (backends, balancer,
 * forwarder, edge) with a HealthFollower in place of detectors, listens on their addresses (shared
 * with the other workers by node:cluster), and answers the primary's messages. It owns nothing else.
 */
import { realClock } from '../core/clock.js';
import { Backend } from '../core/backend.js';
import { parseHostPort, type HostPort } from '../core/address.js';
import type { Config, ServiceConfig } from '../config/schema.js';
import { createBalancer } from '../balance/index.js';
import { HealthFollower } from '../monitor/index.js';
import { HttpForwarder, listen, TcpForwarder, type Listener } from '../forward/index.js';
import { createServiceRuntime, type Forwarder } from '../pipeline/index.js';
import diagnostics_channel from 'node:diagnostics_channel';
import { createMetrics, type ServiceStatus, type StatusSnapshot } from '../admin/index.js';
import { Edge } from '../edge/edge.js';
import { configureBackendTls } from '../edge/backend-tls.js';
import type { ConnectVerdict } from '../edge/client-limits.js';
import type { SharedGate } from '../edge/shared-limits.js';
import { channels } from '../core/diagnostics.js';
import { SessionMirror, touchFlushMs } from '../sessions/session-share.js';
import { RELAYED_CHANNELS, WORKER_PROTOCOL_VERSION, workerServiceConfig, type FromWorker, type ToWorker } from './workers.js';

interface WorkerService {
  readonly config: ServiceConfig;
  readonly health: HealthFollower;
  readonly forwarder: Forwarder;
  readonly edge: Edge;
  readonly sessions: { close(): void };
  /** The replica of the primary's session table (virtual sessions), or null. */
  readonly mirror: SessionMirror | null;
  listener: Listener | null;
}

const send = (m: FromWorker): void => {
  if (process.connected) process.send!(m);
};

/** Verdicts awaited from the primary, by request id (edge/shared-limits.ts: the primary decides per-address bounds). */
const gates = new Map<number, (verdict: ConnectVerdict) => void>();
const tokens = new Map<number, (granted: number, retryAfterS: number) => void>();
let nextGateId = 1;

/** The worker's side of the per-address bounds: each accept asks the primary, each close tells it. */
function sharedGate(service: string): SharedGate {
  return {
    acquire(address, done) {
      const id = nextGateId++;
      gates.set(id, done);
      send({ v: 1, t: 'acquire', service, id, address });
    },
    release(address) {
      send({ v: 1, t: 'release', service, address });
    },
    takeRequests(address, want, done) {
      const id = nextGateId++;
      tokens.set(id, done);
      send({ v: 1, t: 'requests', service, id, address, want });
    },
  };
}

function buildService(configured: ServiceConfig, workers: number): WorkerService {
  const config = workerServiceConfig(configured, workers);
  const clock = realClock;
  const backends = config.backends.map((b, i) => {
    const at = parseHostPort(b.address)!;
    const backend = new Backend(config.name, b.id, at.host, at.port, b.weight, i, b.agent ?? null);
    configureBackendTls(backend, b.tls);
    return backend;
  });
  const balancer = createBalancer<Backend>(config.balancer);
  const rebuild = () => balancer.update(backends.filter((b) => b.eligible));
  rebuild();
  const health = new HealthFollower(backends, (report) => send({ v: 1, t: 'report', service: config.name, report }), clock);
  health.onChange(rebuild);
  const edge = new Edge({ tls: config.tls, limits: config.limits, clock, events: {}, shared: sharedGate(config.name) });
  const built = createServiceRuntime(config, backends, balancer, health, clock, undefined, edge);
  const layer = built.layer;
  layer.start();
  // Virtual sessions: routed from a replica of the primary's table, which decides (session-share.ts).
  // A backend that goes down here moves no session at once: the primary moves them and says so.
  const keyed = config.sessions.cookie !== undefined || config.sessions.header !== undefined;
  const mirror = keyed ? new SessionMirror(layer.sessions, backends, (m) => send({ v: 1, t: 'session', service: config.name, m }), () => clock.now()) : null;
  const runtime = mirror ? { ...built.runtime, sessionLookup: mirror } : built.runtime;
  const forwarder: Forwarder = config.protocol === 'http' ? new HttpForwarder(runtime) : new TcpForwarder(runtime);
  health.onChange((b) => {
    if (b.state === 'down') forwarder.backendDown?.(b);
  });
  return { config, health, forwarder, edge, sessions: layer, mirror, listener: null };
}

async function start(m: Extract<ToWorker, { t: 'start' }>): Promise<void> {
  const config: Config = m.config;
  // The rare events go to the primary (its event stream, logs and metrics); see RELAYED_CHANNELS.
  const relay = (name: string) => (message: unknown) => send({ v: 1, t: 'event', channel: name, message });
  const relays = [...RELAYED_CHANNELS].map((name) => [name, relay(name)] as const);
  for (const [name, fn] of relays) diagnostics_channel.subscribe(name, fn);
  const wanted = new Set(m.services);
  const services = config.services.filter((s) => wanted.has(s.name)).map((s) => buildService(s, m.workers));
  const byName = new Map(services.map((s) => [s.config.name, s]));
  const configured = (name: string): ServiceConfig => config.services.find((s) => s.name === name)!;
  // What this worker adds to the primary's metrics: traffic, connections, edge; no backend states
  // (the primary's view is the one), no cluster load.
  const status = (): StatusSnapshot => ({
    version: '',
    pid: process.pid,
    startedAt: 0,
    services: services.map(
      (s): ServiceStatus => ({
        name: s.config.name,
        protocol: s.config.protocol,
        listen: s.config.listen,
        balancer: s.config.balancer,
        backends: [],
        clusterLoad: 0,
        sessions: { active: 0, max: 0 },
        flows: { active: 0, max: 0 },
        edge: s.edge.stats(),
      }),
    ),
    groups: [],
  });
  // Session opens, re-pins and closes are counted by the primary, whose table is the authority.
  const metrics = createMetrics(status, new Set([...RELAYED_CHANNELS, ...[channels.sessionOpen, channels.sessionRepin, channels.sessionClose].map((c) => String(c.name))]));

  let closing: Promise<void> | null = null;
  const close = (graceMs: number): Promise<void> =>
    (closing ??= (async () => {
      await Promise.all(services.map(async (s) => s.listener?.close()));
      const grace = setTimeout(() => {
        for (const s of services) s.forwarder.destroy();
      }, graceMs);
      await Promise.all(services.map((s) => s.forwarder.close()));
      clearTimeout(grace);
      for (const t of touching) clearInterval(t);
      for (const s of services) {
        s.mirror?.flushTouches();
        s.mirror?.close();
        s.edge.close();
        s.sessions.close();
      }
      metrics.close();
      for (const [name, fn] of relays) diagnostics_channel.unsubscribe(name, fn);
      process.exit(0);
    })());

  process.on('message', (msg: ToWorker) => {
    if (msg?.v !== WORKER_PROTOCOL_VERSION) return;
    switch (msg.t) {
      case 'state':
        byName.get(msg.service)?.health.apply(msg.backend, msg.state, msg.reason, msg.since);
        break;
      case 'gate': {
        const done = gates.get(msg.id);
        gates.delete(msg.id);
        done?.(msg.verdict);
        break;
      }
      case 'session':
        byName.get(msg.service)?.mirror?.apply(msg.m);
        break;
      case 'tokens': {
        const done = tokens.get(msg.id);
        tokens.delete(msg.id);
        done?.(msg.granted, msg.retryAfterS);
        break;
      }
      case 'metrics':
        metrics.registry.getMetricsAsJSON().then(
          (json) => send({ v: 1, t: 'metrics', id: msg.id, metrics: json }),
          () => send({ v: 1, t: 'metrics', id: msg.id, metrics: [] }),
        );
        break;
      case 'reload':
        // A bad pair keeps the old one; the primary, reading the same files, reports the refusal.
        for (const s of services) s.edge.reload();
        break;
      case 'close':
        void close(msg.graceMs);
        break;
    }
  });
  // Listening only now: the primary's answers to what a connection asks (a session, a slot) have a handler.
  const addresses: Record<string, HostPort> = {};
  for (const s of services) {
    s.listener = await listen(s.config.listen, s.forwarder, s.edge);
    addresses[s.config.name] = s.listener.address;
  }
  // The primary's session tables learn which of their sessions had traffic here (their idle timeout).
  const touching = services
    .filter((s) => s.mirror !== null)
    .map((s) => {
      const t = setInterval(() => s.mirror!.flushTouches(), touchFlushMs(configured(s.config.name).sessions.sessionTimeoutMs));
      t.unref();
      return t;
    });
  // The primary handles the operator's signals and tells the workers; a worker signalled on its own
  // (SIGTERM to its pid) drains and exits, and the primary replaces it.
  process.on('SIGINT', () => {});
  process.on('SIGHUP', () => {});
  process.on('SIGTERM', () => void close(5000));
  send({ v: 1, t: 'ready', addresses });
}

process.once('message', (m: ToWorker) => {
  if (m?.v !== WORKER_PROTOCOL_VERSION || m.t !== 'start') {
    send({ v: 1, t: 'failed', message: `expected a start message of version ${WORKER_PROTOCOL_VERSION}` });
    process.exit(1);
  }
  start(m).catch((err: Error) => {
    send({ v: 1, t: 'failed', message: err.message });
    process.exit(1);
  });
});
send({ v: 1, t: 'hello' });
