/**
 * @module Guards the benchmark harness in CI: one short round of the HTTP proxy benchmark through
 * every leg (direct, HAProxy, holdfast), of the TLS benchmark's arms, and a small idle flood, with
 * real processes and wrk. It checks that the harness
 * works and that each leg serves cleanly, not how fast (a 1 s run on a shared CI machine says little).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { run, TARGETS } from '../../bench/http-proxy.js';
import * as hardening from '../../bench/hardening.js';
import * as tlsBench from '../../bench/tls.js';

test('http-proxy benchmark: every leg serves 1 KiB responses without errors', { timeout: 40_000 }, async () => {
  const results = await run({ seconds: 1, rounds: 1, sizes: [1024], warmupSeconds: 0, out: null, log: () => {} });
  assert.deepEqual(
    results.map((r) => r.target),
    [...TARGETS],
  );
  for (const r of results) {
    assert.equal(r.size, 1024);
    assert.equal(r.rounds.length, 1);
    const [round] = r.rounds;
    assert.ok(r.requestsPerSec > 0, `${r.target}: req/s ${r.requestsPerSec}`);
    assert.ok(round!.requests > 0, `${r.target}: ${round!.requests} requests`);
    assert.ok(r.latencyP99Ms > 0 && r.latencyP99Ms >= r.latencyP50Ms, `${r.target}: p50 ${r.latencyP50Ms} p99 ${r.latencyP99Ms}`);
    assert.equal(round!.non2xx, 0, `${r.target}: non-2xx responses`);
    assert.deepEqual(round!.socketErrors, { connect: 0, read: 0, write: 0, timeout: 0 }, `${r.target}: socket errors`);
    // The proxied legs really went through their proxy: it burnt CPU for them.
    if (r.target !== 'direct' && process.platform === 'linux') {
      assert.ok((round!.proxyCpuUsPerRequest ?? 0) > 0, `${r.target}: proxy CPU per request ${round!.proxyCpuUsPerRequest}`);
    } else {
      assert.equal(round!.proxyCpuUsPerRequest, null);
    }
  }
});

test('tls benchmark: HAProxy and holdfast both serve every arm over TLS 1.3, and the verdict lines are printed', { timeout: 90_000 }, async () => {
  const r = await tlsBench.run({ seconds: 1, rounds: 1, connections: 4, chaos: false, chaosSeconds: 3, log: () => {} });
  assert.deepEqual(
    r.arms.map((a) => `${a.arm} ${a.target}`),
    ['keepalive-1k haproxy', 'keepalive-1k holdfast', 'keepalive-64k haproxy', 'keepalive-64k holdfast', 'handshake-1k haproxy', 'handshake-1k holdfast'],
  );
  for (const a of r.arms) assert.ok(a.requestsPerSec > 0, `${a.arm} ${a.target}: ${a.requestsPerSec} req/s`);
  const table = tlsBench.formatTable(r);
  for (const name of ['keepalive-vs-haproxy', 'handshakes-vs-haproxy', 'chaos-over-tls']) {
    assert.match(table, new RegExp(`^TARGET ${name}: (met|not met) — `, 'm'));
  }
});

test('hardening benchmark: a small idle flood is held, a normal client is served, the verdict line is printed', { timeout: 60_000 }, async () => {
  const r = await hardening.run({ connections: 200, requests: 20 });
  assert.equal(r.opened, 200);
  assert.equal(r.refusedAtEdge, 0);
  assert.equal(r.normal.failures, 0);
  assert.ok(r.rssFlooded > 0 && r.rssBefore > 0);
  assert.match(hardening.formatTable(r), /^TARGET idle-flood: (met|not met) — 200 idle connections held/m);
});
