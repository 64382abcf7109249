/**
 * @module The tests every balancer must pass, run by each balancer's own test file through
 * `runBalancerSuite(name)` (Hono's shared router suite, `common.case.test.ts`). The balancer is
 * created through the registry, so the suite also checks that the name is registered.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createBalancer } from './index.js';
import type { Balancer, PickResult } from './index.js';

/** A test candidate: plain and mutable, as the brief's `{ id, weight, index, active }`. */
export interface TestCandidate {
  id: string;
  weight: number;
  index: number;
  active: number;
  load: number;
  forecast: number;
}

export function candidates(count: number, weight = 1, prefix = 'b'): TestCandidate[] {
  return Array.from({ length: count }, (_, index) => ({ id: `${prefix}${index}`, weight, index, active: 0, load: 0, forecast: 0 }));
}

/** The backend of a pick, failing the test on `none`. */
export function picked<T extends TestCandidate>(result: PickResult<T>): T {
  assert.equal(result.type, 'pick', 'expected a pick, got none');
  if (result.type !== 'pick') throw new Error('unreachable');
  return result.backend;
}

/** Ids of `count` picks, in order. */
export function pickIds(balancer: Balancer<TestCandidate>, count: number): string[] {
  const ids: string[] = [];
  for (let i = 0; i < count; i++) ids.push(picked(balancer.pick()).id);
  return ids;
}

function countPicks(balancer: Balancer<TestCandidate>, count: number): Map<string, number> {
  const counts = new Map<string, number>();
  for (let i = 0; i < count; i++) {
    const id = picked(balancer.pick()).id;
    counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  return counts;
}

/** Relative spread allowed between a candidate's share and the fair share (randomised balancers). */
const SPREAD_TOLERANCE = 0.15;

export function runBalancerSuite(name: string): void {
  describe(`balancer contract: ${name}`, () => {
    const make = (): Balancer<TestCandidate> => createBalancer<TestCandidate>(name);

    test('is registered under its name', () => {
      assert.equal(make().name, name);
    });

    test('pick on an empty snapshot is none', () => {
      const balancer = make();
      assert.deepEqual(balancer.pick(), { type: 'none' });
      balancer.update(candidates(3));
      picked(balancer.pick());
      balancer.update([]);
      for (let i = 0; i < 5; i++) assert.deepEqual(balancer.pick(), { type: 'none' });
    });

    test('a single candidate is always picked', () => {
      const balancer = make();
      const [only] = candidates(1);
      balancer.update([only!]);
      for (let i = 0; i < 50; i++) assert.equal(picked(balancer.pick()), only);
    });

    test('never picks a backend outside the latest snapshot', () => {
      const balancer = make();
      const first = candidates(4, 1, 'old');
      const second = candidates(3, 1, 'new');
      balancer.update(first);
      for (let i = 0; i < 7; i++) assert.ok(first.includes(picked(balancer.pick())));
      balancer.update(second);
      for (let i = 0; i < 100; i++) assert.ok(second.includes(picked(balancer.pick())), 'picked a backend of the old snapshot');
    });

    test('after an update to a subset, picks only that subset, and all of it', () => {
      const balancer = make();
      const all = candidates(6);
      balancer.update(all);
      for (let i = 0; i < 9; i++) picked(balancer.pick());
      const subset = [all[1]!, all[3]!, all[4]!];
      balancer.update(subset);
      const counts = countPicks(balancer, 300);
      assert.deepEqual([...counts.keys()].sort(), ['b1', 'b3', 'b4']);
    });

    test('with equal weight and equal load every candidate gets its share', () => {
      const balancer = make();
      const pool = candidates(5);
      balancer.update(pool);
      const PICKS = 5000;
      const fair = PICKS / pool.length;
      const counts = countPicks(balancer, PICKS);
      assert.equal(counts.size, pool.length);
      for (const [id, count] of counts) {
        assert.ok(Math.abs(count - fair) <= fair * SPREAD_TOLERANCE, `${id} picked ${count} times, fair share ${fair}`);
      }
    });

    test('an update with the same list is harmless', () => {
      const balancer = make();
      const pool = candidates(4);
      balancer.update(pool);
      const PICKS = 4000;
      const counts = new Map<string, number>();
      for (let i = 0; i < PICKS; i++) {
        balancer.update(pool);
        if (i % 3 === 0) balancer.update([...pool]);
        const id = picked(balancer.pick()).id;
        counts.set(id, (counts.get(id) ?? 0) + 1);
      }
      const fair = PICKS / pool.length;
      assert.equal(counts.size, pool.length);
      for (const [id, count] of counts) {
        assert.ok(Math.abs(count - fair) <= fair * SPREAD_TOLERANCE, `${id} picked ${count} times, fair share ${fair}`);
      }
    });

    test('1000 candidates: no exception, every pick is one of them', () => {
      const balancer = make();
      const pool = candidates(1000);
      const members = new Set(pool);
      balancer.update(pool);
      const seen = new Set<TestCandidate>();
      for (let i = 0; i < 5000; i++) {
        const backend = picked(balancer.pick());
        assert.ok(members.has(backend), 'picked an object that is not in the snapshot');
        seen.add(backend);
      }
      assert.ok(seen.size > 500, `only ${seen.size} of 1000 candidates picked in 5000 picks`);
    });
  });
}
