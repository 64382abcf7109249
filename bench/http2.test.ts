import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatTable, p99FromLog, parseH2load, run } from './http2.js';

test('h2load summary and --log-file parsing', () => {
  const out = 'finished in 3.00s, 6229.33 req/s, 7.31MB/s\nrequests: 18688 total, 18688 started, 18688 done, 18680 succeeded, 8 failed, 0 errored, 0 timeout\n';
  assert.deepEqual(parseH2load(out), { rps: 6229.33, done: 18688, failed: 8 });
  assert.throws(() => parseH2load('nonsense'), /unexpected output/);
  const log = Array.from({ length: 100 }, (_, i) => `1700000000000000\t200\t${(i + 1) * 1000}`).join('\n');
  assert.equal(p99FromLog(log), 99);
});

test('bench/http2 smoke: both proxies serve h2load on both arms; the verdict lines are printed', { timeout: 120_000 }, async () => {
  const r = await run({ seconds: 1, rounds: 1, connections: 4, streams: 4, chaos: false, chaosSeconds: 3, chaosStreams: 2, log: () => {} });
  assert.equal(r.arms.length, 4);
  for (const a of r.arms) {
    assert.ok(a.requestsPerSec > 0, `${a.target} ${a.arm}`);
    assert.equal(a.failed, 0, `${a.target} ${a.arm}`);
  }
  const table = formatTable(r);
  assert.match(table, /^TARGET h2-vs-haproxy: (met|not met) — /m);
  assert.match(table, /^TARGET chaos-over-h2: not met — not run/m);
});
