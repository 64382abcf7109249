/**
 * @module Guards the benchmark harness in CI: one short round of the HTTP proxy benchmark through
 * every leg (direct, HAProxy, holdfast), with real processes and wrk. It checks that the harness
 * works and that each leg serves cleanly, not how fast (a 1 s run on a shared CI machine says little).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { run, TARGETS } from '../../bench/http-proxy.js';

test('http-proxy benchmark: every leg serves 1 KiB responses without errors', { timeout: 15_000 }, async () => {
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
