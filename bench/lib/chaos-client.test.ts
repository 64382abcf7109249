/**
 * @module Tests of the chaos client: the request mix is seeded and its expectations match what the
 * origin serves, the verdict names each kind of failure, one request's observation is right against
 * real sockets (a whole reply, a cut one, wrong bytes, a refused port), and holdfast's failover
 * metrics are read from Prometheus text as histogram_quantile() would.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import {
  CLASSES,
  CLASS_WEIGHTS,
  ChaosClient,
  RequestMix,
  execute,
  failoverMetrics,
  histogramQuantile,
  judge,
  parsePrometheusText,
  type Expectation,
  type Observation,
} from './chaos-client.js';
import { BodyStore, sha256Hex, startChaosOrigin } from './chaos-origin.js';

test('RequestMix: the same seed draws the same requests; each class has its expectation', () => {
  const a = new RequestMix(11);
  const b = new RequestMix(11);
  const c = new RequestMix(12);
  const seqA = Array.from({ length: 200 }, () => a.next());
  const seqB = Array.from({ length: 200 }, () => b.next());
  const seqC = Array.from({ length: 200 }, () => c.next());
  assert.deepEqual(seqA.map((p) => p.path), seqB.map((p) => p.path));
  assert.notDeepEqual(seqA.map((p) => p.path), seqC.map((p) => p.path));
  // Every class turns up, roughly in its share (200 draws: loose bounds).
  for (const cls of CLASSES) {
    const n = seqA.filter((p) => p.cls === cls).length;
    assert.ok(n > 200 * CLASS_WEIGHTS[cls] * 0.4 && n < 200 * CLASS_WEIGHTS[cls] * 1.8, `${cls}: ${n} of 200`);
  }

  const store = new BodyStore();
  const mix = new RequestMix(3);
  const det = mix.make('det');
  const m = /^\/det\/(\d+)\?size=(\d+)$/.exec(det.path);
  assert.ok(m, det.path);
  assert.deepEqual(det.expect, { kind: 'digest', length: Number(m[2]), sha256: sha256Hex(store.detBody(Number(m[1]), Number(m[2]))) });

  const st = mix.make('static');
  const n = Number(/^\/static\/(\d+)$/.exec(st.path)![1]);
  assert.deepEqual(st.expect, { kind: 'digest', length: store.staticObject(n).body.length, sha256: store.staticObject(n).sha256 });

  assert.deepEqual(mix.make('rand-large').expect, { kind: 'header', length: 256 * 1024 });
  assert.ok(mix.make('rand-small').expect.length <= 32 * 1024);

  const e1 = mix.make('echo');
  const e2 = mix.make('echo');
  assert.equal(e1.method, 'POST');
  assert.equal(e1.expect.kind === 'digest' && e1.expect.sha256, sha256Hex(e1.body!));
  assert.equal(e1.headers['Content-Length'], String(e1.body!.length));
  assert.notEqual(e1.headers['Idempotency-Key'], e2.headers['Idempotency-Key']);
});

test('judge: each way a reply can be wrong has its reason', () => {
  const digest: Expectation = { kind: 'digest', length: 3, sha256: sha256Hex(Buffer.from('abc')) };
  const header: Expectation = { kind: 'header', length: 3 };
  const ok: Observation = { status: 200, complete: true, timedOut: false, bodyBytes: 3, bodySha256: sha256Hex(Buffer.from('abc')), headerSha256: null };
  assert.equal(judge(digest, ok), null);
  assert.equal(judge(digest, { ...ok, timedOut: true }), 'timeout');
  assert.equal(judge(digest, { ...ok, status: null }), 'connection');
  assert.equal(judge(digest, { ...ok, status: 502 }), 'status');
  assert.equal(judge(digest, { ...ok, status: 304 }), 'status');
  assert.equal(judge(digest, { ...ok, complete: false }), 'truncated');
  assert.equal(judge(digest, { ...ok, bodyBytes: 2 }), 'truncated');
  assert.equal(judge(digest, { ...ok, bodyBytes: 4 }), 'mismatch');
  assert.equal(judge(digest, { ...ok, bodySha256: sha256Hex(Buffer.from('abd')) }), 'mismatch');
  assert.equal(judge(header, { ...ok, headerSha256: ok.bodySha256 }), null);
  assert.equal(judge(header, { ...ok, headerSha256: ok.bodySha256.toUpperCase() }), null);
  assert.equal(judge(header, ok), 'mismatch');
  assert.equal(judge(header, { ...ok, headerSha256: sha256Hex(Buffer.from('x')) }), 'mismatch');
});

/** A raw server answering every request with `reply` and then doing `after` to the socket. */
async function rawServer(t: TestContext, reply: Buffer, after: 'keep' | 'end'): Promise<number> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => {});
    s.once('data', () => {
      s.write(reply);
      if (after === 'end') s.end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  return (server.address() as net.AddressInfo).port;
}

test('execute: a whole reply passes; a cut body, wrong bytes, a refused port and silence fail as such', async (t) => {
  const agent = new http.Agent({ keepAlive: true });
  t.after(() => agent.destroy());
  const body = Buffer.from('hello world');
  const expect: Expectation = { kind: 'digest', length: body.length, sha256: sha256Hex(body) };
  const plan = { cls: 'det' as const, method: 'GET' as const, path: '/', headers: {}, body: null, expect };
  const head = (len: number): string => `HTTP/1.1 200 OK\r\nContent-Length: ${len}\r\n\r\n`;

  const whole = await rawServer(t, Buffer.concat([Buffer.from(head(body.length)), body]), 'keep');
  const o1 = await execute(agent, '127.0.0.1', whole, plan, 2000);
  assert.equal(judge(expect, o1), null);
  assert.equal(o1.bodyBytes, body.length);

  const cut = await rawServer(t, Buffer.concat([Buffer.from(head(body.length)), body.subarray(0, 5)]), 'end');
  const o2 = await execute(agent, '127.0.0.1', cut, plan, 2000);
  assert.equal(o2.status, 200);
  assert.equal(o2.bodyBytes, 5);
  assert.equal(judge(expect, o2), 'truncated');

  const wrong = await rawServer(t, Buffer.from(head(body.length) + 'hello_world'), 'keep');
  assert.equal(judge(expect, await execute(agent, '127.0.0.1', wrong, plan, 2000)), 'mismatch');

  const silentPort = await rawServer(t, Buffer.alloc(0), 'keep');
  const o4 = await execute(agent, '127.0.0.1', silentPort, plan, 200);
  assert.equal(judge(expect, o4), 'timeout');

  // A port nobody listens on: take one and close it.
  const closed = await new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
  const o5 = await execute(agent, '127.0.0.1', closed, plan, 2000);
  assert.equal(judge(expect, o5), 'connection');
  assert.equal(o5.error, 'ECONNREFUSED');
});

test('ChaosClient against the origin directly: every class served, no failure, workers stop', async (t) => {
  const o = await startChaosOrigin({ port: 0 });
  t.after(() => o.close());
  // Every class has the same share, so 150 requests cover each one many times.
  const weights = Object.fromEntries(CLASSES.map((c) => [c, 1])) as Record<(typeof CLASSES)[number], number>;
  const client = new ChaosClient({ host: '127.0.0.1', port: o.port, connections: 4, mix: new RequestMix(5, weights) });
  client.start();
  const until = Date.now() + 5_000;
  const total = (): number => [...client.stats.values()].reduce((s, x) => s + x.requests, 0);
  while (total() < 150 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
  await client.stop();
  assert.equal(client.inFlight, 0);
  for (const cls of CLASSES) {
    const s = client.stats.get(cls)!;
    assert.ok(s.requests > 0, `${cls}: no requests`);
    assert.equal(s.failures, 0, `${cls}: ${JSON.stringify(client.failures.filter((f) => f.cls === cls).slice(0, 3))}`);
    assert.equal(s.durationsMs.length, s.requests);
  }
});

const METRICS = `# HELP holdfast_failover_total Failovers by strategy and result.
# TYPE holdfast_failover_total counter
holdfast_failover_total{service="chaos",strategy="replay",result="ok"} 12
holdfast_failover_total{service="chaos",strategy="range",result="ok"} 5
holdfast_failover_total{service="other",strategy="range",result="ok"} 1
holdfast_failover_total{service="chaos",strategy="none",result="failed"} 2
holdfast_failover_total{service="chaos",strategy="verified",result="failed"} 0
# TYPE holdfast_failover_recovery_seconds histogram
holdfast_failover_recovery_seconds_bucket{le="0.001",service="chaos"} 0
holdfast_failover_recovery_seconds_bucket{le="0.005",service="chaos"} 10
holdfast_failover_recovery_seconds_bucket{le="0.01",service="chaos"} 18
holdfast_failover_recovery_seconds_bucket{le="0.1",service="chaos"} 20
holdfast_failover_recovery_seconds_bucket{le="+Inf",service="chaos"} 20
holdfast_failover_recovery_seconds_sum{service="chaos"} 0.1
holdfast_failover_recovery_seconds_count{service="chaos"} 20
holdfast_request_log_overflow_total{service="chaos"} 3
process_cpu_seconds_total 1.5
weird_label{path="a \\"quoted\\" \\\\ value\\nnext"} 7 1700000000000
`;

test('parsePrometheusText: names, labels with escapes, values, comments skipped', () => {
  const samples = parsePrometheusText(METRICS);
  assert.equal(samples.filter((s) => s.name === 'holdfast_failover_total').length, 5);
  assert.deepEqual(samples.find((s) => s.name === 'process_cpu_seconds_total'), { name: 'process_cpu_seconds_total', labels: {}, value: 1.5 });
  assert.deepEqual(samples.find((s) => s.name === 'weird_label'), { name: 'weird_label', labels: { path: 'a "quoted" \\ value\nnext' }, value: 7 });
  const inf = samples.find((s) => s.labels.le === '+Inf');
  assert.equal(inf?.value, 20);
});

test('histogramQuantile interpolates inside the bucket like Prometheus', () => {
  const buckets = [
    { le: 0.001, count: 0 },
    { le: 0.005, count: 10 },
    { le: 0.01, count: 18 },
    { le: 0.1, count: 20 },
    { le: Infinity, count: 20 },
  ];
  // rank 10 of 20 falls at the top of (0.001, 0.005].
  assert.equal(histogramQuantile(0.5, buckets), 0.005);
  // rank 19.8: bucket (0.01, 0.1] holds 18..20 → 0.01 + 0.09 × 1.8/2.
  assert.ok(Math.abs(histogramQuantile(0.99, buckets)! - (0.01 + 0.09 * 0.9)) < 1e-12);
  // rank 5: halfway through (0.001, 0.005].
  assert.ok(Math.abs(histogramQuantile(0.25, buckets)! - 0.003) < 1e-12);
  // Past every finite bucket: the last finite bound.
  assert.equal(histogramQuantile(0.99, [{ le: 0.1, count: 1 }, { le: Infinity, count: 10 }]), 0.1);
  assert.equal(histogramQuantile(0.5, [{ le: Infinity, count: 0 }]), null);
  assert.equal(histogramQuantile(0.5, []), null);
});

test('failoverMetrics sums services, drops zero rows, gives recovery p50/p99 in ms; null without failover metrics', () => {
  const f = failoverMetrics(METRICS)!;
  assert.deepEqual(f.failovers, [
    { strategy: 'none', result: 'failed', count: 2 },
    { strategy: 'range', result: 'ok', count: 6 },
    { strategy: 'replay', result: 'ok', count: 12 },
  ]);
  assert.equal(f.recovery?.count, 20);
  assert.equal(f.recovery?.p50Ms, 5);
  assert.ok(Math.abs(f.recovery!.p99Ms! - 91) < 1e-9);
  assert.equal(f.logOverflows, 3);
  assert.equal(failoverMetrics('process_cpu_seconds_total 1\nholdfast_http_requests_total{service="x"} 4\n'), null);
});
