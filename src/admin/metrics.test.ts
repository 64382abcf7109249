import { test } from 'node:test';
import assert from 'node:assert/strict';
import { channels } from '../core/diagnostics.js';
import type {
  BackendErrorEvent,
  BackendStateEvent,
  ConnectionEvent,
  HttpExchangeEvent,
  HttpRefuseEvent,
  TcpSpliceEvent,
} from '../core/diagnostics.js';
import { createMetrics } from './metrics.js';
import type { StatusSnapshot } from './status.js';

const emptyStatus = (): StatusSnapshot => ({ version: 't', pid: 1, startedAt: 0, services: [] });

/** The sample lines (not HELP/TYPE) of the metric family `name`, in registry order. */
function samples(text: string, name: string): string[] {
  return text.split('\n').filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));
}

const exchange = (e: HttpExchangeEvent): void => channels.httpExchange.publish(e);

test('http exchanges count by service, backend and status class, with bytes and a duration histogram', async (t) => {
  const m = createMetrics(emptyStatus);
  t.after(() => m.close());
  exchange({ service: 'web', backend: 'b1', status: 200, durationMs: 0.5, bytesIn: 100, bytesOut: 1000 });
  exchange({ service: 'web', backend: 'b1', status: 204, durationMs: 2, bytesIn: 10, bytesOut: 0 });
  exchange({ service: 'web', backend: 'b2', status: 404, durationMs: 20_000, bytesIn: 1, bytesOut: 2 });
  exchange({ service: 'web', backend: null, status: 503, durationMs: 0.5, bytesIn: 0, bytesOut: 50 });
  exchange({ service: 'api', backend: 'b1', status: 0, durationMs: 1, bytesIn: 7, bytesOut: 8 });

  const text = await m.registry.metrics();
  assert.deepEqual(samples(text, 'holdfast_http_requests_total'), [
    'holdfast_http_requests_total{service="web",backend="b1",code="2xx"} 2',
    'holdfast_http_requests_total{service="web",backend="b2",code="4xx"} 1',
    'holdfast_http_requests_total{service="web",backend="",code="5xx"} 1',
    'holdfast_http_requests_total{service="api",backend="b1",code="other"} 1',
  ]);
  assert.deepEqual(samples(text, 'holdfast_bytes_total'), [
    'holdfast_bytes_total{service="web",direction="in"} 111',
    'holdfast_bytes_total{service="web",direction="out"} 1052',
    'holdfast_bytes_total{service="api",direction="in"} 7',
    'holdfast_bytes_total{service="api",direction="out"} 8',
  ]);
  const web = (suffix: string): string[] =>
    samples(text, `holdfast_http_request_duration_seconds_${suffix}`).filter((l) => l.includes('service="web"'));
  assert.deepEqual(web('bucket'), [
    'holdfast_http_request_duration_seconds_bucket{le="0.0005",service="web"} 2',
    'holdfast_http_request_duration_seconds_bucket{le="0.001",service="web"} 2',
    'holdfast_http_request_duration_seconds_bucket{le="0.0025",service="web"} 3',
    'holdfast_http_request_duration_seconds_bucket{le="0.005",service="web"} 3',
    'holdfast_http_request_duration_seconds_bucket{le="0.01",service="web"} 3',
    'holdfast_http_request_duration_seconds_bucket{le="0.025",service="web"} 3',
    'holdfast_http_request_duration_seconds_bucket{le="0.05",service="web"} 3',
    'holdfast_http_request_duration_seconds_bucket{le="0.1",service="web"} 3',
    'holdfast_http_request_duration_seconds_bucket{le="0.25",service="web"} 3',
    'holdfast_http_request_duration_seconds_bucket{le="0.5",service="web"} 3',
    'holdfast_http_request_duration_seconds_bucket{le="1",service="web"} 3',
    'holdfast_http_request_duration_seconds_bucket{le="2.5",service="web"} 3',
    'holdfast_http_request_duration_seconds_bucket{le="5",service="web"} 3',
    'holdfast_http_request_duration_seconds_bucket{le="10",service="web"} 3',
    'holdfast_http_request_duration_seconds_bucket{le="+Inf",service="web"} 4',
  ]);
  assert.deepEqual(web('sum'), ['holdfast_http_request_duration_seconds_sum{service="web"} 20.003']);
  assert.deepEqual(web('count'), ['holdfast_http_request_duration_seconds_count{service="web"} 4']);
  assert.match(text, /^# TYPE holdfast_http_request_duration_seconds histogram$/m);
  assert.match(text, /^# TYPE holdfast_http_requests_total counter$/m);
});

test('connections: open and close events drive the active gauge and the total; splices add bytes', async (t) => {
  const m = createMetrics(emptyStatus);
  t.after(() => m.close());
  const open = (e: ConnectionEvent): void => channels.connectionOpen.publish(e);
  const close = (e: ConnectionEvent): void => channels.connectionClose.publish(e);
  const splice = (e: TcpSpliceEvent): void => channels.tcpSplice.publish(e);
  for (let i = 0; i < 3; i++) open({ service: 'web', protocol: 'http' });
  close({ service: 'web', protocol: 'http' });
  open({ service: 'db', protocol: 'tcp' });
  close({ service: 'db', protocol: 'tcp' });
  splice({ service: 'db', backend: 'b1', bytesIn: 4096, bytesOut: 123 });
  splice({ service: 'db', backend: 'b2', bytesIn: 4, bytesOut: 0 });

  const text = await m.registry.metrics();
  assert.deepEqual(samples(text, 'holdfast_connections_active'), [
    'holdfast_connections_active{service="web",protocol="http"} 2',
    'holdfast_connections_active{service="db",protocol="tcp"} 0',
  ]);
  assert.deepEqual(samples(text, 'holdfast_connections_total'), [
    'holdfast_connections_total{service="web",protocol="http"} 3',
    'holdfast_connections_total{service="db",protocol="tcp"} 1',
  ]);
  assert.deepEqual(samples(text, 'holdfast_bytes_total'), [
    'holdfast_bytes_total{service="db",direction="in"} 4100',
    'holdfast_bytes_total{service="db",direction="out"} 123',
  ]);
  // A TCP-only service has no request duration series.
  assert.deepEqual(samples(text, 'holdfast_http_request_duration_seconds_count'), []);
});

test('backend errors, refusals and transitions are counted by their labels', async (t) => {
  const m = createMetrics(emptyStatus);
  t.after(() => m.close());
  const err = (e: BackendErrorEvent): void => channels.backendError.publish(e);
  const refuse = (e: HttpRefuseEvent): void => channels.httpRefuse.publish(e);
  const state = (e: BackendStateEvent): void => channels.backendState.publish(e);
  err({ service: 'web', backend: 'b1', kind: 'refused' });
  err({ service: 'web', backend: 'b1', kind: 'refused' });
  err({ service: 'web', backend: 'b1', kind: 'timeout' });
  refuse({ service: 'web', status: 431, reason: 'head too large' });
  refuse({ service: 'web', status: 400, reason: 'bad request line' });
  refuse({ service: 'web', status: 431, reason: 'head too large' });
  state({ service: 'web', backend: 'b1', from: 'up', to: 'down', reason: 'refused', at: 1 });
  state({ service: 'web', backend: 'b1', from: 'down', to: 'up', reason: 'probe ok', at: 2 });
  state({ service: 'web', backend: 'b1', from: 'up', to: 'down', reason: 'reset', at: 3 });
  channels.http2Defence.publish({ service: 'web', defence: 'rapid-reset', address: '127.0.0.1' });

  const text = await m.registry.metrics();
  assert.deepEqual(samples(text, 'holdfast_http2_defence_total'), ['holdfast_http2_defence_total{service="web",defence="rapid-reset"} 1']);
  assert.deepEqual(samples(text, 'holdfast_backend_errors_total'), [
    'holdfast_backend_errors_total{service="web",backend="b1",kind="refused"} 2',
    'holdfast_backend_errors_total{service="web",backend="b1",kind="timeout"} 1',
  ]);
  assert.deepEqual(samples(text, 'holdfast_http_refused_total'), [
    'holdfast_http_refused_total{service="web",status="431"} 2',
    'holdfast_http_refused_total{service="web",status="400"} 1',
  ]);
  assert.deepEqual(samples(text, 'holdfast_backend_transitions_total'), [
    'holdfast_backend_transitions_total{service="web",backend="b1",to="down"} 2',
    'holdfast_backend_transitions_total{service="web",backend="b1",to="up"} 1',
  ]);
});

test('backend state gauges are read from status() at scrape time, once per scrape', async (t) => {
  const backend = (id: string, state: StatusSnapshot['services'][number]['backends'][number]['state'], active: number) => ({
    id,
    address: '127.0.0.1:1',
    weight: 1,
    state,
    since: 0,
    reason: 'test',
    active,
  });
  const snap: StatusSnapshot = {
    version: 't',
    pid: 1,
    startedAt: 0,
    services: [
      { name: 'web', protocol: 'http', listen: '127.0.0.1:1', balancer: 'round-robin', clusterLoad: 0, sessions: { active: 0, max: 16 }, flows: { active: 0, max: 16 }, backends: [backend('b1', 'up', 3), backend('b2', 'down', 0)] },
    ],
  };
  let calls = 0;
  const m = createMetrics(() => {
    calls++;
    return snap;
  });
  t.after(() => m.close());

  let text = await m.registry.metrics();
  assert.equal(calls, 1);
  assert.deepEqual(samples(text, 'holdfast_backend_up'), [
    'holdfast_backend_up{service="web",backend="b1"} 1',
    'holdfast_backend_up{service="web",backend="b2"} 0',
  ]);
  assert.deepEqual(samples(text, 'holdfast_backend_active'), [
    'holdfast_backend_active{service="web",backend="b1"} 3',
    'holdfast_backend_active{service="web",backend="b2"} 0',
  ]);
  assert.deepEqual(samples(text, 'holdfast_backend_state'), [
    'holdfast_backend_state{service="web",backend="b1",state="unknown"} 0',
    'holdfast_backend_state{service="web",backend="b1",state="up"} 1',
    'holdfast_backend_state{service="web",backend="b1",state="suspect"} 0',
    'holdfast_backend_state{service="web",backend="b1",state="down"} 0',
    'holdfast_backend_state{service="web",backend="b1",state="draining"} 0',
    'holdfast_backend_state{service="web",backend="b2",state="unknown"} 0',
    'holdfast_backend_state{service="web",backend="b2",state="up"} 0',
    'holdfast_backend_state{service="web",backend="b2",state="suspect"} 0',
    'holdfast_backend_state{service="web",backend="b2",state="down"} 1',
    'holdfast_backend_state{service="web",backend="b2",state="draining"} 0',
  ]);

  // The next scrape sees the change, and a removed backend disappears.
  snap.services[0]!.backends = [backend('b1', 'draining', 1)];
  text = await m.registry.metrics();
  assert.equal(calls, 2);
  assert.deepEqual(samples(text, 'holdfast_backend_up'), ['holdfast_backend_up{service="web",backend="b1"} 0']);
  assert.deepEqual(
    samples(text, 'holdfast_backend_state').filter((l) => l.endsWith(' 1')),
    ['holdfast_backend_state{service="web",backend="b1",state="draining"} 1'],
  );
  assert.deepEqual(samples(text, 'holdfast_backend_active'), ['holdfast_backend_active{service="web",backend="b1"} 1']);
});

test('close() unsubscribes; several registries live side by side with default process metrics', async () => {
  const a = createMetrics(emptyStatus);
  const b = createMetrics(emptyStatus);
  try {
    exchange({ service: 'web', backend: 'b1', status: 200, durationMs: 1, bytesIn: 1, bytesOut: 1 });
    a.close();
    exchange({ service: 'web', backend: 'b1', status: 200, durationMs: 1, bytesIn: 1, bytesOut: 1 });
    assert.deepEqual(samples(await a.registry.metrics(), 'holdfast_http_requests_total'), [
      'holdfast_http_requests_total{service="web",backend="b1",code="2xx"} 1',
    ]);
    const textB = await b.registry.metrics();
    assert.deepEqual(samples(textB, 'holdfast_http_requests_total'), [
      'holdfast_http_requests_total{service="web",backend="b1",code="2xx"} 2',
    ]);
    assert.match(textB, /^process_cpu_user_seconds_total \d/m);
    assert.match(textB, /^nodejs_heap_size_used_bytes \d/m);
    assert.equal(channels.httpExchange.hasSubscribers, true);
  } finally {
    a.close();
    b.close();
  }
  assert.equal(channels.httpExchange.hasSubscribers, false);
});

test('agent signals: wire drops by reason, lost heartbeats, load monitor failures, load and cluster load', async (t) => {
  const status = (): StatusSnapshot => ({
    version: 't',
    pid: 1,
    startedAt: 0,
    services: [
      {
        name: 'web',
        protocol: 'http',
        listen: '127.0.0.1:1',
        sessions: { active: 0, max: 16 },
        flows: { active: 0, max: 16 },
        balancer: 'shell',
        clusterLoad: 0.25,
        backends: [
          { id: 'a', address: '127.0.0.1:2', weight: 1, state: 'up', since: 0, reason: '', active: 0, agent: 7, load: 0.5, forecast: 0.375, lostHeartbeats: 3, viaSibling: true },
          { id: 'b', address: '127.0.0.1:3', weight: 1, state: 'up', since: 0, reason: '', active: 0 },
        ],
      },
    ],
  });
  const m = createMetrics(status);
  t.after(() => m.close());
  channels.wireDrop.publish({ source: 'monitor', reason: 'bad-mac', from: '127.0.0.1:9' });
  channels.wireDrop.publish({ source: 'monitor', reason: 'bad-mac', from: '127.0.0.1:9' });
  channels.wireDrop.publish({ source: 'monitor', reason: 'replay', from: '127.0.0.1:9' });
  channels.heartbeatLost.publish({ service: 'web', backend: 'a', lost: 2 });
  channels.heartbeatLost.publish({ service: 'web', backend: 'a', lost: 1 });
  channels.loadMonitor.publish({ service: 'web', backend: 'a', state: 'failed', at: 0 });
  channels.loadMonitor.publish({ service: 'web', backend: 'a', state: 'recovered', at: 1 });

  const text = await m.registry.metrics();
  assert.deepEqual(samples(text, 'holdfast_wire_dropped_total'), [
    'holdfast_wire_dropped_total{source="monitor",reason="bad-mac"} 2',
    'holdfast_wire_dropped_total{source="monitor",reason="replay"} 1',
  ]);
  assert.deepEqual(samples(text, 'holdfast_heartbeats_lost_total'), ['holdfast_heartbeats_lost_total{service="web",backend="a"} 3']);
  assert.deepEqual(samples(text, 'holdfast_load_monitor_failures_total'), [
    'holdfast_load_monitor_failures_total{service="web",backend="a"} 1',
  ]);
  // Only the backend with an agent has load gauges.
  assert.deepEqual(samples(text, 'holdfast_backend_load'), ['holdfast_backend_load{service="web",backend="a"} 0.5']);
  assert.deepEqual(samples(text, 'holdfast_backend_forecast'), ['holdfast_backend_forecast{service="web",backend="a"} 0.375']);
  assert.deepEqual(samples(text, 'holdfast_cluster_load'), ['holdfast_cluster_load{service="web"} 0.25']);
  // HANet: only backends with an agent say whether a sibling relays them.
  assert.deepEqual(samples(text, 'holdfast_backend_via_sibling'), ['holdfast_backend_via_sibling{service="web",backend="a"} 1']);
});

test('sessions and flows: opens, closes, re-pins, refusals, purged flows and dropped messages by their labels', async (t) => {
  const m = createMetrics(emptyStatus);
  t.after(() => m.close());
  channels.sessionOpen.publish({ service: 'voip', backend: 'b1' });
  channels.sessionOpen.publish({ service: 'voip', backend: 'b1' });
  channels.sessionOpen.publish({ service: 'voip', backend: 'b2' });
  channels.sessionClose.publish({ service: 'voip', backend: 'b1', reason: 'ended' });
  channels.sessionClose.publish({ service: 'voip', backend: null, reason: 'timeout' });
  channels.sessionClose.publish({ service: 'voip', backend: 'b2', reason: 'ended' });
  channels.sessionRepin.publish({ service: 'voip', from: 'b1', to: 'b2' });
  channels.sessionRepin.publish({ service: 'voip', from: 'b1', to: null });
  channels.sessionRepin.publish({ service: 'voip', from: 'b1', to: 'b2' });
  channels.sessionRefuse.publish({ service: 'voip', reason: 'flows-full' });
  channels.sessionRefuse.publish({ service: 'udp', reason: 'no-backend' });
  channels.flowPurge.publish({ service: 'voip', count: 40 });
  channels.flowPurge.publish({ service: 'voip', count: 2 });
  channels.messageDrop.publish({ service: 'voip', transport: 'udp', reason: 'malformed' });
  channels.messageDrop.publish({ service: 'voip', transport: 'tcp', reason: 'too-large' });
  channels.messageDrop.publish({ service: 'voip', transport: 'udp', reason: 'malformed' });

  const text = await m.registry.metrics();
  assert.deepEqual(samples(text, 'holdfast_sessions_opened_total'), [
    'holdfast_sessions_opened_total{service="voip",backend="b1"} 2',
    'holdfast_sessions_opened_total{service="voip",backend="b2"} 1',
  ]);
  assert.deepEqual(samples(text, 'holdfast_sessions_closed_total'), [
    'holdfast_sessions_closed_total{service="voip",reason="ended"} 2',
    'holdfast_sessions_closed_total{service="voip",reason="timeout"} 1',
  ]);
  assert.deepEqual(samples(text, 'holdfast_sessions_repinned_total'), [
    'holdfast_sessions_repinned_total{service="voip",from="b1",to="b2"} 2',
    'holdfast_sessions_repinned_total{service="voip",from="b1",to="none"} 1',
  ]);
  assert.deepEqual(samples(text, 'holdfast_sessions_refused_total'), [
    'holdfast_sessions_refused_total{service="voip",reason="flows-full"} 1',
    'holdfast_sessions_refused_total{service="udp",reason="no-backend"} 1',
  ]);
  assert.deepEqual(samples(text, 'holdfast_flows_purged_total'), ['holdfast_flows_purged_total{service="voip"} 42']);
  assert.deepEqual(samples(text, 'holdfast_messages_dropped_total'), [
    'holdfast_messages_dropped_total{service="voip",transport="udp",reason="malformed"} 2',
    'holdfast_messages_dropped_total{service="voip",transport="tcp",reason="too-large"} 1',
  ]);
  assert.match(text, /^# TYPE holdfast_flows_purged_total counter$/m);
});

test('the edge (issue 13): refusals by reason, TLS handshakes, failures and reloads from the status snapshot', async (t) => {
  const snap: StatusSnapshot = {
    version: 't',
    pid: 1,
    startedAt: 0,
    services: [
      {
        name: 'web',
        protocol: 'http',
        listen: '127.0.0.1:1',
        balancer: 'round-robin',
        clusterLoad: 0,
        sessions: { active: 0, max: 16 },
        flows: { active: 0, max: 16 },
        backends: [],
        edge: {
          refused: { 'too-many-connections': 2, 'connection-rate': 0, 'request-rate': 5, 'table-full': 0, 'max-connections': 1 },
          tls: { handshakes: 40, failures: { timeout: 1, 'unknown-sni': 0, 'client-certificate': 3, protocol: 2, closed: 0 }, reloads: 1, reloadFailures: 1 },
          trackedAddresses: 4,
        },
      },
    ],
  };
  const m = createMetrics(() => snap);
  t.after(() => m.close());
  const text = await m.registry.metrics();
  assert.deepEqual(samples(text, 'holdfast_edge_refused_total').filter((l) => !l.endsWith(' 0')), [
    'holdfast_edge_refused_total{service="web",reason="too-many-connections"} 2',
    'holdfast_edge_refused_total{service="web",reason="request-rate"} 5',
    'holdfast_edge_refused_total{service="web",reason="max-connections"} 1',
  ]);
  assert.deepEqual(samples(text, 'holdfast_tls_handshakes_total'), ['holdfast_tls_handshakes_total{service="web"} 40']);
  assert.deepEqual(samples(text, 'holdfast_tls_handshake_failures_total').filter((l) => !l.endsWith(' 0')), [
    'holdfast_tls_handshake_failures_total{service="web",reason="timeout"} 1',
    'holdfast_tls_handshake_failures_total{service="web",reason="client-certificate"} 3',
    'holdfast_tls_handshake_failures_total{service="web",reason="protocol"} 2',
  ]);
  assert.deepEqual(samples(text, 'holdfast_tls_reloads_total'), [
    'holdfast_tls_reloads_total{service="web",result="ok"} 1',
    'holdfast_tls_reloads_total{service="web",result="refused"} 1',
  ]);
});
