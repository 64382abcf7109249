import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../core/clock.js';
import { IdleTimer } from './lifecycle.js';

test('IdleTimer fires once after a whole period without touch, not per touch', () => {
  const clock = new FakeClock();
  let fired = 0;
  const idle = new IdleTimer(clock, 100, () => {
    fired++;
  });
  clock.advance(60);
  idle.touch();
  clock.advance(60); // 60 ms since the touch
  assert.equal(fired, 0);
  clock.advance(40);
  assert.equal(fired, 1);
  clock.advance(500);
  assert.equal(fired, 1, 'once, unless onIdle asks to keep watching');
});

test('IdleTimer keeps watching for a whole new period when onIdle returns true', () => {
  const clock = new FakeClock();
  const at: number[] = [];
  let keep = true;
  const idle = new IdleTimer(clock, 100, () => {
    at.push(clock.now());
    return keep;
  });
  clock.advance(100);
  clock.advance(50);
  idle.touch();
  clock.advance(99); // past a whole period since the first firing, but touched 50 ms in
  assert.deepEqual(at, [100]);
  clock.advance(1);
  assert.deepEqual(at, [100, 250]);
  keep = false;
  clock.advance(100);
  assert.deepEqual(at, [100, 250, 350]);
  clock.advance(1000);
  assert.equal(at.length, 3);
  idle.cancel();
});
