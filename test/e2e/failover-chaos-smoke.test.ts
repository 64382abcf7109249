/**
 * @module Guards the failover chaos benchmark's harness: a 6 s run (one SIGKILL and restart) through
 * HAProxy and holdfast with real processes. It checks that the harness works — every class sent and
 * judged through both proxies, the kill landed and the origin came back — not how many requests
 * holdfast saves (the failover integration tests assert that).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CLASSES } from '../../bench/lib/chaos-client.js';
import { run } from '../../bench/failover-chaos.js';

test('failover-chaos: both legs run every class through one kill and restart', { timeout: 20_000 }, async () => {
  const lines: string[] = [];
  // A short request timeout: a request stuck behind a proxy must not keep the test past its budget.
  const report = await run({ seconds: 6, out: null, requestTimeoutMs: 1_500, log: (l) => lines.push(l) });
  assert.deepEqual(
    report.results.map((r) => r.target),
    ['haproxy', 'holdfast'],
    lines.join('\n'),
  );
  for (const r of report.results) {
    assert.deepEqual(r.classes.map((c) => c.cls), [...CLASSES]);
    for (const c of r.classes) {
      assert.ok(c.requests > 0, `${r.target} ${c.cls}: no requests\n${lines.join('\n')}`);
      assert.ok(c.failures <= c.requests);
      assert.equal(Object.values(c.reasons).reduce((s, n) => s + n, 0), c.failures, `${r.target} ${c.cls}: reasons add up`);
    }
    assert.equal(r.kills.length, 1, `${r.target}: one kill in 6 s`);
    const [kill] = r.kills;
    assert.equal(kill!.origin, 0);
    assert.ok(kill!.killAtMs >= 2_900 && kill!.killAtMs < 4_000, `${r.target}: killed at ${kill!.killAtMs} ms`);
    assert.ok(kill!.backAtMs !== null && kill!.backAtMs >= kill!.killAtMs + 1_000, `${r.target}: back at ${kill!.backAtMs} ms`);
    assert.ok(r.seconds >= 6 && r.seconds < 6 + 1.5 + 1, `${r.target}: ran ${r.seconds} s`);
    assert.equal(r.proxyExited, null, `${r.target} died: ${r.proxyExited}`);
  }
  // HAProxy is the baseline: with all origins up it serves every class.
  assert.deepEqual(report.results[0]!.preflightProblems, []);
});
