/**
 * Admin authentication: where the token comes from, the non-loopback rule, 401 / 403 / 200 on a real
 * admin listener, the open paths; and drain / undrain through a real dispatcher (traffic leaves a
 * drained backend, the health probe does not bring it back, undrain does).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigInvalidError } from '../core/errors.js';
import { configSchema } from '../config/schema.js';
import { parseConfig } from '../config/load.js';
import { startDispatcher } from '../dispatcher/dispatcher.js';
import { startDemoBackend } from '../demo/demo-backend.js';
import { startAdminServer } from './admin-server.js';
import { ADMIN_TOKEN_ENV, checkBearer, isLoopbackHost, resolveAdminToken } from './api-auth.js';
import { createMetrics } from './metrics.js';
import type { StatusSnapshot } from './status.js';

const TOKEN = 'correct-horse-battery-staple';

test('resolveAdminToken: env over file; short or unreadable token and a non-loopback listen without one are config errors naming the path', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'hf-admin-token-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'token');
  writeFileSync(file, `${TOKEN}\n`, { mode: 0o600 });
  assert.equal(resolveAdminToken({ listen: '0.0.0.0:9900', tokenFile: file }, {}), TOKEN);
  assert.equal(resolveAdminToken({ listen: '0.0.0.0:9900', tokenFile: file }, { [ADMIN_TOKEN_ENV]: 'from-the-environment-1' }), 'from-the-environment-1');
  assert.equal(resolveAdminToken({ listen: '127.0.0.1:9900' }, {}), null);
  assert.equal(resolveAdminToken({ listen: '[::1]:9900' }, {}), null);

  const fails = (fn: () => unknown, re: RegExp) => assert.throws(fn, (err: unknown) => err instanceof ConfigInvalidError && err.code === 'HF_ERR_CONFIG_INVALID' && re.test(err.issues.join('\n')));
  fails(() => resolveAdminToken({ listen: '0.0.0.0:9900' }, {}), /^admin\.listen: "0\.0\.0\.0:9900" is not a loopback address and no admin token is set/);
  fails(() => resolveAdminToken({ listen: '10.1.2.3:9900', tokenFile: join(dir, 'missing') }, {}), /^admin\.tokenFile: cannot read/);
  writeFileSync(file, 'short');
  fails(() => resolveAdminToken({ listen: '127.0.0.1:9900', tokenFile: file }, {}), /^admin\.tokenFile: expected a token of at least 16 characters, received 5/);
  fails(() => resolveAdminToken({ listen: '127.0.0.1:9900' }, { [ADMIN_TOKEN_ENV]: 'tiny' }), /^HOLDFAST_ADMIN_TOKEN: expected a token/);

  assert.equal(isLoopbackHost('127.8.9.10'), true);
  assert.equal(isLoopbackHost('localhost'), true);
  assert.equal(isLoopbackHost('192.168.1.1'), false);
  assert.equal(isLoopbackHost('::'), false);
});

test('admin.tokenFile is part of the configuration; a literal token is refused with a hint', () => {
  const service = 'services: [{ name: web, protocol: http, listen: "127.0.0.1:0", backends: [{ id: a, address: "127.0.0.1:1" }] }]\n';
  assert.equal(parseConfig(`admin: { tokenFile: /etc/holdfast/admin.token }\n${service}`).admin.tokenFile, '/etc/holdfast/admin.token');
  assert.throws(
    () => parseConfig(`admin: { token: hunter2hunter2hunter2 }\n${service}`),
    (err: unknown) => err instanceof ConfigInvalidError && err.issues.some((i) => i.startsWith('admin.token:') && i.includes('tokenFile')),
  );
});

test('checkBearer: missing, malformed, wrong and right credentials', () => {
  assert.equal(checkBearer(undefined, TOKEN), 'missing');
  assert.equal(checkBearer(`Basic ${TOKEN}`, TOKEN), 'missing');
  assert.equal(checkBearer('Bearer', TOKEN), 'missing');
  assert.equal(checkBearer('Bearer nope', TOKEN), 'wrong');
  assert.equal(checkBearer(`Bearer ${TOKEN}x`, TOKEN), 'wrong');
  assert.equal(checkBearer(`bearer ${TOKEN}`, TOKEN), 'ok');
});

test('with a token: 401 without it (WWW-Authenticate), 403 when wrong, 200 when right; healthz, metrics on loopback, openapi and the dashboard stay open', async (t) => {
  const status = (): StatusSnapshot => ({ version: '0', pid: 1, startedAt: 0, services: [] });
  const metrics = createMetrics(status);
  const server = await startAdminServer({ host: '127.0.0.1', port: 0 }, {
    status,
    registry: metrics.registry,
    token: TOKEN,
    extra: (_req, res, path) => {
      if (path !== '/api/v1/openapi.json' && path !== '/') return false;
      res.end('{}');
      return true;
    },
  });
  t.after(async () => {
    await server.close();
    metrics.close();
  });
  const base = `http://127.0.0.1:${server.address.port}`;
  const none = await fetch(`${base}/api/v1/status`);
  assert.equal(none.status, 401);
  assert.equal(none.headers.get('www-authenticate'), 'Bearer realm="holdfast"');
  assert.equal((await fetch(`${base}/api/v1/status`, { headers: { authorization: 'Bearer wrong-token' } })).status, 403);
  assert.equal((await fetch(`${base}/api/v1/status`, { headers: { authorization: `Bearer ${TOKEN}` } })).status, 200);
  // An unknown path needs the token too (nothing is said about what exists); with it, 404.
  assert.equal((await fetch(`${base}/api/v1/nope`)).status, 401);
  assert.equal((await fetch(`${base}/api/v1/nope`, { headers: { authorization: `Bearer ${TOKEN}` } })).status, 404);
  for (const open of ['/healthz', '/metrics', '/api/v1/openapi.json', '/']) assert.equal((await fetch(`${base}${open}`)).status, 200, open);
});

function get(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve(body));
      })
      .on('error', reject);
  });
}

test('a dispatcher refuses to start with a non-loopback admin address and no token', async () => {
  const config = configSchema.parse({
    logging: { level: 'silent' },
    admin: { listen: '0.0.0.0:0' },
    services: [{ name: 'web', protocol: 'http', listen: '127.0.0.1:0', backends: [{ id: 'a', address: '127.0.0.1:1' }] }],
  });
  const saved = process.env[ADMIN_TOKEN_ENV];
  delete process.env[ADMIN_TOKEN_ENV];
  try {
    await assert.rejects(startDispatcher(config), (err: unknown) => err instanceof ConfigInvalidError && /admin\.listen/.test(err.message));
  } finally {
    if (saved !== undefined) process.env[ADMIN_TOKEN_ENV] = saved;
  }
});

test('drain through the API of a real dispatcher: new requests leave the backend and the probe does not bring it back; undrain does', { timeout: 20_000 }, async (t) => {
  const backends = await Promise.all(['a', 'b'].map((id) => startDemoBackend(id)));
  t.after(() => Promise.all(backends.map((b) => b.close())));
  const config = configSchema.parse({
    logging: { level: 'silent' },
    admin: { listen: '127.0.0.1:0' },
    services: [
      {
        name: 'web',
        protocol: 'http',
        listen: '127.0.0.1:0',
        balancer: 'round-robin',
        backends: backends.map((b) => ({ id: b.id, address: `127.0.0.1:${b.address.port}` })),
        health: { probe: { type: 'http', path: '/health', intervalMs: 50 } },
      },
    ],
  });
  const d = await startDispatcher(config);
  t.after(() => d.close());
  const admin = `http://127.0.0.1:${d.adminAddress!.port}/api/v1`;
  const service = `http://127.0.0.1:${d.serviceAddress('web').port}/`;

  const res = await fetch(`${admin}/services/web/backends/a/drain`, { method: 'POST', body: JSON.stringify({ reason: 'kernel upgrade' }) });
  assert.equal(res.status, 200);
  const body = (await res.json()) as { changed: boolean; backend: { state: string; reason: string } };
  assert.deepEqual([body.changed, body.backend.state, body.backend.reason], [true, 'draining', 'kernel upgrade']);
  const again = (await (await fetch(`${admin}/services/web/backends/a/drain`, { method: 'POST' })).json()) as { changed: boolean };
  assert.equal(again.changed, false);

  const served: string[] = [];
  for (let i = 0; i < 6; i++) served.push((JSON.parse(await get(service)) as { backend: string }).backend);
  assert.deepEqual([...new Set(served)], ['b']);
  await new Promise((r) => setTimeout(r, 200)); // several probe intervals
  assert.equal(d.status().services[0]!.backends[0]!.state, 'draining');

  const undone = (await (await fetch(`${admin}/services/web/backends/a/undrain`, { method: 'POST' })).json()) as { changed: boolean };
  assert.equal(undone.changed, true);
  const deadline = Date.now() + 5000;
  while (d.status().services[0]!.backends[0]!.state !== 'up' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.equal(d.status().services[0]!.backends[0]!.state, 'up');
  const after: string[] = [];
  for (let i = 0; i < 6; i++) after.push((JSON.parse(await get(service)) as { backend: string }).backend);
  assert.ok(after.includes('a'), after.join());
});
