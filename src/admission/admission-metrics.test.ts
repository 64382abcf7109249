import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../core/clock.js';
import { createMetrics } from '../admin/metrics.js';
import type { StatusSnapshot } from '../admin/status.js';
import { admissionSchema } from './admission-schema.js';
import { AdmissionController } from './admission-controller.js';

const emptyStatus = (): StatusSnapshot => ({ version: 't', pid: 1, startedAt: 0, services: [] });

/** The sample lines of the metric family `name` for service `service`. */
function samples(text: string, name: string, service: string): string[] {
  return text
    .split('\n')
    .filter((l) => (l.startsWith(`${name}{`) || l.startsWith(`${name} `)) && l.includes(`service="${service}"`));
}

test('SA2C refusals, crossings, moves, thresholds and band become holdfast_admission_* metrics', async (t) => {
  const m = createMetrics(emptyStatus);
  t.after(() => m.close());
  const clock = new FakeClock();
  const cfg = admissionSchema.parse({ enabled: true, t1: 0.5, t2: 0.7, t3: 0.8, c: 0.9, intervalMs: 1000 });
  const ac = new AdmissionController('adm-metrics', cfg, clock, () => 0);
  t.after(() => ac.close());

  ac.update({ cluster: 0.6, dispatcher: 0 }); // crossing into t1-t2
  for (let i = 0; i < 3; i++) ac.decide('new'); // the draw 0 is under p_new 0.5: 3 refusals
  ac.decide('established'); // admitted
  ac.update({ cluster: 0.85, dispatcher: 0 }); // crossing into t3-c
  ac.decide('established'); // 0 < p_est 0.5: degraded
  clock.advance(1000); // one tick: T2 0.7 → 0.55, T3 0.8 → 0.76
  ac.update({ cluster: 0.2, dispatcher: 0 }); // reset of both, crossing into below-t1

  const text = await m.registry.metrics();
  const s = (name: string): string[] => samples(text, name, 'adm-metrics');
  assert.deepEqual(s('holdfast_admission_rejected_total'), [
    'holdfast_admission_rejected_total{service="adm-metrics",verdict="refuse"} 3',
    'holdfast_admission_rejected_total{service="adm-metrics",verdict="degrade"} 1',
  ]);
  assert.deepEqual(s('holdfast_admission_crossings_total'), [
    'holdfast_admission_crossings_total{service="adm-metrics",band="t1-t2"} 1',
    'holdfast_admission_crossings_total{service="adm-metrics",band="t3-c"} 1',
    'holdfast_admission_crossings_total{service="adm-metrics",band="below-t1"} 1',
  ]);
  assert.deepEqual(s('holdfast_admission_moves_total'), [
    'holdfast_admission_moves_total{service="adm-metrics",threshold="t2",reason="move"} 1',
    'holdfast_admission_moves_total{service="adm-metrics",threshold="t3",reason="move"} 1',
    'holdfast_admission_moves_total{service="adm-metrics",threshold="t2",reason="reset"} 1',
    'holdfast_admission_moves_total{service="adm-metrics",threshold="t3",reason="reset"} 1',
  ]);
  assert.deepEqual(s('holdfast_admission_threshold'), [
    'holdfast_admission_threshold{service="adm-metrics",threshold="t1"} 0.5',
    'holdfast_admission_threshold{service="adm-metrics",threshold="t2"} 0.7',
    'holdfast_admission_threshold{service="adm-metrics",threshold="t3"} 0.8',
    'holdfast_admission_threshold{service="adm-metrics",threshold="c"} 0.9',
  ]);
  assert.deepEqual(s('holdfast_admission_band'), [
    'holdfast_admission_band{service="adm-metrics",band="below-t1"} 1',
    'holdfast_admission_band{service="adm-metrics",band="t1-t2"} 0',
    'holdfast_admission_band{service="adm-metrics",band="t2-t3"} 0',
    'holdfast_admission_band{service="adm-metrics",band="t3-c"} 0',
    'holdfast_admission_band{service="adm-metrics",band="at-c"} 0',
  ]);
});

test('the threshold gauge follows moves between crossings', async (t) => {
  const m = createMetrics(emptyStatus);
  t.after(() => m.close());
  const clock = new FakeClock();
  const cfg = admissionSchema.parse({ enabled: true, t1: 0.5, t2: 0.7, t3: 0.8, c: 0.9, intervalMs: 1000 });
  const ac = new AdmissionController('adm-metrics-move', cfg, clock, () => 0);
  t.after(() => ac.close());
  ac.update({ cluster: 0.75, dispatcher: 0 });
  clock.advance(1000); // T2 0.7 - 0.05 = 0.65; T3 untouched (x under it)
  const text = await m.registry.metrics();
  const t2 = samples(text, 'holdfast_admission_threshold', 'adm-metrics-move').find((l) => l.includes('threshold="t2"'))!;
  const value = Number(t2.split(' ').at(-1));
  assert.ok(Math.abs(value - 0.65) < 1e-12, t2);
  assert.deepEqual(
    samples(text, 'holdfast_admission_band', 'adm-metrics-move').filter((l) => l.endsWith(' 1')),
    ['holdfast_admission_band{service="adm-metrics-move",band="t2-t3"} 1'],
  );
});
