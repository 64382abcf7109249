import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { candidates, picked, runBalancerSuite } from './balancer.common-suite.js';
import type { TestCandidate } from './balancer.common-suite.js';
import { MaglevBalancer, isPrime, maglevPermutation, populateMaglev } from './balancer-maglev.js';
import { createBalancer } from './index.js';
import { keyHash } from '../core/key-hash.js';

runBalancerSuite('maglev');

const names = (table: Int32Array, ids: string[]): string[] => Array.from(table, (i) => ids[i]!);

test('maglev: the paper\'s example table (M = 7, three backends, §3.4 Table 1), before and after B1 leaves', () => {
  // Permutations as printed in the paper: B0 offset 3 skip 4, B1 offset 0 skip 2, B2 offset 3 skip 1.
  const b0 = { offset: 3, skip: 4, weight: 1 };
  const b1 = { offset: 0, skip: 2, weight: 1 };
  const b2 = { offset: 3, skip: 1, weight: 1 };
  assert.deepEqual(names(populateMaglev([b0, b1, b2], 7), ['B0', 'B1', 'B2']), ['B1', 'B0', 'B1', 'B0', 'B2', 'B2', 'B0']);
  assert.deepEqual(names(populateMaglev([b0, b2], 7), ['B0', 'B2']), ['B0', 'B0', 'B0', 'B0', 'B2', 'B2', 'B2']);
});

test('maglev: offset and skip come from SHA-256 of the name (computed by hand with sha256sum)', () => {
  // sha256("b0") = c02c0b96 5e023abe…: offset 3224112022 mod 7 = 5, skip 1577204414 mod 6 + 1 = 3.
  assert.deepEqual(maglevPermutation('b0', 7), { offset: 5, skip: 3, weight: 1 });
  assert.deepEqual(maglevPermutation('b1', 7), { offset: 5, skip: 4, weight: 1 });
  assert.deepEqual(maglevPermutation('b2', 7), { offset: 4, skip: 2, weight: 1 });
  // Filled by hand: b0 5,1,4,0,…  b1 5,2,6,…  b2 4,6,1,3,…  → rounds claim 5,2,4 | 1,6,3 | 0.
  const balancer = new MaglevBalancer<TestCandidate>(7);
  balancer.update(candidates(3));
  assert.deepEqual(balancer.entries(), ['b0', 'b0', 'b1', 'b2', 'b2', 'b0', 'b1']);
});

test('maglev: the table does not depend on the order the backends are given in', () => {
  const pool = candidates(9);
  const a = new MaglevBalancer<TestCandidate>(1009);
  const b = new MaglevBalancer<TestCandidate>(1009);
  a.update(pool);
  b.update([...pool].reverse());
  assert.deepEqual(a.entries(), b.entries());
});

test('maglev: another process builds the same table and maps the same keys to the same backends', () => {
  const here = new MaglevBalancer<TestCandidate>();
  here.update(candidates(5));
  const keys = Array.from({ length: 200 }, (_, i) => `call-${i}@10.0.0.${i % 7}`);
  const mine = keys.map((k) => picked(here.pick(keyHash(k))).id);
  const script = `
    const { MaglevBalancer } = await import(${JSON.stringify(new URL('./balancer-maglev.js', import.meta.url).href)});
    const { keyHash } = await import(${JSON.stringify(new URL('../core/key-hash.js', import.meta.url).href)});
    const b = new MaglevBalancer();
    b.update(Array.from({ length: 5 }, (_, index) => ({ id: 'b' + index, weight: 1, index, active: 0, load: 0, forecast: 0 })));
    const keys = ${JSON.stringify(keys)};
    process.stdout.write(JSON.stringify({ entries: b.entries().slice(0, 500), picks: keys.map((k) => b.pick(keyHash(k)).backend.id) }));
  `;
  const out = JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' })) as { entries: string[]; picks: string[] };
  assert.deepEqual(out.entries, here.entries().slice(0, 500));
  assert.deepEqual(out.picks, mine);
});

function ownership(entries: string[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const id of entries) counts.set(id, (counts.get(id) ?? 0) + 1);
  return counts;
}

test('maglev: balance within 1 % (max/min entries per backend) for 3 to 100 backends at M = 65537', () => {
  for (const n of [3, 10, 33, 100]) {
    const balancer = new MaglevBalancer<TestCandidate>();
    balancer.update(candidates(n));
    const counts = [...ownership(balancer.entries()).values()];
    assert.equal(counts.length, n);
    const ratio = Math.max(...counts) / Math.min(...counts);
    assert.ok(ratio <= 1.01, `${n} backends: max/min entries ${ratio}`);
  }
});

function moved(before: string[], after: string[]): number {
  let n = 0;
  for (let i = 0; i < before.length; i++) if (before[i] !== after[i]) n++;
  return n / before.length;
}

test('maglev: a backend leaving moves its own 1/N of the slots and little more; one joining takes about 1/(N+1)', () => {
  for (const n of [5, 10, 50]) {
    const pool = candidates(n + 1);
    const balancer = new MaglevBalancer<TestCandidate>();
    balancer.update(pool.slice(0, n));
    const before = balancer.entries();
    balancer.update(pool);
    const joined = balancer.entries();
    const share = moved(before, joined);
    // Every slot the newcomer took moved; Maglev moves a few more (the paper's Fig. 10: near-minimal).
    assert.ok(share >= 1 / (n + 1) - 0.01 && share <= 1.5 / (n + 1), `${n}→${n + 1} backends: ${share} of slots moved`);
    // Removing backend 0 again: slots owned by others must mostly stay.
    balancer.update(pool.slice(1));
    const left = balancer.entries();
    let keptElsewhere = 0;
    let others = 0;
    for (let i = 0; i < joined.length; i++) {
      if (joined[i] === 'b0') continue;
      others++;
      if (joined[i] === left[i]) keptElsewhere++;
    }
    assert.ok(keptElsewhere / others >= 1 - 0.5 / n, `${n + 1}→${n}: only ${keptElsewhere / others} of the others' slots kept`);
  }
});

test('maglev: weights give proportional shares of the table', () => {
  const pool = candidates(3);
  pool[0]!.weight = 1;
  pool[1]!.weight = 2;
  pool[2]!.weight = 4;
  const balancer = new MaglevBalancer<TestCandidate>();
  balancer.update(pool);
  const counts = ownership(balancer.entries());
  const total = 65537;
  for (const [id, w] of [['b0', 1], ['b1', 2], ['b2', 4]] as const) {
    const share = counts.get(id)! / total;
    assert.ok(Math.abs(share - w / 7) < 0.005, `${id}: share ${share}, expected ${w / 7}`);
  }
});

test('maglev: a down backend is skipped; its keys move and almost no other key does', () => {
  const pool = candidates(4);
  const balancer = new MaglevBalancer<TestCandidate>();
  balancer.update(pool);
  const keys = Array.from({ length: 4000 }, (_, i) => keyHash(`key-${i}`));
  const before = keys.map((h) => picked(balancer.pick(h)).id);
  balancer.update([pool[0]!, pool[1]!, pool[3]!]);
  const after = keys.map((h) => picked(balancer.pick(h)).id);
  let others = 0;
  let othersMoved = 0;
  for (let i = 0; i < keys.length; i++) {
    assert.notEqual(after[i], 'b2');
    if (before[i] === 'b2') continue;
    others++;
    if (after[i] !== before[i]) othersMoved++;
  }
  // Maglev is near-minimal, not minimal (§3.4: a few slots of live backends change owner too).
  assert.ok(othersMoved / others < 0.02, `${othersMoved} of ${others} keys of live backends moved`);
});

test('maglev: the same key always picks the same backend; keyless picks walk the table', () => {
  const balancer = createBalancer<TestCandidate>('maglev', { maglevTableSize: 101 });
  balancer.update(candidates(3));
  assert.equal(balancer.hashesKeys, true);
  const h = keyHash('a84b4c76e66710@pc33.atlanta.com');
  const first = picked(balancer.pick(h));
  for (let i = 0; i < 20; i++) assert.equal(picked(balancer.pick(h)), first);
});

test('maglev: a table size that is not a prime in range is refused with a clear error', () => {
  assert.equal(isPrime(65537), true);
  assert.equal(isPrime(65536), false);
  assert.throws(() => new MaglevBalancer(65536), /expected a prime in \[7, 1048573\], received 65536/);
  assert.throws(() => new MaglevBalancer(5), /received 5/);
});
