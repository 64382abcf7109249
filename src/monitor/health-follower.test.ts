/**
 * @module HealthFollower: a worker's copy of the primary's backend states, and its reports.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Backend } from '../core/backend.js';
import { FakeClock } from '../core/clock.js';
import { HealthFollower, type HealthReport } from './health-follower.js';

function setup() {
  const backends = [new Backend('web', 'a', '127.0.0.1', 1, 1, 0, null), new Backend('web', 'b', '127.0.0.1', 2, 1, 1, null)];
  const reports: HealthReport[] = [];
  const changes: string[] = [];
  const clock = new FakeClock();
  const f = new HealthFollower(backends, (r) => reports.push(r), clock);
  f.onChange((b) => changes.push(`${b.id}:${b.state}`));
  return { a: backends[0]!, b: backends[1]!, f, reports, changes };
}

test('a failure takes the backend out here at once and is reported once', () => {
  const { a, f, reports, changes } = setup();
  f.reportFailure(a, 'refused');
  f.reportFailure(a, 'reset');
  assert.equal(a.state, 'down');
  assert.equal(a.eligible, false);
  assert.deepEqual(reports, [{ kind: 'failure', backend: 'a', failure: 'refused' }]);
  assert.deepEqual(changes, ['a:down']);
});

test('the primary decides: apply copies its state, reason and time, and notifies', () => {
  const { a, f, changes } = setup();
  f.reportFailure(a, 'refused');
  f.apply('a', 'up', 'probe ok', 1234);
  assert.equal(a.state, 'up');
  assert.equal(a.reason, 'probe ok');
  assert.equal(a.since, 1234);
  f.apply('a', 'up', 'probe ok', 1234);
  f.apply('nope', 'down', 'x', 1);
  assert.deepEqual(changes, ['a:down', 'a:up']);
});

test('a success is reported once per state, never while up', () => {
  const { a, b, f, reports } = setup();
  f.reportSuccess(a);
  f.reportSuccess(a);
  assert.deepEqual(reports, [{ kind: 'success', backend: 'a' }]);
  f.apply('a', 'up', 'ok', 1);
  f.reportSuccess(a);
  assert.equal(reports.length, 1);
  f.apply('b', 'down', 'probe failed', 1);
  f.reportSuccess(b);
  f.apply('b', 'suspect', 'late', 2);
  f.reportSuccess(b);
  assert.deepEqual(reports.slice(1), [{ kind: 'success', backend: 'b' }, { kind: 'success', backend: 'b' }]);
});
