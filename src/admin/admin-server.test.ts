import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { channels } from '../core/diagnostics.js';
import { ListenError } from '../core/errors.js';
import { startAdminServer } from './admin-server.js';
import { createMetrics } from './metrics.js';
import type { StatusSnapshot } from './status.js';

const snapshot: StatusSnapshot = {
  version: '0.1.0',
  pid: 4242,
  startedAt: 1_700_000_000_000,
  services: [
    {
      name: 'web',
      protocol: 'http',
      listen: '127.0.0.1:8080',
      balancer: 'round-robin',
      sessions: { active: 0, max: 16 },
      flows: { active: 0, max: 16 },
      clusterLoad: 0,
      backends: [
        { id: 'b1', address: '127.0.0.1:9001', weight: 1, state: 'up', since: 5, reason: 'probe ok', active: 2 },
        { id: 'b2', address: '127.0.0.1:9002', weight: 2, state: 'down', since: 6, reason: 'refused', active: 0 },
      ],
    },
  ],
};

async function start(t: import('node:test').TestContext) {
  const metrics = createMetrics(() => snapshot);
  const server = await startAdminServer({ host: '127.0.0.1', port: 0 }, { status: () => snapshot, registry: metrics.registry });
  t.after(async () => {
    await server.close();
    metrics.close();
  });
  return { server, metrics, base: `http://127.0.0.1:${server.address.port}` };
}

test('GET /metrics serves the registry in Prometheus text format', async (t) => {
  const { server, metrics, base } = await start(t);
  assert.equal(server.address.host, '127.0.0.1');
  assert.ok(server.address.port > 0);
  channels.httpExchange.publish({ service: 'web', backend: 'b1', status: 200, durationMs: 1, bytesIn: 1, bytesOut: 1 });
  const res = await fetch(`${base}/metrics`);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), metrics.registry.contentType);
  const body = await res.text();
  assert.match(body, /^holdfast_http_requests_total\{service="web",backend="b1",code="2xx"\} 1$/m);
  assert.match(body, /^holdfast_backend_up\{service="web",backend="b2"\} 0$/m);
});

test('GET /api/v1/status returns status() as JSON; /healthz answers ok', async (t) => {
  const { base } = await start(t);
  const res = await fetch(`${base}/api/v1/status?pretty=1`);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'application/json');
  assert.deepEqual(await res.json(), snapshot);

  const health = await fetch(`${base}/healthz`);
  assert.equal(health.status, 200);
  assert.equal(await health.text(), 'ok');
});

test('unknown path is 404 JSON, other methods are 405 with Allow, HEAD has headers and no body', async (t) => {
  const { base } = await start(t);
  const missing = await fetch(`${base}/nope?x=1`);
  assert.equal(missing.status, 404);
  assert.deepEqual(await missing.json(), { error: 'not found', path: '/nope' });

  const post = await fetch(`${base}/metrics`, { method: 'POST', body: 'x' });
  assert.equal(post.status, 405);
  assert.equal(post.headers.get('allow'), 'GET, HEAD');
  assert.equal((await post.json()).error, 'method not allowed');

  const head = await fetch(`${base}/api/v1/status`, { method: 'HEAD' });
  assert.equal(head.status, 200);
  assert.equal(head.headers.get('content-type'), 'application/json');
  assert.equal(Number(head.headers.get('content-length')), Buffer.byteLength(JSON.stringify(snapshot)));
  assert.equal(await head.text(), '');
});

test('close() ends idle keep-alive connections and ones with a request in progress', { timeout: 5000 }, async () => {
  const metrics = createMetrics(() => snapshot);
  const server = await startAdminServer({ host: '127.0.0.1', port: 0 }, { status: () => snapshot, registry: metrics.registry });
  try {
    // An idle keep-alive client that stays connected after its response...
    const idle = net.connect(server.address.port, '127.0.0.1');
    await once(idle, 'connect');
    idle.write('GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n');
    const [first] = (await once(idle, 'data')) as [Buffer];
    assert.match(first.toString(), /^HTTP\/1\.1 200 OK\r\n/);
    // ...and one in the middle of sending a request head, which server.close() alone would wait for.
    const busy = net.connect(server.address.port, '127.0.0.1');
    await once(busy, 'connect');
    busy.write('GET /healthz HTTP/1.1\r\nHost: x\r\n');
    // Being cut off may surface as ECONNRESET on the client side; that is the expected outcome.
    const closed = (s: net.Socket) => new Promise<void>((resolve) => s.on('error', () => {}).once('close', () => resolve()));
    const ended = Promise.all([closed(idle), closed(busy)]);

    await server.close();
    await ended;
    assert.equal(idle.destroyed && busy.destroyed, true);
    await assert.rejects(fetch(`http://127.0.0.1:${server.address.port}/healthz`));
    await server.close(); // idempotent
  } finally {
    metrics.close();
  }
});

test('a port already in use rejects with ListenError', async (t) => {
  const { server, metrics } = await start(t);
  await assert.rejects(
    startAdminServer(server.address, { status: () => snapshot, registry: metrics.registry }),
    (err: unknown) => err instanceof ListenError && err.code === 'HF_ERR_LISTEN' && err.address === `127.0.0.1:${server.address.port}`,
  );
});
