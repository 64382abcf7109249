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

    test('starvation memory: a heartbeat flagged starved ending a silence of 6 intervals tolerates 9 from then on, until the memory expires; unflagged or short silences teach nothing', () => {
      const memory = 100 * I;
      const mk = (): Detector => createDetector({ ...cfg, starvationMemoryMs: memory }, 0);
      const [starved, stopped, short, shortPlain] = [mk(), mk(), mk(), mk()];
      const all = [starved, stopped, short, shortPlain];
      let t = START;
      for (let i = 0; i < 20; i++, t += I) for (const d of all) d.heartbeat(t);
      t += 5 * I; // the last regular one was at t - 6 I
      starved.heartbeat(t, true); // a starved agent: it waited on the run queue meanwhile
      stopped.heartbeat(t); // SIGCONT after a stop: late, no flag
      short.heartbeat(t - 4.5 * I, true); // flagged, but 1.5 intervals is only a late heartbeat
      short.heartbeat(t);
      shortPlain.heartbeat(t - 4.5 * I);
      shortPlain.heartbeat(t);
      t += I;
      for (const d of all) d.heartbeat(t);
      assert.notEqual(starved.verdict(t + 9 * I - 0.001), 'down', 'tolerates 1.5 x the starved gap');
      assert.equal(starved.verdict(t + 9 * I), 'down');
      assert.equal(stopped.verdict(t + 9 * I - 0.001), 'down', 'a stop teaches nothing');
      assert.equal(short.nextDeadline(t), shortPlain.nextDeadline(t), 'a short flagged gap teaches nothing');
      // The memory runs from the latest starved heartbeat: after it, the detector is as if never starved.
      const starvedAt = t - I;
      while (t < starvedAt + memory) {
        t += I;
        for (const d of all) d.heartbeat(t);
      }
      assert.equal(starved.nextDeadline(t + 1.5 * I), stopped.nextDeadline(t + 1.5 * I), 'forgotten after starvationMemoryMs');
      // reset() forgets it too; starvationMemoryMs 0 never learns.
      const again = mk();
      regular(again, START, I, 5);
      again.heartbeat(START + 10 * I, true);
      again.reset(START + 10 * I);
      again.heartbeat(START + 11 * I);
      const off = createDetector({ ...cfg, starvationMemoryMs: 0 }, 0);
      regular(off, START, I, 5);
      off.heartbeat(START + 10 * I, true);
      assert.equal(off.verdict(START + 10 * I + 9 * I - 0.001), 'down');
      const fresh = mk();
      fresh.heartbeat(START + 11 * I);
      assert.equal(again.nextDeadline(START + 11 * I), fresh.nextDeadline(START + 11 * I), 'reset forgets the starvation');
    });

    test('starvation memory: the remembered gap is capped at 100 intervals', () => {
      const d = createDetector({ ...cfg, starvationMemoryMs: 1_000 * I }, 0);
      regular(d, START, I, 5);
      const t = START + 4 * I + 500 * I;
      d.heartbeat(t, true);
      assert.equal(d.verdict(t + 150 * I - 0.001) === 'down', false);
      assert.equal(d.verdict(t + 150 * I), 'down');
    });
  });
}
