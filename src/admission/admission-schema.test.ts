import { test } from 'node:test';
import assert from 'node:assert/strict';
import { z } from 'zod';
import { ConfigInvalidError } from '../core/errors.js';
import { parseYaml } from '../config/load.js';
import { admissionSchema } from './admission-schema.js';

/** The fragment as config/schema.ts will hold it, under a service's `admission` key. */
const holder = z.object({ admission: admissionSchema.default({}) }).strict();

function issues(yaml: string): string[] {
  try {
    parseYaml(holder, yaml, 'a.yaml');
  } catch (err) {
    assert.ok(err instanceof ConfigInvalidError);
    return [...err.issues];
  }
  assert.fail('expected a ConfigInvalidError');
}

test('defaults: off, 0.6 < 0.75 < 0.85 < 0.95, SARA gains', () => {
  assert.deepEqual(parseYaml(holder, 'admission: {}', 'a.yaml').admission, {
    enabled: false,
    t1: 0.6,
    t2: 0.75,
    t3: 0.85,
    c: 0.95,
    intervalMs: 1000,
    minIntervalMs: 50,
    smoothingMs: 500,
    riseMs: 100,
    delayTargetMs: 100,
    delayHoldMs: 200,
    delayCapacityMs: 1000,
    delayBaselineMs: 10_000,
    t2Gain: 1,
    t3Gain: 1,
    minGap: 0.01,
    retryAfterS: 5,
  });
  assert.equal(holder.parse({}).admission.enabled, false);
});

test('thresholds out of order are named with the one they must exceed', () => {
  // t2 left at its default: the message says what it is.
  assert.deepEqual(issues('admission: { t1: 0.8 }'), [
    'admission.t2: expected more than t1 = 0.8 (t1 < t2 < t3 < c; t2 is 0.75), received nothing',
  ]);
  assert.deepEqual(issues('admission: { t3: 0.95, c: 0.95 }'), [
    'admission.c: expected more than t3 = 0.95 (t1 < t2 < t3 < c; c is 0.95), received 0.95',
  ]);
  assert.deepEqual(issues('admission: { t1: 0.7, t2: 0.6, t3: 0.5, c: 0.9 }'), [
    'admission.t2: expected more than t1 = 0.7 (t1 < t2 < t3 < c; t2 is 0.6), received 0.6',
    'admission.t3: expected more than t2 = 0.6 (t1 < t2 < t3 < c; t3 is 0.5), received 0.5',
  ]);
});

test('fractions outside [0, 1] and a floor above the period are refused', () => {
  assert.deepEqual(issues('admission: { c: 1.5 }'), ['admission.c: expected at most 1, received 1.5']);
  assert.deepEqual(issues('admission: { intervalMs: 100, minIntervalMs: 200 }'), [
    'admission.minIntervalMs: expected at most intervalMs (100), received 200',
  ]);
  assert.deepEqual(issues('admission: { t2Gain: 2 }'), ['admission.t2Gain: expected at most 1, received 2']);
  assert.deepEqual(issues('admission: { minGap: 0 }'), ['admission.minGap: expected more than 0, received 0']);
});

test('delayCapacityMs must exceed delayTargetMs unless 0 (off)', () => {
  assert.deepEqual(issues('admission: { delayTargetMs: 50, delayCapacityMs: 40 }'), ['admission.delayCapacityMs: expected more than delayTargetMs (50) or 0 (off), received 40']);
  assert.equal(parseYaml(holder, 'admission: { delayTargetMs: 50, delayCapacityMs: 0 }', 'a.yaml').admission.delayCapacityMs, 0);
});
