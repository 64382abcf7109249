/**
 * @module One running service of a dispatcher, as dispatcher.ts wires it and dispatcher/reload.ts
 * changes it live: its parts, a backend built from its configuration, the admission feed, and which
 * backends each agent stands beside.
 */
import { parseHostPort, type HostPort } from '../core/address.js';
import type { Clock, TimerHandle } from '../core/clock.js';
import { Backend } from '../core/backend.js';
import type { ServiceConfig } from '../config/schema.js';
import type { ReplaceableBalancer } from '../balance/index.js';
import type { HealthMonitor } from '../monitor/index.js';
import type { LoadManager } from '../load/index.js';
import type { Listener } from '../forward/index.js';
import type { SessionLayer } from '../sessions/index.js';
import { EventLoopLoad, QueueDelay, minDelay, startAdmissionFeed, type AdmissionControl } from '../admission/index.js';
import { channels, type HttpExchangeEvent, type SipInviteEvent } from '../core/diagnostics.js';
import type { Forwarder } from '../pipeline/index.js';
import type { Edge } from '../edge/edge.js';
import { configureBackendTls } from '../edge/backend-tls.js';

/** One running service, as the dispatcher wires it (dispatcher/reload.ts changes it live). */
export interface Service {
  /** The configuration in force: the start-up one with what reloads and the admin API changed live. */
  config: ServiceConfig;
  /**
   * Every backend the service ever had, by index: removed ones stay as tombstones (`removed`), added
   * ones are appended, so no backend's index changes (see Backend.index).
   */
  readonly backends: Backend[];
  readonly balancer: ReplaceableBalancer<Backend>;
  /** Rebuilds the balancer's snapshot (after a health, weight or membership change). */
  readonly rebuild: () => void;
  readonly monitor: HealthMonitor;
  readonly load: LoadManager;
  readonly forwarder: Forwarder;
  readonly sessions: SessionLayer;
  readonly admission: AdmissionControl;
  /** The stream listener's gate (TLS, per-client limits); null for datagram-only services. */
  readonly edge: Edge | null;
  admissionFeed: TimerHandle | null;
  listener: Listener | null;
  /** The bound datagram address (udp, sip over udp). */
  datagram: HostPort | null;
}

/** A backend of `service` from its configuration, at list position `index`. */
export function newBackend(service: string, b: ServiceConfig['backends'][number], index: number): Backend {
  const at = parseHostPort(b.address)!;
  const backend = new Backend(service, b.id, at.host, at.port, b.weight, index, b.agent ?? null);
  configureBackendTls(backend, b.tls);
  return backend;
}

/**
 * Feeds SA2C every load interval with max's two inputs: the dispatcher's own event-loop load, and the
 * short-term cluster estimate (eq. 1 over the shell forecasts) divided by alpha — eq. 1 is at most
 * alpha (every backend fully loaded, no variance), so without it the default alpha of 0.5 would never
 * let the cluster load reach T1 = 0.6; divided, it is the mean load plus (1-alpha)/alpha x variance.
 * For an HTTP or SIP service with `admission.delayCapacityMs` > 0, the standing queueing delay at its
 * backends is the third input (admission-delay.ts): HTTP times its exchanges (`holdfast:http:exchange`,
 * request head to end of reply), SIP its initial INVITEs (`holdfast:sip:invite`, forwarding to the
 * first answer above 100 Trying: the server's queue, not the callee's ringing). All are smoothed by the
 * feed, which also discards the first event-loop sample (the dispatcher's start-up): see
 * admission-feed.ts. cancel() also unsubscribes.
 */
export function startAdmission(s: Service, clock: Clock): TimerHandle {
  const elu = new EventLoopLoad();
  const alpha = s.config.load.alpha;
  const a = s.config.admission;
  const name = s.config.name;
  const protocol = s.config.protocol;
  const timed = (protocol === 'http' || protocol === 'sip') && a.delayCapacityMs > 0;
  const channel = protocol === 'sip' ? channels.sipInvite : channels.httpExchange;
  const intervalMs = s.config.load.intervalMs;
  const windowIntervals = Math.max(1, Math.round(a.delayBaselineMs / intervalMs));
  /** Per backend id: its queue's delay, and (SIP) its INVITEs awaiting their first answer. */
  const queues = new Map<string, { delay: QueueDelay; invites: number }>();
  const queueOf = (id: string): { delay: QueueDelay; invites: number } => {
    let q = queues.get(id);
    if (!q) queues.set(id, (q = { delay: new QueueDelay(windowIntervals, intervalMs), invites: 0 }));
    return q;
  };
  // A backend's 5xx (its own 503 when overloaded) is quick and says nothing of its queue.
  const onExchange = (m: unknown): void => {
    const e = m as HttpExchangeEvent;
    if (e.service === name && e.backend !== null && e.status > 0 && e.status < 500) queueOf(e.backend).delay.record(e.durationMs);
  };
  const onInvite = (m: unknown): void => {
    const e = m as SipInviteEvent;
    if (e.service !== name || e.backend === null) return;
    const q = queueOf(e.backend);
    if (e.kind === 'sent') q.invites++;
    else if (q.invites > 0) q.invites--;
    if (e.kind === 'answered' && e.status < 500) q.delay.record(e.durationMs);
  };
  const listener = protocol === 'sip' ? onInvite : onExchange;
  // In flight per backend: HTTP requests at it; SIP INVITEs unanswered (a backend's `active` counts
  // calls, which last long after their INVITE was served). The cluster's delay is the smallest of the
  // eligible backends' (minDelay): where a new session can still be served promptly.
  const delays: number[] = [];
  let lastAt = clock.now();
  const delayMs = (): number => {
    const now = clock.now();
    const elapsedMs = now - lastAt;
    lastAt = now;
    delays.length = 0;
    for (const b of s.backends) {
      if (b.removed) continue;
      const q = queueOf(b.id);
      const d = q.delay.sample(protocol === 'sip' ? q.invites : b.active, elapsedMs);
      if (b.eligible) delays.push(d);
    }
    return minDelay(delays);
  };
  if (timed) channel.subscribe(listener);
  const feed = startAdmissionFeed(
    s.admission,
    {
      cluster: () => (alpha > 0 ? Math.min(1, s.load.clusterForecast() / alpha) : s.load.clusterForecast()),
      dispatcher: () => elu.sample(),
      ...(timed ? { delayMs } : {}),
    },
    clock,
    intervalMs,
    { smoothingMs: a.smoothingMs, riseMs: a.riseMs },
    timed ? { targetMs: a.delayTargetMs, capacityMs: a.delayCapacityMs, t1: a.t1, c: a.c, holdMs: a.delayHoldMs } : undefined,
  );
  return {
    cancel: () => {
      feed.cancel();
      if (timed) channel.unsubscribe(listener);
    },
    refresh: () => feed.refresh(),
  };
}

/**
 * Which backends each agent (Host_Identity) stands beside; added backends join. A removed backend
 * stays: its heartbeats keep a draining backend watched (its load vectors are ignored).
 */
export class AgentRoutes {
  private readonly byHost = new Map<number, { backend: Backend; service: Service }[]>();

  get size(): number {
    return this.byHost.size;
  }

  has(host: number): boolean {
    return this.byHost.has(host);
  }

  get(host: number): readonly { backend: Backend; service: Service }[] | undefined {
    return this.byHost.get(host);
  }

  add(backend: Backend, service: Service): void {
    if (backend.agent === null) return;
    let list = this.byHost.get(backend.agent);
    if (!list) this.byHost.set(backend.agent, (list = []));
    list.push({ backend, service });
  }
}
