/**
 * @module Prometheus metrics: subscribes to the diagnostics channels and turns their events into
 * holdfast_* series in a registry of its own, plus backend state read from the status snapshot at
 * scrape time and Node's default process metrics.
 *
 * The per-request handler only adds numbers to plain objects (about 30 ns per exchange); the
 * prom-client metric objects are filled from those tallies when Prometheus scrapes. Calling
 * prom-client on every request, even through cached label children, costs about 2.3 µs per
 * exchange here (label validation and hashing on each inc/observe), which is several percent of
 * the forwarder's budget at the request rates DESIGN.md targets.
 */
import diagnostics_channel from 'node:diagnostics_channel';
import type { EdgeStats } from '../edge/edge.js';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { Metric } from 'prom-client';
import {
  channels,
  type BackendErrorEvent,
  type BackendStateEvent,
  type ConnectionEvent,
  type HttpExchangeEvent,
  type HttpRefuseEvent,
  type TcpSpliceEvent,
  type WireDropEvent,
  type LogDropEvent,
  type HeartbeatLostEvent,
  type SessionEvent,
  type SessionCloseEvent,
  type SessionRepinEvent,
  type SessionRefuseEvent,
  type Http2DefenceEvent,
  type FlowPurgeEvent,
  type MessageDropEvent,
  type MembershipEvent,
  type LoadMonitorEvent,
  type FailoverEvent,
  type AdmissionRefuseEvent,
  type AdmissionThresholdEvent,
  type AdmissionMoveEvent,
} from '../core/diagnostics.js';
import { BANDS } from '../admission/sa2c.js';
import type { BackendState } from '../core/backend.js';
import { liveRelays, type MediaRelayStats } from '../media/index.js';
import type { StatusSnapshot } from './status.js';

/**
 * Upper bounds of the request duration histogram, in milliseconds (exported in seconds): from half a
 * millisecond (a proxied request on loopback) to ten seconds (a stuck backend), 1-2.5-5 per decade.
 */
export const DURATION_BUCKETS_MS: readonly number[] = [
  0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000,
];

/** Every BackendState, in the order the one-hot `holdfast_backend_state` gauge lists them. */
export const BACKEND_STATES: readonly BackendState[] = ['unknown', 'up', 'suspect', 'down', 'draining'];

/** `code` label by status class index (Math.trunc(status / 100)); index 0 is any status outside 100-599. */
const STATUS_CLASSES = ['other', '1xx', '2xx', '3xx', '4xx', '5xx'] as const;

/** Label value of `backend` when an exchange never reached a backend (HttpExchangeEvent.backend null). */
const NO_BACKEND = '';

type Labels = Record<string, string | number>;

/** Everything the hot path counts for one service; one Map lookup per event finds it. */
interface ServiceTally {
  readonly service: string;
  bytesIn: number;
  bytesOut: number;
  /** Non-cumulative count per DURATION_BUCKETS_MS slot; the last slot is above the largest bound. */
  readonly durationCounts: Float64Array;
  durationSumMs: number;
  durationCount: number;
  /** Request count by backend, then by status class index (see STATUS_CLASSES). */
  readonly requests: Map<string, Float64Array>;
}

/**
 * A histogram whose buckets are counted elsewhere and handed over at scrape time. prom-client's
 * Histogram has no public way to set bucket counts, so this implements what its Registry reads from
 * a metric (name, help, type, aggregator, get(), reset()) and is registered with a cast.
 */
class TalliedHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly series: () => Iterable<{ labels: Labels; counts: ArrayLike<number>; sum: number; count: number }>,
    /** Bounds as exported (seconds), one per counts slot except the last (+Inf). */
    private readonly upperBounds: readonly number[],
  ) {}

  async get(): Promise<{
    name: string;
    help: string;
    type: 'histogram';
    aggregator: 'sum';
    values: { labels: Labels; value: number; metricName: string }[];
  }> {
    const values: { labels: Labels; value: number; metricName: string }[] = [];
    const bucket = `${this.name}_bucket`;
    for (const s of this.series()) {
      let cumulative = 0;
      for (let i = 0; i < this.upperBounds.length; i++) {
        cumulative += s.counts[i]!;
        values.push({ labels: { le: this.upperBounds[i]!, ...s.labels }, value: cumulative, metricName: bucket });
      }
      values.push({ labels: { le: '+Inf', ...s.labels }, value: s.count, metricName: bucket });
      values.push({ labels: s.labels, value: s.sum, metricName: `${this.name}_sum` });
      values.push({ labels: s.labels, value: s.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  /** The tallies are cumulative by design; Registry.resetMetrics() does not clear them. */
  reset(): void {}
}

/**
 * Creates a registry with every holdfast metric and starts listening to the diagnostics channels.
 * `status` is called once per scrape for the backend state gauges. close() unsubscribes; the
 * registry keeps answering with the last values. (The default process metrics install a GC
 * observer and an event-loop delay monitor that prom-client gives no way to stop; they are cheap.)
 */
export function createMetrics(
  status: () => StatusSnapshot,
  /** Channels not to count here (a dispatcher worker relays them to the primary, which counts them once). */
  skipChannels: ReadonlySet<string | symbol> = new Set(),
): { registry: Registry; close(): void } {
  const registry = new Registry();
  const registers = [registry];
  collectDefaultMetrics({ register: registry });

  const services = new Map<string, ServiceTally>();
  const tally = (service: string): ServiceTally => {
    let t = services.get(service);
    if (!t) {
      t = {
        service,
        bytesIn: 0,
        bytesOut: 0,
        durationCounts: new Float64Array(DURATION_BUCKETS_MS.length + 1),
        durationSumMs: 0,
        durationCount: 0,
        requests: new Map(),
      };
      services.set(service, t);
    }
    return t;
  };
  /** A counter incremented by its diagnostics handler (rare events: errors, refusals, transitions). */
  const counter = <L extends string>(name: string, labelNames: readonly L[], help: string): Counter<L> =>
    new Counter({ name, help, labelNames, registers });
  const connectionsActive = new Gauge({
    name: 'holdfast_connections_active',
    help: 'Client connections currently open, by service and protocol.',
    labelNames: ['service', 'protocol'],
    registers,
  });
  const connectionsTotal = counter('holdfast_connections_total', ['service', 'protocol'], 'Client connections accepted, by service and protocol.');
  const backendErrors = counter('holdfast_backend_errors_total', ['service', 'backend', 'kind'],
    'Backend connection or request failures, by service, backend and kind (refused, reset, timeout...).');
  const refusals = counter('holdfast_http_refused_total', ['service', 'status'],
    'Client requests refused by the forwarder, by service and the status answered.');
  const h2Defences = counter('holdfast_http2_defence_total', ['service', 'defence'],
    'HTTP/2 client connections closed by a defence (GOAWAY ENHANCE_YOUR_CALM), by service and defence.');
  const transitions = counter('holdfast_backend_transitions_total', ['service', 'backend', 'to'],
    'Backend state changes, by service, backend and the state entered.');
  const wireDrops = counter('holdfast_wire_dropped_total', ['source', 'reason'],
    'Control messages dropped, by receiver and reason (bad-mac, replay, stale, truncated...).');
  const logDrops = counter('holdfast_log_dropped_lines_total', ['reason'],
    'Log lines dropped because logging.file could not be written (ENOSPC: disk full), by errno code.');
  const heartbeatsLost = counter('holdfast_heartbeats_lost_total', ['service', 'backend'],
    'Agent heartbeats missing from the sequence numbers, by service and backend.');
  const loadMonitorFailures = counter('holdfast_load_monitor_failures_total', ['service', 'backend'],
    'Times a backend sent no load vector for 3 x delta_load (SARA Fig. 8), by service and backend.');
  const failovers = counter('holdfast_failover_total', ['service', 'strategy', 'result'],
    'Backend failures of in-progress HTTP exchanges, by strategy (replay, hold, range, verified, none) and result.');
  const logOverflows = counter('holdfast_request_log_overflow_total', ['service'],
    'Requests that outgrew the request log bounds (not recoverable), by service.');
  const sessionsOpened = counter('holdfast_sessions_opened_total', ['service', 'backend'],
    'Sessions opened and pinned (SARA III.C), by service and the backend they were pinned to.');
  const sessionsClosed = counter('holdfast_sessions_closed_total', ['service', 'reason'],
    'Sessions ended, by service and reason (ended by the protocol, idle timeout, removed).');
  const sessionsRepinned = counter('holdfast_sessions_repinned_total', ['service', 'from', 'to'],
    'Sessions whose backend failed, by service, the failed backend and the new one ("none": no backend was eligible).');
  const sessionsRefused = counter('holdfast_sessions_refused_total', ['service', 'reason'],
    'New sessions or flows refused, by service and reason (sessions-full, flows-full, sockets-full, no-backend).');
  const flowsPurged = counter('holdfast_flows_purged_total', ['service'],
    'Inactive flows purged from the flow table after twice their timeout (SARA III.A), by service.');
  const messagesDropped = counter('holdfast_messages_dropped_total', ['service', 'transport', 'reason'],
    'Datagrams or messages dropped (malformed, too large, no session...), by service, transport and reason.');
  const etcdLost = new Counter({
    name: 'holdfast_membership_etcd_lost_total',
    help: 'Times etcd stopped answering this dispatcher (cluster.membership: etcd); it served on with its last view.',
    registers,
  });
  const dispatchersLive = new Gauge({
    name: 'holdfast_membership_dispatchers',
    help: 'Dispatchers registered in etcd with a live lease, as this dispatcher last saw them.',
    registers,
  });
  const recovery = new Map<string, { counts: Float64Array; sumMs: number; count: number }>();
  /** SA2C refusals run once per refused unit under overload: one Map lookup, no allocation. */
  const admissionRejected = new Map<string, { refuse: number; degrade: number }>();
  const admissionCrossings = counter('holdfast_admission_crossings_total', ['service', 'band'],
    'SA2C threshold crossings, by service and the load band entered (below-t1, t1-t2, t2-t3, t3-c, at-c).');
  const admissionMoves = counter('holdfast_admission_moves_total', ['service', 'threshold', 'reason'],
    'Moves of the SA2C thresholds T2 and T3 (SARA eq. 4) and their resets below T1, by service, threshold and reason.');
  /** Per service: the band entered last and the thresholds in force, from crossings and moves. */
  const admissionState = new Map<string, { band: string; t1: number; t2: number; t3: number; c: number }>();

  // --- Event handlers. onExchange runs once per proxied request: numbers only, no allocation
  // after the first request of a (service, backend) pair.
  const onExchange = (message: unknown): void => {
    const e = message as HttpExchangeEvent;
    const t = tally(e.service);
    const backend = e.backend ?? NO_BACKEND;
    let byClass = t.requests.get(backend);
    if (!byClass) {
      byClass = new Float64Array(STATUS_CLASSES.length);
      t.requests.set(backend, byClass);
    }
    const cls = Math.trunc(e.status / 100);
    byClass[cls >= 1 && cls <= 5 ? cls : 0]!++;
    t.bytesIn += e.bytesIn;
    t.bytesOut += e.bytesOut;
    const ms = e.durationMs;
    let slot = 0;
    while (slot < DURATION_BUCKETS_MS.length && ms > DURATION_BUCKETS_MS[slot]!) slot++;
    t.durationCounts[slot]!++;
    t.durationSumMs += ms;
    t.durationCount++;
  };
  const onSplice = (message: unknown): void => {
    const e = message as TcpSpliceEvent;
    const t = tally(e.service);
    t.bytesIn += e.bytesIn;
    t.bytesOut += e.bytesOut;
  };
  const onOpen = (message: unknown): void => {
    const e = message as ConnectionEvent;
    const labels = { service: e.service, protocol: e.protocol };
    connectionsActive.inc(labels);
    connectionsTotal.inc(labels);
  };
  const onClose = (message: unknown): void => {
    const e = message as ConnectionEvent;
    connectionsActive.dec({ service: e.service, protocol: e.protocol });
  };
  const onBackendError = (message: unknown): void => {
    const e = message as BackendErrorEvent;
    backendErrors.inc({ service: e.service, backend: e.backend, kind: e.kind });
  };
  const onRefuse = (message: unknown): void => {
    const e = message as HttpRefuseEvent;
    refusals.inc({ service: e.service, status: String(e.status) });
  };
  const onH2Defence = (message: unknown): void => {
    const e = message as Http2DefenceEvent;
    h2Defences.inc({ service: e.service, defence: e.defence });
  };
  const onState = (message: unknown): void => {
    const e = message as BackendStateEvent;
    transitions.inc({ service: e.service, backend: e.backend, to: e.to });
  };
  const onWireDrop = (message: unknown): void => {
    const e = message as WireDropEvent;
    wireDrops.inc({ source: e.source, reason: e.reason });
  };
  const onHeartbeatLost = (message: unknown): void => {
    const e = message as HeartbeatLostEvent;
    heartbeatsLost.inc({ service: e.service, backend: e.backend }, e.lost);
  };
  const onFailover = (message: unknown): void => {
    const e = message as FailoverEvent;
    failovers.inc({ service: e.service, strategy: e.strategy, result: e.result });
    if (e.result !== 'ok' || e.recoveryMs < 0) return;
    let r = recovery.get(e.service);
    if (!r) recovery.set(e.service, (r = { counts: new Float64Array(DURATION_BUCKETS_MS.length + 1), sumMs: 0, count: 0 }));
    let slot = 0;
    while (slot < DURATION_BUCKETS_MS.length && e.recoveryMs > DURATION_BUCKETS_MS[slot]!) slot++;
    r.counts[slot]!++;
    r.sumMs += e.recoveryMs;
    r.count++;
  };
  const onLogOverflow = (message: unknown): void => {
    logOverflows.inc({ service: (message as { service: string }).service });
  };
  const onLoadMonitor = (message: unknown): void => {
    const e = message as LoadMonitorEvent;
    if (e.state === 'failed') loadMonitorFailures.inc({ service: e.service, backend: e.backend });
  };
  const onSessionOpen = (message: unknown): void => {
    const e = message as SessionEvent;
    sessionsOpened.inc({ service: e.service, backend: e.backend });
  };
  const onSessionClose = (message: unknown): void => {
    const e = message as SessionCloseEvent;
    sessionsClosed.inc({ service: e.service, reason: e.reason });
  };
  const onSessionRepin = (message: unknown): void => {
    const e = message as SessionRepinEvent;
    sessionsRepinned.inc({ service: e.service, from: e.from, to: e.to ?? 'none' });
  };
  const onSessionRefuse = (message: unknown): void => {
    const e = message as SessionRefuseEvent;
    sessionsRefused.inc({ service: e.service, reason: e.reason });
  };
  const onFlowPurge = (message: unknown): void => {
    const e = message as FlowPurgeEvent;
    flowsPurged.inc({ service: e.service }, e.count);
  };
  const onMembership = (message: unknown): void => {
    const e = message as MembershipEvent;
    if (e.type === 'lost') etcdLost.inc();
    dispatchersLive.set(e.dispatchers);
  };
  const onMessageDrop = (message: unknown): void => {
    const e = message as MessageDropEvent;
    messagesDropped.inc({ service: e.service, transport: e.transport, reason: e.reason });
  };
  const onAdmissionRefuse = (message: unknown): void => {
    const e = message as AdmissionRefuseEvent;
    let r = admissionRejected.get(e.service);
    if (!r) admissionRejected.set(e.service, (r = { refuse: 0, degrade: 0 }));
    r[e.verdict]++;
  };
  const onAdmissionThreshold = (message: unknown): void => {
    const e = message as AdmissionThresholdEvent;
    admissionCrossings.inc({ service: e.service, band: e.to });
    admissionState.set(e.service, { band: e.to, t1: e.t1, t2: e.t2, t3: e.t3, c: e.c });
  };
  const onAdmissionMove = (message: unknown): void => {
    const e = message as AdmissionMoveEvent;
    admissionMoves.inc({ service: e.service, threshold: e.threshold, reason: e.reason });
    const state = admissionState.get(e.service);
    if (state) state[e.threshold] = e.to;
  };

  const subscriptions: [diagnostics_channel.Channel, (message: unknown) => void][] = [
    [channels.httpExchange, onExchange],
    [channels.tcpSplice, onSplice],
    [channels.connectionOpen, onOpen],
    [channels.connectionClose, onClose],
    [channels.backendError, onBackendError],
    [channels.httpRefuse, onRefuse],
    [channels.http2Defence, onH2Defence],
    [channels.backendState, onState],
    [channels.wireDrop, onWireDrop],
    [channels.logDrop, (message: unknown) => logDrops.inc({ reason: (message as LogDropEvent).reason })],
    [channels.heartbeatLost, onHeartbeatLost],
    [channels.loadMonitor, onLoadMonitor],
    [channels.failover, onFailover],
    [channels.requestLogOverflow, onLogOverflow],
    [channels.sessionOpen, onSessionOpen],
    [channels.sessionClose, onSessionClose],
    [channels.sessionRepin, onSessionRepin],
    [channels.sessionRefuse, onSessionRefuse],
    [channels.flowPurge, onFlowPurge],
    [channels.messageDrop, onMessageDrop],
    [channels.membership, onMembership],
    [channels.admissionRefuse, onAdmissionRefuse],
    [channels.admissionThreshold, onAdmissionThreshold],
    [channels.admissionMove, onAdmissionMove],
  ];
  for (const [channel, fn] of subscriptions) if (!skipChannels.has(channel.name)) diagnostics_channel.subscribe(channel.name, fn);

  // --- Metrics filled from the tallies at scrape time.
  new Counter({
    name: 'holdfast_http_requests_total',
    help: 'HTTP exchanges completed, by service, backend ("" when none was reached) and status class.',
    labelNames: ['service', 'backend', 'code'],
    registers,
    collect() {
      this.reset();
      for (const t of services.values()) {
        for (const [backend, byClass] of t.requests) {
          for (let i = 0; i < byClass.length; i++) {
            if (byClass[i]! > 0) this.inc({ service: t.service, backend, code: STATUS_CLASSES[i]! }, byClass[i]!);
          }
        }
      }
    },
  });
  const durationSeries = function* () {
    for (const t of services.values()) {
      if (t.durationCount === 0) continue;
      yield { labels: { service: t.service }, counts: t.durationCounts, sum: t.durationSumMs / 1000, count: t.durationCount };
    }
  };
  registry.registerMetric(
    new TalliedHistogram(
      'holdfast_http_request_duration_seconds',
      'Time from the request head to the end of the reply, by service.',
      durationSeries,
      DURATION_BUCKETS_MS.map((ms) => ms / 1000),
    ) as unknown as Metric,
  );
  new Counter({
    name: 'holdfast_bytes_total',
    help: 'Bytes relayed by HTTP exchanges and TCP splices, by service and direction.',
    labelNames: ['service', 'direction'],
    registers,
    collect() {
      this.reset();
      for (const t of services.values()) {
        if (t.bytesIn === 0 && t.bytesOut === 0) continue;
        this.inc({ service: t.service, direction: 'in' }, t.bytesIn);
        this.inc({ service: t.service, direction: 'out' }, t.bytesOut);
      }
    },
  });
  registry.registerMetric(
    new TalliedHistogram(
      'holdfast_failover_recovery_seconds',
      'From a backend failure to the first byte from the backend that took the exchange over.',
      function* () {
        for (const [service, r] of recovery) yield { labels: { service }, counts: r.counts, sum: r.sumMs / 1000, count: r.count };
      },
      DURATION_BUCKETS_MS.map((ms) => ms / 1000),
    ) as unknown as Metric,
  );
  new Counter({
    name: 'holdfast_admission_rejected_total',
    help: 'Units refused by SA2C admission control, by service and verdict (refuse: a new session; degrade: a request or datagram of an established one).',
    labelNames: ['service', 'verdict'],
    registers,
    collect() {
      this.reset();
      for (const [service, r] of admissionRejected) {
        if (r.refuse > 0) this.inc({ service, verdict: 'refuse' }, r.refuse);
        if (r.degrade > 0) this.inc({ service, verdict: 'degrade' }, r.degrade);
      }
    },
  });
  new Gauge({
    name: 'holdfast_admission_threshold',
    help: 'The SA2C thresholds in force (T2 and T3 as moved), as fractions of capacity; present once the load first crossed T1.',
    labelNames: ['service', 'threshold'],
    registers,
    collect() {
      this.reset();
      for (const [service, s] of admissionState) {
        for (const threshold of ['t1', 't2', 't3', 'c'] as const) this.set({ service, threshold }, s[threshold]);
      }
    },
  });
  new Gauge({
    name: 'holdfast_admission_band',
    help: 'The SA2C load band, one-hot: 1 on the band the load is in, 0 on the others; present once the load first crossed T1.',
    labelNames: ['service', 'band'],
    registers,
    collect() {
      this.reset();
      for (const [service, s] of admissionState) for (const band of BANDS) this.set({ service, band }, s.band === band ? 1 : 0);
    },
  });

  // --- Media relays (issue 6), read from the live relays' counters at scrape time.
  const mediaMetric = (kind: 'gauge' | 'counter', name: string, help: string, value: (s: MediaRelayStats) => number): void => {
    const Kind = kind === 'gauge' ? Gauge : Counter;
    new Kind({
      name,
      help,
      labelNames: ['service'],
      registers,
      collect(this: Gauge | Counter) {
        this.reset();
        const sums = new Map<string, number>();
        for (const r of liveRelays) sums.set(r.service, (sums.get(r.service) ?? 0) + value(r.stats));
        for (const [service, v] of sums) {
          if (this instanceof Gauge) this.set({ service }, v);
          else this.inc({ service }, v);
        }
      },
    });
  };
  mediaMetric('gauge', 'holdfast_media_streams', 'Media streams (RTP/RTCP port pairs) being relayed, by service.', (s) => s.streams);
  mediaMetric('gauge', 'holdfast_media_ports_in_use', 'Relay ports bound (two per stream), by service.', (s) => s.portsInUse);
  mediaMetric('gauge', 'holdfast_media_ports_free', 'Relay ports of the configured range still free, by service.', (s) => s.portsFree);
  mediaMetric('counter', 'holdfast_media_packets_relayed_total', 'RTP/RTCP datagrams relayed, by service.', (s) => s.relayedPackets);
  mediaMetric('counter', 'holdfast_media_packets_dropped_total', 'RTP/RTCP datagrams dropped (far side unknown, third party after latching, oversized), by service.', (s) => s.droppedPackets);

  // --- Backend state from the status snapshot. The registry runs every collect() synchronously
  // within one metrics() call, so one snapshot per tick keeps up/state/active consistent and
  // calls status() once per scrape.
  let snapshot: StatusSnapshot | null = null;
  const scrapeSnapshot = (): StatusSnapshot => {
    if (!snapshot) {
      snapshot = status();
      queueMicrotask(() => {
        snapshot = null;
      });
    }
    return snapshot;
  };
  const backendGauge = (
    name: string,
    help: string,
    labelNames: string[],
    fill: (g: Gauge, service: string, b: StatusSnapshot['services'][number]['backends'][number]) => void,
  ): void => {
    new Gauge({
      name,
      help,
      labelNames,
      registers,
      collect() {
        this.reset();
        for (const s of scrapeSnapshot().services) for (const b of s.backends) fill(this, s.name, b);
      },
    });
  };
  backendGauge(
    'holdfast_backend_up',
    '1 when the backend is in state up, else 0.',
    ['service', 'backend'],
    (g, service, b) => g.set({ service, backend: b.id }, b.state === 'up' ? 1 : 0),
  );
  backendGauge(
    'holdfast_backend_state',
    'The backend state, one-hot: 1 on the current state, 0 on the others.',
    ['service', 'backend', 'state'],
    (g, service, b) => {
      for (const state of BACKEND_STATES) g.set({ service, backend: b.id, state }, b.state === state ? 1 : 0);
    },
  );
  backendGauge(
    'holdfast_backend_load',
    'Latest load sample in [0, 1] reported by the backend\'s agent.',
    ['service', 'backend'],
    (g, service, b) => {
      if (b.load !== undefined) g.set({ service, backend: b.id }, b.load);
    },
  );
  backendGauge(
    'holdfast_backend_forecast',
    'The shell forecast of the backend\'s load (SARA eq. 8).',
    ['service', 'backend'],
    (g, service, b) => {
      if (b.forecast !== undefined) g.set({ service, backend: b.id }, b.forecast);
    },
  );
  // --- The edge of each stream listener (issue 13): refusals by reason, TLS handshakes, reloads.
  const edgeCounter = (name: string, help: string, labelNames: string[], fill: (c: Counter, service: string, e: EdgeStats) => void): void => {
    new Counter({
      name,
      help,
      labelNames,
      registers,
      collect() {
        this.reset();
        for (const s of scrapeSnapshot().services) if (s.edge) fill(this, s.name, s.edge);
      },
    });
  };
  edgeCounter('holdfast_edge_refused_total', 'Client connections refused or let through untracked at the edge, by reason (per-address limits, listener cap, address table full).', ['service', 'reason'], (c, service, e) => {
    for (const [reason, n] of Object.entries(e.refused)) c.inc({ service, reason }, n);
  });
  edgeCounter('holdfast_tls_handshakes_total', 'TLS handshakes completed, by service.', ['service'], (c, service, e) => {
    if (e.tls) c.inc({ service }, e.tls.handshakes);
  });
  edgeCounter('holdfast_tls_handshake_failures_total', 'TLS handshakes that failed, by reason (timeout, unknown-sni, client-certificate, protocol, closed).', ['service', 'reason'], (c, service, e) => {
    if (e.tls) for (const [reason, n] of Object.entries(e.tls.failures)) c.inc({ service, reason }, n);
  });
  edgeCounter('holdfast_tls_reloads_total', 'Certificate reloads, by result (ok: the new pairs serve; refused: the old ones stay).', ['service', 'result'], (c, service, e) => {
    if (!e.tls) return;
    c.inc({ service, result: 'ok' }, e.tls.reloads);
    c.inc({ service, result: 'refused' }, e.tls.reloadFailures);
  });
  new Gauge({
    name: 'holdfast_cluster_load',
    help: 'Cluster load l_c of SARA eq. 1, by service.',
    labelNames: ['service'],
    registers,
    collect() {
      this.reset();
      for (const s of scrapeSnapshot().services) this.set({ service: s.name }, s.clusterLoad);
    },
  });
  backendGauge(
    'holdfast_backend_via_sibling',
    'HANet: 1 while the backend\'s agent says a sibling relays its packets (its public links failed), else 0.',
    ['service', 'backend'],
    (g, service, b) => {
      if (b.viaSibling !== undefined) g.set({ service, backend: b.id }, b.viaSibling ? 1 : 0);
    },
  );
  backendGauge(
    'holdfast_backend_active',
    'Connections (tcp) or requests (http) in flight on the backend.',
    ['service', 'backend'],
    (g, service, b) => g.set({ service, backend: b.id }, b.active),
  );

  let closed = false;
  return {
    registry,
    close(): void {
      if (closed) return;
      closed = true;
      for (const [channel, fn] of subscriptions) if (!skipChannels.has(channel.name)) diagnostics_channel.unsubscribe(channel.name, fn);
    },
  };
}
