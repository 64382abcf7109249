import { test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../core/clock.js';
import { channels } from '../core/diagnostics.js';
import type { AdmissionMoveEvent, AdmissionRefuseEvent, AdmissionSampleEvent, AdmissionThresholdEvent } from '../core/diagnostics.js';
import { prng } from '../../bench/lib/prng.js';
import { admissionSchema, type AdmissionConfig } from './admission-schema.js';
import { ADMIT_ALL, AdmissionController, createAdmission } from './admission-controller.js';

const EPS = 1e-12;

function near(actual: number, expected: number, what: string): void {
  assert.ok(Math.abs(actual - expected) < EPS, `${what}: expected ${expected}, got ${actual}`);
}

/** T1 0.5, T2 0.7, T3 0.8, C 0.9; T_0 1000 ms, floor 50 ms; SARA's unit gains. */
const CFG: AdmissionConfig = admissionSchema.parse({
  enabled: true,
  t1: 0.5,
  t2: 0.7,
  t3: 0.8,
  c: 0.9,
  intervalMs: 1000,
  minIntervalMs: 50,
  minGap: 0.01,
  retryAfterS: 7,
});

/** A controller of its own service on fake time, with every event it publishes collected. */
function setup(t: TestContext, service: string, random: () => number = Math.random) {
  const clock = new FakeClock(10_000);
  const ac = new AdmissionController(service, CFG, clock, random);
  const crossings: AdmissionThresholdEvent[] = [];
  const moves: AdmissionMoveEvent[] = [];
  const refusals: AdmissionRefuseEvent[] = [];
  const onCross = (m: unknown): void => {
    if ((m as AdmissionThresholdEvent).service === service) crossings.push(m as AdmissionThresholdEvent);
  };
  const onMove = (m: unknown): void => {
    if ((m as AdmissionMoveEvent).service === service) moves.push(m as AdmissionMoveEvent);
  };
  const onRefuse = (m: unknown): void => {
    if ((m as AdmissionRefuseEvent).service === service) refusals.push(m as AdmissionRefuseEvent);
  };
  channels.admissionThreshold.subscribe(onCross);
  channels.admissionMove.subscribe(onMove);
  channels.admissionRefuse.subscribe(onRefuse);
  t.after(() => {
    ac.close();
    channels.admissionThreshold.unsubscribe(onCross);
    channels.admissionMove.unsubscribe(onMove);
    channels.admissionRefuse.unsubscribe(onRefuse);
  });
  const moveList = (): string[] => moves.map((m) => `${m.threshold} ${m.from.toFixed(8)}->${m.to.toFixed(8)} ${m.reason}`);
  return { clock, ac, crossings, moves, refusals, moveList };
}

test('below T1 everything is admitted without drawing', (t) => {
  let draws = 0;
  const { ac, crossings } = setup(t, 'adm-idle', () => {
    draws++;
    return 0;
  });
  ac.update({ cluster: 0.4, dispatcher: 0.5 }); // x = 0.5 = T1
  for (let i = 0; i < 100; i++) {
    assert.equal(ac.decide('new').type, 'admit');
    assert.equal(ac.decide('established').type, 'admit');
  }
  assert.equal(draws, 0);
  assert.equal(crossings.length, 0);
  assert.equal(ac.status().band, 'below-t1');
});

test('a unit is dropped iff the draw is under p; p = 1 refuses without drawing', (t) => {
  let next = 0;
  let draws = 0;
  const { ac } = setup(t, 'adm-draw', () => {
    draws++;
    return next;
  });
  ac.update({ cluster: 0.6, dispatcher: 0 }); // p_new = (0.6 - 0.5) / 0.2 = 0.5
  near(ac.status().pNew, 0.5, 'p_new');
  next = 0.49;
  assert.deepEqual(ac.decide('new'), { type: 'refuse', retryAfterS: 7 });
  next = 0.5;
  assert.deepEqual(ac.decide('new'), { type: 'admit' });
  assert.equal(ac.decide('established').type, 'admit'); // p_est = 0: no draw
  assert.equal(draws, 2);
  ac.update({ cluster: 0.75, dispatcher: 0 }); // T2 < x <= T3
  assert.equal(ac.decide('new').type, 'refuse');
  assert.equal(ac.decide('established').type, 'admit');
  ac.update({ cluster: 0.85, dispatcher: 0.2 }); // p_est = 0.05 / 0.1 = 0.5
  next = 0.49;
  assert.equal(ac.decide('established').type, 'degrade');
  next = 0.5;
  assert.equal(ac.decide('established').type, 'admit');
  ac.update({ cluster: 0.2, dispatcher: 0.9 }); // x = C: the dispatcher's own load counts
  const before = draws;
  assert.equal(ac.decide('new').type, 'refuse');
  assert.equal(ac.decide('established').type, 'degrade');
  assert.equal(draws, before);
});

test('verdicts are shared frozen objects (decide allocates nothing)', (t) => {
  const { ac } = setup(t, 'adm-frozen');
  ac.update({ cluster: 0.95, dispatcher: 0 });
  const r1 = ac.decide('new');
  const r2 = ac.decide('new');
  assert.equal(r1, r2);
  assert.ok(Object.isFrozen(r1));
  assert.equal(ac.decide('established'), ac.decide('established'));
  assert.ok(Object.isFrozen(ac.decide('established')));
  ac.update({ cluster: 0.1, dispatcher: 0 });
  assert.equal(ac.decide('new'), ac.decide('established'));
  assert.ok(Object.isFrozen(ac.decide('new')));
});

test('decision frequencies over many seeded draws lie within binomial bounds', (t) => {
  const { ac } = setup(t, 'adm-freq', prng(12345));
  const N = 100_000;
  const count = (kind: 'new' | 'established', verdict: string): number => {
    let n = 0;
    for (let i = 0; i < N; i++) if (ac.decide(kind).type === verdict) n++;
    return n;
  };
  // Within 5 standard deviations sqrt(N p (1 - p)) of N p.
  const within = (n: number, p: number, what: string): void => {
    const sd = Math.sqrt(N * p * (1 - p));
    assert.ok(Math.abs(n - N * p) <= 5 * sd, `${what}: ${n} refused of ${N}, expected ${N * p} ± ${5 * sd}`);
  };
  ac.update({ cluster: 0.55, dispatcher: 0 }); // p_new = 0.05 / 0.2 = 0.25
  within(count('new', 'refuse'), 0.25, 'x 0.55 new');
  assert.equal(count('established', 'degrade'), 0);
  ac.update({ cluster: 0.65, dispatcher: 0 }); // p_new = 0.15 / 0.2 = 0.75
  within(count('new', 'refuse'), 0.75, 'x 0.65 new');
  ac.update({ cluster: 0.82, dispatcher: 0 }); // p_est = 0.02 / 0.1 = 0.2
  assert.equal(count('new', 'refuse'), N);
  within(count('established', 'degrade'), 0.2, 'x 0.82 established');
  ac.update({ cluster: 0.88, dispatcher: 0 }); // p_est = 0.08 / 0.1 = 0.8
  within(count('established', 'degrade'), 0.8, 'x 0.88 established');
});

test('eq. 3 on fake time: the period shrinks by (1 - p) each tick while T1 < x <= T2 (nothing moves)', (t) => {
  const { clock, ac, moves, crossings } = setup(t, 'adm-period');
  ac.update({ cluster: 0.6, dispatcher: 0 }); // p_new 0.5
  assert.deepEqual(
    crossings.map((c) => `${c.from}->${c.to}`),
    ['below-t1->t1-t2'],
  );
  assert.equal(ac.status().intervalMs, 1000);
  clock.advance(999);
  assert.equal(ac.status().intervalMs, 1000);
  clock.advance(1); // tick at 1000: T = 0.5 * 1000
  assert.equal(ac.status().intervalMs, 500);
  clock.advance(500); // 250
  clock.advance(250); // 125
  assert.equal(ac.status().intervalMs, 125);
  clock.advance(125); // 62.5
  assert.equal(ac.status().intervalMs, 62.5);
  clock.advance(62.5); // 31.25 → floor 50
  assert.equal(ac.status().intervalMs, 50);
  clock.advance(500); // ten ticks at the floor
  assert.equal(ac.status().intervalMs, 50);
  assert.equal(moves.length, 0, 'x under T2: eq. 4 moves nothing');
  ac.update({ cluster: 0.4, dispatcher: 0 });
  assert.equal(ac.status().intervalMs, 1000, 'reset to T_0 below T1');
  assert.equal(crossings.at(-1)!.to, 'below-t1');
});

test('eq. 4 on fake time: T2 and T3 move every period under persistent overload, then reset below T1', (t) => {
  const { clock, ac, moves, crossings, moveList } = setup(t, 'adm-moves');
  ac.update({ cluster: 0.3, dispatcher: 0.85 }); // x = 0.85, band t3-c, p_new 1, p_est 0.5
  assert.equal(ac.status().band, 't3-c');
  near(ac.status().pEstablished, 0.5, 'p_est before any move');
  assert.deepEqual(crossings.map((c) => `${c.from}->${c.to}`), ['below-t1->t3-c']);
  assert.equal(crossings[0]!.load, 0.85);

  clock.advance(999);
  assert.equal(moves.length, 0, 'no move before T_0');
  clock.advance(1);
  // Tick 1 (t = 1000): T2 0.7 - 0.15 = 0.55, T3 0.8 * 0.95 = 0.76; p_new was 1: next period 50 ms.
  assert.deepEqual(moveList(), ['t2 0.70000000->0.55000000 move', 't3 0.80000000->0.76000000 move']);
  assert.equal(ac.status().intervalMs, 50);
  // p_est = (0.85 - 0.76) / (0.9 - 0.76) = 0.09 / 0.14.
  near(ac.status().pEstablished, 0.09 / 0.14, 'p_est after tick 1');
  clock.advance(50);
  // Tick 2: T2 0.55 - 0.3 → floor 0.51; T3 0.76 * (1 - 0.09) = 0.6916.
  near(ac.thresholds.t2, 0.51, 'T2 tick 2');
  near(ac.thresholds.t3, 0.6916, 'T3 tick 2');
  clock.advance(50);
  // Tick 3: T2 at its floor (no event); T3 0.6916 * 0.8416 = 0.58205056.
  near(ac.thresholds.t3, 0.58205056, 'T3 tick 3');
  clock.advance(50);
  // Tick 4: T3 would be 0.426..., floor T2 + minGap = 0.52.
  near(ac.thresholds.t3, 0.52, 'T3 tick 4');
  clock.advance(500);
  assert.deepEqual(moveList(), [
    't2 0.70000000->0.55000000 move',
    't3 0.80000000->0.76000000 move',
    't2 0.55000000->0.51000000 move',
    't3 0.76000000->0.69160000 move',
    't3 0.69160000->0.58205056 move',
    't3 0.58205056->0.52000000 move',
  ]);
  for (const m of moves) assert.equal(m.load, 0.85);
  assert.equal(crossings.length, 1, 'moves keep x in its band');

  // The load falls to 0.55: with the initial thresholds that would be T1 < x <= T2 (p_new 0.25),
  // but T3 is now 0.52: still t3-c, p_est = (0.55 - 0.52) / (0.9 - 0.52) = 0.03 / 0.38.
  ac.update({ cluster: 0.55, dispatcher: 0.1 });
  assert.equal(ac.status().band, 't3-c');
  near(ac.status().pEstablished, 0.03 / 0.38, 'p_est on lowered T3');
  assert.equal(ac.status().pNew, 1);

  // At T1: both thresholds reset, the timer stops.
  ac.update({ cluster: 0.5, dispatcher: 0.1 });
  assert.deepEqual(moveList().slice(6), ['t2 0.51000000->0.70000000 reset', 't3 0.52000000->0.80000000 reset']);
  assert.deepEqual(ac.thresholds, { t1: 0.5, t2: 0.7, t3: 0.8, c: 0.9 });
  assert.deepEqual(crossings.map((c) => `${c.from}->${c.to}`), ['below-t1->t3-c', 't3-c->below-t1']);
  assert.equal(crossings[1]!.t2, 0.7, 'crossing carries the thresholds after the reset');
  assert.equal(ac.status().intervalMs, 1000);
  clock.advance(10_000);
  assert.equal(moves.length, 8, 'no tick below T1');

  // Back above T1: the loop starts again from T_0 on the initial thresholds.
  ac.update({ cluster: 0.75, dispatcher: 0 });
  clock.advance(1000);
  assert.deepEqual(moveList().slice(8), ['t2 0.70000000->0.65000000 move']);
});

test('every band change is a crossing event, in both directions', (t) => {
  const { ac, crossings } = setup(t, 'adm-cross');
  for (const x of [0.3, 0.6, 0.65, 0.75, 0.85, 0.9, 1, 0.82, 0.7, 0.5]) ac.update({ cluster: x, dispatcher: 0 });
  assert.deepEqual(
    crossings.map((c) => `${c.from}->${c.to}@${c.load}`),
    [
      'below-t1->t1-t2@0.6',
      't1-t2->t2-t3@0.75',
      't2-t3->t3-c@0.85',
      't3-c->at-c@0.9',
      'at-c->t3-c@0.82',
      't3-c->t1-t2@0.7',
      't1-t2->below-t1@0.5',
    ],
  );
});

test('refusals are published with their band, once per refused unit', (t) => {
  const { ac, refusals } = setup(t, 'adm-refuse-events', () => 0);
  ac.update({ cluster: 0.6, dispatcher: 0 });
  ac.decide('new');
  ac.decide('established');
  ac.update({ cluster: 0.95, dispatcher: 0 });
  ac.decide('new');
  ac.decide('established');
  assert.deepEqual(
    refusals.map((r) => ({ ...r })),
    [
      { service: 'adm-refuse-events', kind: 'new', verdict: 'refuse', band: 't1-t2' },
      { service: 'adm-refuse-events', kind: 'new', verdict: 'refuse', band: 'at-c' },
      { service: 'adm-refuse-events', kind: 'established', verdict: 'degrade', band: 'at-c' },
    ],
  );
  assert.equal(refusals[1], refusals[1], 'shared');
  assert.ok(Object.isFrozen(refusals[0]));
});

test('bad estimates: NaN is ignored, values outside [0, 1] are clamped', (t) => {
  const { ac } = setup(t, 'adm-bad');
  ac.update({ cluster: 0.6, dispatcher: 0 });
  ac.update({ cluster: Number.NaN, dispatcher: 0.2 });
  assert.equal(ac.status().load, 0.6);
  ac.update({ cluster: 7, dispatcher: -3 });
  assert.equal(ac.status().load, 1);
  assert.equal(ac.status().band, 'at-c');
  ac.update({ cluster: -1, dispatcher: -2 });
  assert.equal(ac.status().load, 0);
});

test('close stops the loop and freezes the state', (t) => {
  const { clock, ac, moves } = setup(t, 'adm-close');
  ac.update({ cluster: 0.85, dispatcher: 0 });
  ac.close();
  clock.advance(5000);
  assert.equal(moves.length, 0);
  ac.update({ cluster: 0.1, dispatcher: 0 });
  assert.equal(ac.status().load, 0.85);
});

test('disabled admission admits everything', (t) => {
  const clock = new FakeClock();
  const off = createAdmission('adm-off', admissionSchema.parse({}), clock);
  assert.equal(off, ADMIT_ALL);
  off.update({ cluster: 1, dispatcher: 1 });
  assert.equal(off.decide('new').type, 'admit');
  assert.equal(off.decide('established').type, 'admit');
  assert.equal(off.status().enabled, false);
  const on = createAdmission('adm-on', CFG, clock);
  t.after(() => on.close());
  assert.ok(on instanceof AdmissionController);
  on.update({ cluster: 1, dispatcher: 1 });
  assert.equal(on.decide('new').type, 'refuse');
});

test('every update is a sample event with both inputs, the band and the drop probabilities', (t) => {
  const { ac } = setup(t, 'adm-sample');
  const samples: AdmissionSampleEvent[] = [];
  const onSample = (m: unknown): void => {
    if ((m as AdmissionSampleEvent).service === 'adm-sample') samples.push(m as AdmissionSampleEvent);
  };
  channels.admissionSample.subscribe(onSample);
  t.after(() => channels.admissionSample.unsubscribe(onSample));
  ac.update({ cluster: 0.6, dispatcher: 0.2 });
  ac.update({ cluster: 0.1, dispatcher: 0.75 });
  // CFG: T1 0.5, T2 0.7, T3 0.8, C 0.9. x = 0.6: p_new = (0.6 - 0.5) / 0.2 = 0.5. x = 0.75 (l wins): p_new 1, p_est 0.
  assert.deepEqual(
    samples.map((s) => [s.dispatcher, s.cluster, s.load, s.band, s.t2, s.t3, Math.round(s.pNew * 1e9) / 1e9, s.pEstablished]),
    [
      [0.2, 0.6, 0.6, 't1-t2', 0.7, 0.8, 0.5, 0],
      [0.75, 0.1, 0.75, 't2-t3', 0.7, 0.8, 1, 0],
    ],
  );
});

test('a queue controller\'s newDrop replaces eq. 2\'s new row on l_c; eq. 2 still applies to l and to established traffic', (t) => {
  const { ac } = setup(t, 'adm-queue');
  const samples: AdmissionSampleEvent[] = [];
  const onSample = (m: unknown): void => {
    if ((m as AdmissionSampleEvent).service === 'adm-queue') samples.push(m as AdmissionSampleEvent);
  };
  channels.admissionSample.subscribe(onSample);
  t.after(() => channels.admissionSample.unsubscribe(onSample));
  // x = max(0.1, 0.75) = 0.75: eq. 2 would refuse every new session (above T2 0.7); the queue says 0.2.
  ac.update({ cluster: 0.75, dispatcher: 0.1, newDrop: 0.2, utilisation: 1, delayMs: 140 });
  near(ac.status().pNew, 0.2, 'pNew from the queue controller');
  assert.equal(ac.status().pEstablished, 0, 'x 0.75 under T3 0.8');
  assert.equal(ac.status().band, 't2-t3');
  // l = 0.6: eq. 2 at l gives (0.6 - 0.5) / (0.7 - 0.5) = 0.5, above the queue's 0.2.
  ac.update({ cluster: 0.75, dispatcher: 0.6, newDrop: 0.2 });
  near(ac.status().pNew, 0.5, 'the dispatcher\'s own load');
  // x = 0.85: established traffic dropped with (0.85 - 0.8) / (0.9 - 0.8) = 0.5 whatever the queue says.
  ac.update({ cluster: 0.85, dispatcher: 0, newDrop: 0 });
  assert.equal(ac.status().pNew, 0);
  near(ac.status().pEstablished, 0.5, 'eq. 2 established row');
  // Without newDrop, eq. 2 at x again.
  ac.update({ cluster: 0.6, dispatcher: 0 });
  near(ac.status().pNew, 0.5, 'eq. 2 new row at 0.6');
  assert.deepEqual(
    samples.map((s) => [s.queueDrop, s.utilisation, s.delayMs]),
    [
      [0.2, 1, 140],
      [0.2, undefined, undefined],
      [0, undefined, undefined],
      [undefined, undefined, undefined],
    ],
  );
});
