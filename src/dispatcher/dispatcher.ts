/**
 * @module Composition root of `holdfast dispatcher`: builds each service's backends, balancer,
 * health monitor, forwarder and listener from the validated configuration, and the admin side
 * (metrics, status, logs) that observes them through diagnostics channels. It owns nothing else.
 */
import { readFileSync } from 'node:fs';
import type { HostPort } from '../core/address.js';
import { formatHostPort, parseHostPort } from '../core/address.js';
import { realClock, type Clock } from '../core/clock.js';
import { ClosedError, ConfigInvalidError } from '../core/errors.js';
import { planReload } from '../config/reload-plan.js';
import { addBackend, applyReload, liveBackends, removeBackend, type LiveContext, type ReloadReport } from './reload.js';
import { addressOf, PROTO_TCP, type FlowHandle, type FlowTable } from '../sessions/flow-table.js';
import type { Config, ServiceConfig } from '../config/schema.js';
import { ReplaceableBalancer } from '../balance/index.js';
import { Backend } from '../core/backend.js';
import { AgentReceiver, HealthMonitor, type ReceiverStats } from '../monitor/index.js';
import { LoadManager } from '../load/index.js';
import { loadClusterKey } from '../wire/cluster-key.js';
import { HttpForwarder, Http2Forwarder, listen, RtspForwarder, SipForwarder, TcpForwarder, UdpForwarder } from '../forward/index.js';
import { createAdmission } from '../admission/index.js';
import { createServiceRuntime, type Forwarder, type ServiceRuntime } from '../pipeline/index.js';
import { createMetrics, startAdminServer, subscribeLogs, type AdminServer, type Logger, type ServiceStatus, type StatusSnapshot } from '../admin/index.js';
import { resolveAdminToken } from '../admin/api-auth.js';
import { createApiV1, type AdminAction, type AdminFlowView, type AdminServiceModel } from '../admin/api-v1.js';
import { EventRing } from '../admin/events-ring.js';
import { LoadSeries } from '../admin/load-series.js';
import { AdmissionSeries } from '../admin/admission-series.js';
import { serveDashboard } from '../admin/dashboard-static.js';
import { startGroups, type Groups, type VipBind } from './groups.js';
import { startMembership } from './membership.js';
import { AgentRoutes, newBackend, startAdmission, type Service } from './service.js';
import { Edge } from '../edge/edge.js';
import { AddressLeases } from '../edge/shared-limits.js';
import { SessionAuthority } from '../sessions/session-share.js';
import type { TlsCertificateError } from '../core/errors.js';
import { AggregatorRegistry } from 'prom-client';
import { notSpreadBecause, startWorkers, workerCount, type WorkerPool } from './workers.js';

export interface DispatcherOptions {
  logger?: Logger;
  clock?: Clock;
  /** How long close() lets exchanges in flight finish before cutting them. */
  closeGraceMs?: number;
  /** Extra admin actions at POST /api/v1/actions/{name} (the demo's kill buttons). */
  adminActions?: ReadonlyMap<string, AdminAction>;
  /**
   * Where a reload without a configuration reads the new one (the CLI: the --config file, read and
   * validated again; throws ConfigInvalidError). Absent: `POST /api/v1/actions/reload` answers 404.
   */
  configSource?: () => Config;
}

/** What a reload answers: the new file's problems (nothing changed), or what it changed. */
export type ReloadOutcome =
  | { readonly type: 'invalid'; readonly issues: readonly string[] }
  | ({ readonly type: 'applied'; readonly certificates: { service: string; error: string }[] } & ReloadReport);

export const CLOSE_GRACE_MS = 5000;

export interface DispatcherHandle {
  /** The bound address of a service (the real port when 0 was configured). */
  serviceAddress(name: string): HostPort;
  readonly adminAddress: HostPort | null;
  /** Where agents send heartbeats and load vectors; null when no backend has an agent. */
  readonly monitorAddress: HostPort | null;
  /** Counts of accepted and dropped agent messages, by reason. */
  agentStats(): ReceiverStats | null;
  status(): StatusSnapshot;
  /**
   * Re-reads every TLS service's certificates (SIGHUP, the reload action): each service keeps its
   * old pair when a new one is bad. The refusals, one per service that kept its pair.
   */
  reloadCertificates(): { service: string; error: TlsCertificateError }[];
  /**
   * Live reload (SIGHUP, `holdfast reload`, POST /api/v1/actions/reload): `next`, or the
   * configuration source's file read again, is compared with the configuration in force and what can
   * change live is applied (config/reload-plan.ts, dispatcher/reload.ts); TLS certificates are
   * re-read. An invalid configuration changes nothing. Reloads run one at a time. With
   * `cluster.membership: etcd` the services are etcd's shared ones; `shared`: that shared
   * configuration changed, the local configuration in force is kept (the file is not read).
   */
  reload(next?: Config, shared?: boolean): Promise<ReloadOutcome>;
  /** Stop listening, let exchanges in flight finish, then stop everything. */
  close(): Promise<void>;
}

const FORWARDERS: Record<ServiceConfig['protocol'], (rt: ServiceRuntime) => Forwarder> = {
  http: (rt) => (rt.config.http.http2.enabled ? new Http2Forwarder(rt) : new HttpForwarder(rt)),
  tcp: (rt) => new TcpForwarder(rt),
  udp: (rt) => new UdpForwarder(rt),
  sip: (rt) => new SipForwarder(rt),
  rtsp: (rt) => new RtspForwarder(rt),
};

/** TLS of a service: with http.http2, ALPN offers h2 first (RFC 9113 §3.2). */
function tlsOf(config: ServiceConfig): ServiceConfig['tls'] {
  const tls = config.tls;
  if (!tls || config.protocol !== 'http' || !config.http.http2.enabled || tls.alpn.includes('h2')) return tls;
  return { ...tls, alpn: ['h2', ...tls.alpn] };
}

/** The service names its sessions by a cookie or a header (HTTP virtual sessions). */
function keyedSessions(config: ServiceConfig): boolean {
  return config.sessions.cookie !== undefined || config.sessions.header !== undefined;
}

/** Which transports a service listens on. */
function transports(config: ServiceConfig): { stream: boolean; datagram: boolean } {
  switch (config.protocol) {
    case 'http':
    case 'tcp':
    case 'rtsp':
      return { stream: true, datagram: false };
    case 'udp':
      return { stream: false, datagram: true };
    case 'sip':
      return { stream: config.sip.transports.includes('tcp'), datagram: config.sip.transports.includes('udp') };
  }
}

const VERSION: string = (() => {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? '0.0.0';
  } catch {
    return '0.0.0';
  }
})();

function buildService(config: ServiceConfig, clock: Clock, logger: Logger | undefined): Service {
  const backends = config.backends.map((b, i) => newBackend(config.name, b, i));
  const balancer = new ReplaceableBalancer<Backend>(config.balancer, { maglevTableSize: config.maglev.tableSize });
  const rebuild = () => balancer.update(backends.filter((b) => b.eligible && !b.removed));
  rebuild();
  const monitor = new HealthMonitor(config.name, backends, config.health, clock);
  monitor.onChange(rebuild);
  const load = new LoadManager(config.name, backends, config.load, clock);
  const admission = createAdmission(config.name, config.admission, clock);
  // Throws TlsCertificateError for a pair that cannot be served: the dispatcher does not start.
  const edge = transports(config).stream ? new Edge({ tls: tlsOf(config), limits: config.limits, clock, events: edgeEvents(config.name, logger) }) : null;
  const { runtime, layer: sessions } = createServiceRuntime(config, backends, balancer, monitor, clock, admission, edge);
  const forwarder = FORWARDERS[config.protocol](runtime);
  monitor.onChange((b) => {
    if (b.state !== 'down') return;
    sessions.sessions.backendDown(b);
    forwarder.backendDown?.(b);
  });
  return { config, backends, balancer, rebuild, monitor, load, forwarder, sessions, admission, edge, admissionFeed: null, listener: null, datagram: null };
}

/** What the edge reports goes to the log: reloads, refused reloads, failed handshakes (debug). */
function edgeEvents(service: string, log: Logger | undefined): ConstructorParameters<typeof Edge>[0]['events'] {
  if (!log) return {};
  return {
    onReload: (store) => log.info({ service, certificates: store.certificates.map((c) => ({ names: c.names, notAfter: new Date(c.notAfter).toISOString() })) }, 'TLS certificates reloaded'),
    onReloadError: (err) => log.warn({ service, code: err.code, file: err.file }, `TLS certificates not reloaded, the old ones stay: ${err.message}`),
    onHandshakeError: (reason, err, remoteAddress) => log.debug({ service, reason, remoteAddress, error: err.message }, 'TLS handshake failed'),
    onRefuse: (reason, address) => log.debug({ service, reason, address }, 'connection refused at the edge'),
  };
}

/**
 * The bindings of a service that moves with a group's VIP (issue 7): bound when the group's election
 * makes this dispatcher master, on the VIP and the configured port (the port first bound when 0 was
 * configured, so that every takeover lands on the same one), released on demotion.
 */
function vipBinds(s: Service): VipBind[] {
  const { stream, datagram } = transports(s.config);
  let port = parseHostPort(s.config.listen)!.port;
  const binds: VipBind[] = [];
  if (stream) {
    binds.push(async (host) => {
      const l = await listen(formatHostPort({ host, port }), s.forwarder, s.edge);
      s.listener = l;
      port = l.address.port;
      return async () => {
        if (s.listener === l) s.listener = null;
        await l.close();
      };
    });
  }
  if (datagram) {
    binds.push(async (host) => {
      const at = await s.forwarder.bindDatagram!({ host, port });
      s.datagram = at;
      port = at.port;
      return async () => {
        s.datagram = null;
        await s.forwarder.unbindDatagram?.();
      };
    });
  }
  return binds;
}

/**
 * The agent side: one UDP receiver for every agent, routing each authenticated message to the
 * backends that agent stands beside (one agent may serve backends of several services).
 */
function buildAgentReceiver(config: Config, services: readonly Service[], clock: Clock, byHost: AgentRoutes): AgentReceiver | null {
  for (const service of services) for (const backend of service.backends) byHost.add(backend, service);
  if (byHost.size === 0) return null;
  const key = loadClusterKey(config.cluster);
  return new AgentReceiver(parseHostPort(config.monitor.listen)!, key, clock, {
    knownHost: (host) => byHost.has(host),
    availability: (host, a, now) => {
      for (const { backend, service } of byHost.get(host) ?? []) {
        backend.viaSibling = a.viaSibling === true;
        service.monitor.onAvailability(backend, a, now);
      }
    },
    load: (host, v) => {
      for (const { backend, service } of byHost.get(host) ?? []) service.load.onVector(backend, v);
    },
  });
}

export async function startDispatcher(localConfig: Config, options: DispatcherOptions = {}): Promise<DispatcherHandle> {
  const clock = options.clock ?? realClock;
  // cluster.membership: etcd registers first: the shared configuration may give the services.
  const membership = localConfig.cluster.membership === 'etcd' ? await startMembership(localConfig) : null;
  const config = membership?.config ?? localConfig;
  // Before anything binds: a non-loopback admin listener without a token is a configuration error.
  const adminToken = config.admin.enabled ? resolveAdminToken(config.admin) : null;
  const startedAt = clock.wallNow();
  const services = config.services.map((s) => buildService(s, clock, options.logger));
  // A change of etcd's shared configuration reloads (queued behind any reload running).
  membership?.bind(services, () => void handle.reload(undefined, true));
  const agents = new AgentRoutes();
  const receiver = buildAgentReceiver(config, services, clock, agents);
  const live: LiveContext = { clock, agents, receiverRunning: receiver !== null };
  /** The configuration in force: the start-up one with each service's live changes. */
  const running = (): Config => ({ ...config, services: services.map((s) => s.config) });
  let reloading: Promise<unknown> = Promise.resolve();
  /** Services bound by their group's election, not at start. */
  const grouped = new Set(config.groups.flatMap((g) => g.services));
  let groups: Groups | null = null;
  // Issue 16: with dispatcher.workers > 1, the services workers can share are served by them.
  const workers = workerCount(config);
  const spread = new Set<string>();
  if (workers > 1) {
    for (const s of config.services) {
      const why = notSpreadBecause(s, grouped);
      if (why === null) spread.add(s.name);
      else options.logger?.info({ service: s.name, reason: why }, 'service served by the primary only, not by the workers');
    }
  }
  let pool: WorkerPool | null = null;
  const authorities: SessionAuthority[] = [];
  const unsubscribeLogs = options.logger ? subscribeLogs(options.logger, clock) : () => {};

  const status = (): StatusSnapshot => ({
    version: VERSION,
    pid: process.pid,
    startedAt,
    services: services.map(
      (s): ServiceStatus => ({
        name: s.config.name,
        protocol: s.config.protocol,
        listen: formatHostPort(s.listener?.address ?? s.datagram ?? pool?.addresses.get(s.config.name) ?? parseHostPort(s.config.listen)!),
        balancer: s.config.balancer,
        backends: liveBackends(s).map((b) => ({
          id: b.id,
          address: formatHostPort(b),
          weight: b.weight,
          state: b.state,
          since: b.since,
          reason: b.reason,
          active: b.active,
          ...(b.agent === null
            ? {}
            : { agent: b.agent, load: b.load, forecast: b.forecast, lostHeartbeats: s.monitor.lostHeartbeats(b), viaSibling: b.viaSibling }),
        })),
        clusterLoad: s.load.clusterLoad(),
        sessions: { active: s.sessions.sessions.table.size, max: s.sessions.sessions.table.capacity },
        flows: { active: s.sessions.flows.size, max: s.sessions.flows.capacity },
        ...(s.edge ? { edge: s.edge.stats() } : {}),
      }),
    ),
    groups: groups?.status() ?? [],
    ...(pool ? { workers: ((w) => ({ count: w.workers, alive: w.alive, restarts: w.restarts, pids: pool.pids(), services: [...spread] }))(pool.stats()) } : {}),
  });

  let metrics: ReturnType<typeof createMetrics> | null = null;
  let admin: AdminServer | null = null;
  let events: EventRing | null = null;
  let loads: LoadSeries | null = null;
  let admissionSeries: AdmissionSeries | null = null;
  let monitorAddress: HostPort | null = null;
  const teardown = async () => {
    await groups?.close();
    await pool?.close(0);
    for (const a of authorities) a.close();
    await membership?.close();
    await Promise.all(services.map(async (s) => s.listener?.close()));
    await receiver?.close();
    for (const s of services) {
      s.monitor.close();
      s.load.close();
      s.sessions.close();
      s.admissionFeed?.cancel();
      s.admission.close();
      s.edge?.close();
    }
    await admin?.close();
    metrics?.close();
    events?.close();
    loads?.close();
    admissionSeries?.close();
    unsubscribeLogs();
  };
  try {
    // Heard before the first probe: an agent's early heartbeats count.
    if (receiver) monitorAddress = await receiver.start();
    for (const s of services) {
      if (grouped.has(s.config.name) || spread.has(s.config.name)) continue;
      const { stream, datagram } = transports(s.config);
      if (stream) s.listener = await listen(s.config.listen, s.forwarder, s.edge);
      if (datagram) {
        // SIP over both transports shares one port: UDP binds the port the stream listener got.
        const at = s.listener?.address ?? parseHostPort(s.config.listen)!;
        s.datagram = await s.forwarder.bindDatagram!(at);
      }
    }
    if (spread.size > 0) {
      const authorityOf = (s: Service): SessionAuthority | null => {
        if (!keyedSessions(s.config)) return null;
        const a = new SessionAuthority(s.sessions.sessions, s.backends, s.config.sessions.sessionTimeoutMs);
        authorities.push(a);
        return a;
      };
      pool = await startWorkers(
        config,
        services
          .filter((s) => spread.has(s.config.name))
          .map((s) => ({
            name: s.config.name,
            backends: s.backends,
            reportFailure: (b, kind) => s.monitor.reportFailure(b, kind),
            reportSuccess: (b) => s.monitor.reportSuccess(b),
            onChange: (l) => s.monitor.onChange(l),
            // The primary's edge limiter is the one count of per-address connections for every worker.
            leases: s.edge && s.edge.limiter.enabled ? new AddressLeases(s.edge.limiter) : null,
            // Virtual sessions: this table is the authority, each worker keeps a replica.
            sessions: authorityOf(s),
          })),
        workers,
        clock,
        options.logger ? (msg, fields) => options.logger!.warn(fields ?? {}, msg) : undefined,
      );
    }
    if (grouped.size > 0) {
      const byName = new Map(services.map((s) => [s.config.name, s]));
      groups = await startGroups(
        config,
        (name) => {
          const s = byName.get(name)!;
          // Issue 7: a SIP service's media relay ports are replicated with its sessions.
          const relay = s.forwarder instanceof SipForwarder ? s.forwarder.media.replicated : null;
          return { binds: vipBinds(s), state: { name, sessions: s.sessions.sessions, flows: s.sessions.flows, backends: s.backends, ...(relay ? { relay } : {}) } };
        },
        loadClusterKey(config.cluster),
        clock,
        options.logger,
      );
    }
    if (config.admin.enabled) {
      metrics = createMetrics(status);
      events = new EventRing(clock).subscribe();
      loads = new LoadSeries(clock);
      admissionSeries = new AdmissionSeries();
      const models = services.map((s): AdminServiceModel => {
        const find = (id: string) => s.backends.find((b) => b.id === id && !b.removed);
        return {
          name: s.config.name,
          protocol: s.config.protocol,
          table: s.sessions.sessions.table,
          get admission() {
            const { enabled, t1, t2, t3, c } = s.config.admission;
            return { enabled, t1, t2, t3, c };
          },
          backendId: (i) => s.backends[i]?.id,
          drain: (id, reason) => (find(id) ? s.monitor.drain(find(id)!, reason) : null),
          undrain: (id) => (find(id) ? s.monitor.undrain(find(id)!) : null),
          addBackend: (b) => {
            const r = addBackend(s, b, live);
            if (r.type === 'added') options.logger?.info({ service: s.config.name, backend: b.id, address: b.address }, 'backend added through the admin API');
            return r.type === 'added' ? { type: 'added' } : r;
          },
          removeBackend: (id) => {
            const r = removeBackend(s, id, live);
            if (r === 'removed') options.logger?.info({ service: s.config.name, backend: id }, 'backend removed through the admin API (draining)');
            return r;
          },
          sessionFlows: (h) => s.sessions.flows.flowsOf(h).map((f) => flowView(s.sessions.flows, f, clock)),
        };
      });
      const api = createApiV1({
        status,
        services: models,
        events,
        loads,
        admission: admissionSeries,
        clock,
        switchover: (g) => groups?.switchover(g) ?? null,
        replication: () => ({ transports: groups?.transportStats() ?? [], replicators: groups?.replicationStats() ?? [] }),
        ...(options.configSource ? { reload: () => handle.reload() } : {}),
        ...(options.adminActions ? { actions: options.adminActions } : {}),
      });
      const own = metrics.registry;
      const workersOf = pool;
      admin = await startAdminServer(parseHostPort(config.admin.listen)!, {
        status,
        // With workers, one scrape sums the primary's series and every worker's (prom-client's cluster
        // aggregation). The workers are asked first: an event a worker relayed before its answer (same
        // channel, in order) is then counted in the primary's own series read after.
        registry: workersOf
          ? {
              contentType: own.contentType,
              metrics: async () => {
                const theirs = await workersOf.metrics();
                return AggregatorRegistry.aggregate([await own.getMetricsAsJSON(), ...theirs] as Parameters<typeof AggregatorRegistry.aggregate>[0]).metrics();
              },
            }
          : own,
        token: adminToken,
        extra: async (req, res, path, url) => (await api(req, res, path, url)) || serveDashboard(req, res, path),
        ...(options.logger ? { logger: options.logger } : {}),
      });
    }
  } catch (err) {
    await teardown();
    for (const s of services) s.forwarder.destroy();
    throw err;
  }
  for (const s of services) {
    s.monitor.start();
    s.load.start();
    s.sessions.start();
    if (s.config.admission.enabled) s.admissionFeed = startAdmission(s, clock);
  }

  let closed: Promise<void> | null = null;
  const reloadCertificates = (): { service: string; error: TlsCertificateError }[] => {
    pool?.reloadCertificates();
    const refused: { service: string; error: TlsCertificateError }[] = [];
    for (const s of services) {
      const error = s.edge?.reload() ?? null;
      if (error) refused.push({ service: s.config.name, error });
    }
    return refused;
  };
  /** The local configuration last applied (the file's; with etcd, before the shared services). */
  let local = localConfig;
  /**
   * `given`, else the configuration file read again, else (`shared`: etcd's shared configuration
   * changed) the local configuration in force; with etcd, its services replaced by the shared ones.
   */
  const reload = async (given: Config | undefined, shared = false): Promise<ReloadOutcome> => {
    let next: Config;
    let file: Config;
    try {
      if (given === undefined && !shared && !options.configSource) throw new ConfigInvalidError(['no configuration file to reload from']);
      file = given ?? (shared ? local : options.configSource!());
      next = membership ? membership.resolve(file) : file;
    } catch (err) {
      if (err instanceof ConfigInvalidError) {
        options.logger?.warn({ issues: err.issues, trigger: shared ? 'etcd' : 'reload' }, 'reload refused: the new configuration is invalid; nothing changed');
        return { type: 'invalid', issues: err.issues };
      }
      throw err;
    }
    const plan = planReload(running(), next);
    const report = await applyReload(services, next, plan, live);
    local = file;
    membership?.refresh();
    const certificates = reloadCertificates().map((r) => ({ service: r.service, error: r.error.message }));
    options.logger?.info({ trigger: shared ? 'etcd' : 'reload', applied: report.applied, restartRequired: report.restartRequired, errors: report.errors, certificates }, 'configuration reloaded');
    return { type: 'applied', ...report, certificates };
  };
  const handle: DispatcherHandle = {
    serviceAddress(name) {
      const s = services.find((x) => x.config.name === name);
      // A grouped service answers on its VIP only while master; its address is the configured one.
      const at = s?.listener?.address ?? s?.datagram ?? pool?.addresses.get(name) ?? (s && grouped.has(name) ? parseHostPort(s.config.listen) : null);
      if (!at) throw new ClosedError(`service ${name}`);
      return at;
    },
    adminAddress: admin ? admin.address : null,
    monitorAddress,
    agentStats: () => (receiver ? receiver.stats() : null),
    status,
    reloadCertificates,
    reload(next, shared) {
      if (closed) return Promise.reject(new ClosedError('dispatcher'));
      const run = reloading.then(() => reload(next, shared));
      reloading = run.catch(() => {});
      return run;
    },
    close() {
      closed ??= (async () => {
        // A master resigns (priority-0 advert) so that a backup takes over after Skew_Time.
        await groups?.close();
        await Promise.all(services.map(async (s) => s.listener?.close()));
        const graceMs = options.closeGraceMs ?? config.dispatcher?.drainTimeoutMs ?? CLOSE_GRACE_MS;
        const grace = clock.setTimeout(() => {
          for (const s of services) s.forwarder.destroy();
        }, graceMs);
        await Promise.all([...services.map((s) => s.forwarder.close()), pool?.close(graceMs)]);
        grace.cancel();
        await teardown();
      })();
      return closed;
    },
  };
  return handle;
}

/** A flow of a session as the sessions API shows it. */
function flowView(flows: FlowTable, h: FlowHandle, clock: Clock): AdminFlowView {
  return {
    proto: flows.proto(h) === PROTO_TCP ? 'tcp' : 'udp',
    src: `${addressOf(flows.srcIp(h))}:${flows.srcPort(h)}`,
    dst: `${addressOf(flows.dstIp(h))}:${flows.dstPort(h)}`,
    role: flows.role(h),
    status: flows.status(h),
    idleMs: Math.max(0, Math.round(clock.now() - flows.lastSeen(h))),
  };
}

