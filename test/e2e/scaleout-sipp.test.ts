/**
 * @module A dispatcher SIGKILLed under sipp load (issue 20): three `holdfast dispatcher` processes on a
 * real etcd behind the lab's L4 spreader, Maglev over three SIP backends that answer per Via; sipp
 * places calls; one dispatcher is SIGKILLed mid-run. Its lease expires, the spreader sends its flows
 * to the others, which map each Call-ID to the backend that has the call. Asserted: no call started
 * after the kill fails, and the calls that failed are at most the dead dispatcher's share of the
 * active ones (the loss figure itself is bench/scale-out's). Skipped with the reason without etcd or sipp.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runKill } from '../../bench/scale-out.js';
import { which } from '../../bench/lib/procs.js';
import { EtcdServer, etcdMissing } from '../helpers/etcd.js';

const skip = etcdMissing() ?? (which('sipp') ? false : 'sipp is not installed (Debian sip-tester)');

test('scale-out: one of three dispatchers SIGKILLed under sipp load', { skip, timeout: 120_000 }, async (t) => {
  const etcd = await EtcdServer.start();
  t.after(() => etcd.stop());
  const lines: string[] = [];
  const row = await runKill({ rate: 20, seconds: 5, callMs: 1500, counts: [3] }, etcd, (l) => lines.push(l), 'via');
  t.diagnostic(lines.join('\n'));
  assert.ok(row.activeAtKill > 0, 'no call was active at the kill');
  assert.equal(row.failedAfter, 0, 'a call started after the kill failed');
  assert.ok(row.failedActive <= Math.ceil(row.activeAtKill / 2), `${row.failedActive} of ${row.activeAtKill} active calls failed`);
  assert.ok(row.successful >= row.calls - row.failedActive, `${row.successful} of ${row.calls} calls ok`);
});
