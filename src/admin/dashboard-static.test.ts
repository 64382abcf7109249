/** The dashboard's files as the admin listener serves them: built ones, security headers, 503 when not built. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { serveDashboard } from './dashboard-static.js';

async function serve(t: import('node:test').TestContext, dir?: URL): Promise<string> {
  const server = http.createServer((req, res) => {
    void serveDashboard(req, res, req.url ?? '/', dir).then((done) => {
      if (!done) res.writeHead(404).end();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => server.close());
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

test('the built dashboard: index.html at /, the bundle and its CSS under /assets/, with a CSP; others 404', async (t) => {
  const base = await serve(t);
  const index = await fetch(`${base}/`);
  assert.equal(index.status, 200);
  assert.equal(index.headers.get('content-type'), 'text/html; charset=utf-8');
  assert.match(index.headers.get('content-security-policy') ?? '', /default-src 'self'/);
  assert.match(await index.text(), /<script type="module" src="\/assets\/app\.js"><\/script>/);
  const js = await fetch(`${base}/assets/app.js`);
  assert.equal(js.status, 200);
  assert.equal(js.headers.get('content-type'), 'text/javascript; charset=utf-8');
  assert.ok((await js.text()).length > 10_000); // preact + htm + uPlot bundled, nothing fetched at run time
  assert.equal((await fetch(`${base}/assets/app.css`)).status, 200);
  assert.equal((await fetch(`${base}/assets/../../package.json`)).status, 404);
  assert.equal((await fetch(`${base}/assets/other.js`)).status, 404);
  assert.equal((await fetch(`${base}/`, { method: 'POST' })).status, 405);
});

test('not built: 503 saying how to build it', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'hf-dash-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const base = await serve(t, pathToFileURL(`${dir}/`));
  const res = await fetch(`${base}/`);
  assert.equal(res.status, 503);
  assert.match(await res.text(), /npm run build/);
});
