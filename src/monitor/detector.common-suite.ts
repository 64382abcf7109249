/**
 * @module The tests every failure detector must pass, run by each detector's own test file through
 * `runDetectorSuite(name, cfg)` (as the balancers share balancer.common-suite.ts). Detectors are
 * created through the registry, so the suite also checks that the name is registered. Time is plain
 * numbers: detectors never read a clock.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { detectorSchema } from '../config/schema.js';
import type { DetectorConfig } from '../config/schema.js';
import { createDetector, detectorNames } from './detector-registry.js';
import type { Detector, DetectorType, HeartbeatDetectorConfig, Verdict } from './detector.js';

const RANK: Record<Verdict, number> = { up: 0, suspect: 1, down: 2 };

/** A parsed detector configuration of type `type` with `over` applied. */
export function detectorConfig(type: DetectorType, over: Partial<DetectorConfig> = {}): HeartbeatDetectorConfig {
  return detectorSchema.parse({ type, ...over }) as HeartbeatDetectorConfig;
}

/** Deterministic jitter in [-1, 1) (a 32-bit LCG), so a failing run can be replayed. */
function jitter(seed: number): () => number {
  let x = seed >>> 0;
  return () => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return x / 2 ** 31 - 1;
  };
}

/** Heartbeats at start, start + I, ... (count of them); returns the time of the last one. */
function regular(detector: Detector, start: number, intervalMs: number, count: number): number {
  for (let i = 0; i < count; i++) detector.heartbeat(start + i * intervalMs);
  return start + (count - 1) * intervalMs;
}

/** Follows nextDeadline from `from` until it is infinite; returns the verdicts seen at each deadline. */
function walkDeadlines(detector: Detector, from: number): Array<{ at: number; verdict: Verdict }> {
  const steps: Array<{ at: number; verdict: Verdict }> = [];
  let now = from;
  for (let i = 0; i < 10; i++) {
    const next = detector.nextDeadline(now);
    if (next === Infinity) return steps;
    assert.ok(next > now, `nextDeadline(${now}) = ${next} is not after now`);
    now = next;
    steps.push({ at: now, verdict: detector.verdict(now) });
  }
  assert.fail('nextDeadline never reached Infinity within 10 steps');
}

export function runDetectorSuite(type: DetectorType, over: Partial<DetectorConfig> = {}): void {
  const cfg = detectorConfig(type, over);
  const I = cfg.intervalMs;
  const START = 1_000;

  describe(`detector contract: ${type} (intervalMs ${I}, n ${cfg.n})`, () => {
    test('is registered under its name', () => {
      assert.ok(detectorNames().includes(type));
      assert.equal(typeof createDetector(cfg, 0).verdict, 'function');
    });

    test('a regular heartbeat stream stays up, between and just before heartbeats', () => {
      const d = createDetector(cfg, START);
      for (let i = 0; i < 300; i++) {
        const t = START + i * I;
        if (i > 0) assert.equal(d.verdict(t), 'up', `just before heartbeat ${i}`);
        d.heartbeat(t);
        assert.equal(d.verdict(t), 'up', `at heartbeat ${i}`);
        assert.equal(d.verdict(t + I / 2), 'up', `between heartbeats ${i} and ${i + 1}`);
      }
    });

    test('a stream jittered by +-20% of the interval stays up', () => {
      const d = createDetector(cfg, START);
      const next = jitter(7);
      let t = START;
      d.heartbeat(t);
      for (let i = 0; i < 300; i++) {
        t += I * (1 + 0.2 * next());
        assert.equal(d.verdict(t), 'up', `heartbeat ${i} arriving at ${t}`);
        d.heartbeat(t);
      }
    });

    test('before the first heartbeat: suspect, then down n x intervalMs after creation; reset starts over', () => {
      const d = createDetector(cfg, START);
      assert.equal(d.verdict(START), 'suspect');
      assert.equal(d.nextDeadline(START), START + cfg.n * I);
      assert.equal(d.verdict(START + cfg.n * I - 0.001), 'suspect');
      assert.equal(d.verdict(START + cfg.n * I), 'down');
      assert.equal(d.nextDeadline(START + cfg.n * I), Infinity);

      d.heartbeat(START + 5 * I);
      assert.equal(d.verdict(START + 5 * I), 'up');
      const resetAt = START + 6 * I;
      d.reset(resetAt);
      assert.equal(d.verdict(resetAt), 'suspect', 'reset forgets the heartbeat');
      assert.equal(d.nextDeadline(resetAt), resetAt + cfg.n * I);
      assert.equal(d.verdict(resetAt + cfg.n * I), 'down');
    });

    test('silence ends in down, through deadlines that only worsen the verdict', () => {
      const d = createDetector(cfg, START);
      const last = regular(d, START, I, 50);
      const steps = walkDeadlines(d, last);
      assert.ok(steps.length >= 1);
      assert.equal(steps.at(-1)!.verdict, 'down');
      for (let i = 1; i < steps.length; i++) assert.ok(RANK[steps[i]!.verdict] > RANK[steps[i - 1]!.verdict]);
      assert.ok(steps.at(-1)!.at - last <= cfg.n * I, `down ${steps.at(-1)!.at - last} ms after the last heartbeat, more than n x I`);
      assert.equal(d.verdict(last + 1000 * I), 'down');
    });

    test('verdicts are monotone during silence', () => {
      const d = createDetector(cfg, START);
      const last = regular(d, START, I, 20);
      let worst = 0;
      for (let t = last; t <= last + 2 * cfg.n * I; t += I / 50) {
        const rank = RANK[d.verdict(t)];
        assert.ok(rank >= worst, `verdict improved at ${t} without a heartbeat`);
        worst = rank;
      }
      assert.equal(worst, RANK.down);
    });

    test('a heartbeat after down brings the verdict back up', () => {
      const d = createDetector(cfg, START);
      const last = regular(d, START, I, 10);
      const later = last + 10 * cfg.n * I;
      assert.equal(d.verdict(later), 'down');
      d.heartbeat(later);
      assert.equal(d.verdict(later), 'up');
      assert.ok(d.nextDeadline(later) > later);
      // And the next silence is detected as fast as before the outage.
      const steps = walkDeadlines(d, later);
      assert.ok(steps.at(-1)!.at - later <= cfg.n * I);
    });

    test('nextDeadline is after now and the verdict holds until it, worsening at it', () => {
      const d = createDetector(cfg, START);
      const next = jitter(11);
      let t = START;
      for (let i = 0; i < 40; i++) {
        t += I * (1 + 0.1 * next());
        d.heartbeat(t);
      }
      for (let now = t; now < t + 2 * cfg.n * I; now += I / 7) {
        const verdict = d.verdict(now);
        const deadline = d.nextDeadline(now);
        assert.ok(deadline > now, `nextDeadline(${now}) = ${deadline}`);
        if (deadline === Infinity) {
          assert.equal(verdict, 'down');
          continue;
        }
        // (When the deadline is a rounding error away, the points between are the deadline itself.)
        if (deadline - now > 1e-6) for (const f of [0.25, 0.5, 0.999]) assert.equal(d.verdict(now + f * (deadline - now)), verdict, `before the deadline ${deadline}`);
        assert.ok(RANK[d.verdict(deadline)] > RANK[verdict], `at the deadline ${deadline} the verdict worsens`);
      }
    });
  });
}
