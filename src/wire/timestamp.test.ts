import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WIRE_TIMESTAMP_MODULUS, unwrapTimestamp, wireTimestamp } from './timestamp.js';

const M = 2 ** 32;
// 396 * 2^32 = 1 700 807 049 216 ms, a wrap point in November 2023.
const WRAP = 1_700_807_049_216;

test('wireTimestamp is wall ms mod 2^32', () => {
  assert.equal(WIRE_TIMESTAMP_MODULUS, M);
  assert.equal(396 * M, WRAP);
  assert.equal(wireTimestamp(0), 0);
  assert.equal(wireTimestamp(M - 1), 4294967295);
  assert.equal(wireTimestamp(M), 0);
  assert.equal(wireTimestamp(M + 5), 5);
  assert.equal(wireTimestamp(1_700_000_000_000), 3_487_918_080); // 1.7e12 - 395 * 2^32
  assert.equal(wireTimestamp(WRAP + 10), 10);
  assert.equal(wireTimestamp(WRAP - 10), 4294967286);
  assert.equal(wireTimestamp(1234.9), 1234);
  assert.equal(wireTimestamp(-1), 4294967295);
});

test('unwrap: the same low bits as now is now', () => {
  assert.equal(unwrapTimestamp(3_487_918_080, 1_700_000_000_000), 1_700_000_000_000);
  assert.equal(unwrapTimestamp(3_487_918_080 - 250, 1_700_000_000_000), 1_700_000_000_000 - 250);
  assert.equal(unwrapTimestamp(3_487_918_080 + 250, 1_700_000_000_000), 1_700_000_000_000 + 250);
});

test('unwrap across the wrap: sent just before it, received just after → in the past', () => {
  // now is 10 ms past the wrap; the sender stamped 5 ms before it (ts = 2^32 - 5).
  assert.equal(unwrapTimestamp(M - 5, WRAP + 10), WRAP - 5);
  assert.equal(unwrapTimestamp(M - 1, WRAP), WRAP - 1);
});

test('unwrap across the wrap: now just before it, timestamp just after → in the future', () => {
  // now is 10 ms before the wrap; a planned failure 15 ms later has ts = 5.
  assert.equal(unwrapTimestamp(5, WRAP - 10), WRAP + 5);
  assert.equal(unwrapTimestamp(0, WRAP - 1), WRAP);
});

test('unwrap picks the value nearest now, up to half the modulus either side', () => {
  // now's low bits are 0: ts = 2^31 - 1 is ahead, ts = 2^31 is exactly half way and taken as behind.
  assert.equal(unwrapTimestamp(2 ** 31 - 1, WRAP), WRAP + 2 ** 31 - 1);
  assert.equal(unwrapTimestamp(2 ** 31, WRAP), WRAP - 2 ** 31);
  assert.equal(unwrapTimestamp(2 ** 31 + 1, WRAP), WRAP - 2 ** 31 + 1);
});

test('unwrap(wireTimestamp(t), now) = t for every t within ±2^31 - 1 ms of now', () => {
  const offsets = [0, 1, -1, 4999, -4999, 86_400_000, -86_400_000, 2 ** 31 - 1, -(2 ** 31) + 1];
  for (const now of [WRAP - 3, WRAP, WRAP + 3, 1_700_000_000_000, 5]) {
    for (const off of offsets) {
      assert.equal(unwrapTimestamp(wireTimestamp(now + off), now), now + off, `now ${now} offset ${off}`);
    }
  }
});
