import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatTable, optionsFromEnv, run } from './session-table.js';

test('session-table benchmark: a tiny run finds every hit, no miss, and reports the table\'s bytes', () => {
  const r = run({ flows: 5000, lookups: 4000, rounds: 1 });
  assert.equal(r.flows, 5000);
  assert.equal(r.hitsFound, 4000);
  assert.equal(r.missesFound, 0);
  // 5000 slots (1024 → 2048 → 4096 → 5000) × 44 bytes + 8192 index positions (5000 / 0.7 > 4096) × 12 bytes.
  assert.equal(r.table.arrayBytesPerFlow, (5000 * 44 + 8192 * 12) / 5000);
  assert.equal(r.map.arrayBytesPerFlow, null);
  for (const s of [r.table, r.map]) {
    for (const v of [s.insertsPerSecond, s.hitsPerSecond, s.missesPerSecond, s.mixedPerSecond, s.fromStringPerSecond]) assert.ok(v > 0 && Number.isFinite(v), `${s.name}: ${v}`);
    assert.ok(Number.isFinite(s.processBytesPerFlow));
  }
  const text = formatTable(r);
  assert.match(text, /^\| FlowTable \| 63\.7 \|/m);
  assert.match(text, /^\| Map<string, object> \| – \|/m);
  assert.match(text, /^\| FlowTable \/ Map \|/m);
});

test('session-table benchmark: knobs from the environment', () => {
  assert.deepEqual(optionsFromEnv({}), { flows: 1_000_000, lookups: 1_000_000, rounds: 3 });
  assert.deepEqual(optionsFromEnv({ BENCH_SESSION_FLOWS: '100', BENCH_SESSION_LOOKUPS: '10', BENCH_ROUNDS: '1' }), { flows: 100, lookups: 10, rounds: 1 });
  assert.throws(() => optionsFromEnv({ BENCH_SESSION_FLOWS: '8' }), RangeError);
  assert.throws(() => optionsFromEnv({ BENCH_ROUNDS: '0' }), RangeError);
});
