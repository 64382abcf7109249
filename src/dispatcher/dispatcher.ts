/**
 * @module Composition root of `holdfast dispatcher`: builds each service's backends, balancer,
 * health monitor, forwarder and listener from the validated configuration, and the admin side
 * (metrics, status, logs) that observes them through diagnostics channels. It owns nothing else.
 */
import { readFileSync } from 'node:fs';
import type { HostPort } from '../core/address.js';
import { formatHostPort, parseHostPort } from '../core/address.js';
import { realClock, type Clock } from '../core/clock.js';
import { ClosedError } from '../core/errors.js';
import type { Config, ServiceConfig } from '../config/schema.js';
import { createBalancer } from '../balance/index.js';
import { Backend } from '../monitor/backend.js';
import { HealthMonitor } from '../monitor/health.js';
import { HttpForwarder } from '../forward/http-forwarder.js';
import { TcpForwarder } from '../forward/tcp-forwarder.js';
import { listen, type Listener } from '../forward/listener.js';
import type { Forwarder, ServiceRuntime } from '../forward/service-runtime.js';
import { createMetrics } from '../admin/metrics.js';
import { startAdminServer, type AdminServer } from '../admin/admin-server.js';
import { subscribeLogs, type Logger } from '../admin/log.js';
import type { ServiceStatus, StatusSnapshot } from '../admin/status.js';

export interface DispatcherOptions {
  logger?: Logger;
  clock?: Clock;
  /** How long close() lets exchanges in flight finish before cutting them. */
  closeGraceMs?: number;
}

export const CLOSE_GRACE_MS = 5000;

export interface DispatcherHandle {
  /** The bound address of a service (the real port when 0 was configured). */
  serviceAddress(name: string): HostPort;
  readonly adminAddress: HostPort | null;
  status(): StatusSnapshot;
  /** Stop listening, let exchanges in flight finish, then stop everything. */
  close(): Promise<void>;
}

interface Service {
  readonly config: ServiceConfig;
  readonly backends: Backend[];
  readonly monitor: HealthMonitor;
  readonly forwarder: Forwarder;
  listener: Listener | null;
}

const VERSION: string = (() => {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? '0.0.0';
  } catch {
    return '0.0.0';
  }
})();

function buildService(config: ServiceConfig, clock: Clock): Service {
  const backends = config.backends.map((b, i) => {
    const at = parseHostPort(b.address)!;
    return new Backend(config.name, b.id, at.host, at.port, b.weight, i);
  });
  const balancer = createBalancer<Backend>(config.balancer);
  const rebuild = () => balancer.update(backends.filter((b) => b.eligible));
  rebuild();
  const monitor = new HealthMonitor(config.name, backends, config.health, clock);
  monitor.onChange(rebuild);
  const runtime: ServiceRuntime = { config, backends, balancer, failures: monitor, clock };
  const forwarder = config.protocol === 'http' ? new HttpForwarder(runtime) : new TcpForwarder(runtime);
  return { config, backends, monitor, forwarder, listener: null };
}

export async function startDispatcher(config: Config, options: DispatcherOptions = {}): Promise<DispatcherHandle> {
  const clock = options.clock ?? realClock;
  const startedAt = clock.wallNow();
  const services = config.services.map((s) => buildService(s, clock));
  const unsubscribeLogs = options.logger ? subscribeLogs(options.logger, clock) : () => {};

  const status = (): StatusSnapshot => ({
    version: VERSION,
    pid: process.pid,
    startedAt,
    services: services.map(
      (s): ServiceStatus => ({
        name: s.config.name,
        protocol: s.config.protocol,
        listen: s.listener ? formatHostPort(s.listener.address) : s.config.listen,
        balancer: s.config.balancer,
        backends: s.backends.map((b) => ({
          id: b.id,
          address: formatHostPort(b),
          weight: b.weight,
          state: b.state,
          since: b.since,
          reason: b.reason,
          active: b.active,
        })),
      }),
    ),
  });

  let metrics: ReturnType<typeof createMetrics> | null = null;
  let admin: AdminServer | null = null;
  const teardown = async () => {
    await Promise.all(services.map(async (s) => s.listener?.close()));
    for (const s of services) s.monitor.close();
    await admin?.close();
    metrics?.close();
    unsubscribeLogs();
  };
  try {
    for (const s of services) s.listener = await listen(s.config.listen, s.forwarder);
    if (config.admin.enabled) {
      metrics = createMetrics(status);
      admin = await startAdminServer(parseHostPort(config.admin.listen)!, {
        status,
        registry: metrics.registry,
        ...(options.logger ? { logger: options.logger } : {}),
      });
    }
  } catch (err) {
    await teardown();
    for (const s of services) s.forwarder.destroy();
    throw err;
  }
  for (const s of services) s.monitor.start();

  let closed: Promise<void> | null = null;
  return {
    serviceAddress(name) {
      const s = services.find((x) => x.config.name === name);
      if (!s || !s.listener) throw new ClosedError(`service ${name}`);
      return s.listener.address;
    },
    adminAddress: admin ? admin.address : null,
    status,
    close() {
      closed ??= (async () => {
        await Promise.all(services.map(async (s) => s.listener?.close()));
        const grace = clock.setTimeout(() => {
          for (const s of services) s.forwarder.destroy();
        }, options.closeGraceMs ?? CLOSE_GRACE_MS);
        await Promise.all(services.map((s) => s.forwarder.close()));
        grace.cancel();
        await teardown();
      })();
      return closed;
    },
  };
}
