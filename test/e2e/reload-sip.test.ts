/**
 * @module Live reload under SIP traffic (issue 14): sipp calls (INVITE..BYE, UDP) through a dispatcher
 * whose reload adds a backend and removes another while calls are up. No call is lost: calls pinned
 * to the removed backend finish on it (it drains), new calls go to the kept and the added backends.
 * The sessions API shows each call's flows (the RTP/RTCP its SDP announced) meanwhile.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { channels, type SessionEvent, type SessionRepinEvent } from '../../src/core/diagnostics.js';
import { ListenError } from '../../src/core/errors.js';
import type { Config } from '../../src/config/schema.js';
import { describeResult, freeSipPort, startUac } from '../helpers/sipp.js';
import { sipTestConfig, startSipDispatcher, type SipDispatcher } from '../helpers/sip-dispatcher.js';
import { collect, startUasPool, until } from '../helpers/sip-backends.js';

const UAC_TIMEOUT_S = 30;

async function startSip(t: TestContext, ports: number[]): Promise<{ d: SipDispatcher; config: Config }> {
  for (let attempt = 1; ; attempt++) {
    const opts = { backends: ports, admin: true, listen: `127.0.0.1:${await freeSipPort()}` };
    try {
      return { d: await startSipDispatcher(t, opts), config: sipTestConfig(opts) };
    } catch (err) {
      if (!(err instanceof ListenError) || attempt >= 5) throw err;
    }
  }
}

test('SIP: a reload adds b2 and removes b0 while sipp calls are up; no call is lost, b0 gets no new call', { timeout: 60_000 }, async (t) => {
  const CALLS = 60;
  const pool = await startUasPool(t, 3, { transport: 'udp' });
  // Started with b0 and b1 only; b2 runs, unknown to the dispatcher.
  const all = sipTestConfig({ backends: pool.map((b) => b.port) });
  const { d, config } = await startSip(t, [pool[0]!.port, pool[1]!.port]);
  const opened = collect<SessionEvent>(t, channels.sessionOpen);
  const repinned = collect<SessionRepinEvent>(t, channels.sessionRepin);
  // Calls of 1.5 s at 20 per second: ~30 up at any moment, many on b0 when it is removed.
  const uac = await startUac({ t, target: d.target, transport: 'udp', calls: CALLS, rate: 20, callLengthMs: 1500, timeoutS: UAC_TIMEOUT_S });
  await until(() => opened.length >= 20 && opened.some((e) => e.backend === 'b0'), () => `20 calls opened (${opened.length})`, 10_000);

  // The sessions API: each call's session and its signalling flow.
  const admin = `http://127.0.0.1:${d.dispatcher.adminAddress!.port}/api/v1`;
  const page = (await (await fetch(`${admin}/sessions?service=sip&backend=b0`)).json()) as {
    sessions: { key: string; backend: string; flows: { proto: string; role: string; src: string; dst: string }[] }[];
  };
  assert.ok(page.sessions.length > 0, 'calls up on b0');
  for (const s of page.sessions) {
    assert.equal(s.backend, 'b0');
    assert.ok(s.flows.length >= 1, `session ${s.key} lists its flows: ${JSON.stringify(s)}`);
    assert.ok(s.flows.every((f) => f.proto === 'udp'));
    // The media its SDP announced (RTP and RTCP), relayed through the session's backend.
    assert.ok(s.flows.some((f) => f.role === 'announced'), JSON.stringify(s));
  }
  const onB0 = page.sessions.length;

  const next: Config = { ...config, services: [{ ...config.services[0]!, backends: all.services[0]!.backends.filter((b) => b.id !== 'b0') }] };
  const mark = opened.length;
  const outcome = await d.dispatcher.reload(next);
  assert.equal(outcome.type, 'applied');
  if (outcome.type !== 'applied') return;
  assert.deepEqual(outcome.applied, [{ service: 'sip', added: ['b2'], removed: ['b0'], reweighted: [] }]);
  assert.deepEqual(outcome.restartRequired, []);

  const r = await uac.done;
  assert.equal(r.code, 0, describeResult(r));
  assert.equal(r.successful, CALLS, describeResult(r));
  assert.equal(r.failed, 0, describeResult(r));
  const after = opened.slice(mark);
  assert.ok(after.length > 0, 'calls were placed after the reload');
  assert.deepEqual(after.filter((e) => e.backend === 'b0'), [], 'no new call on the removed backend');
  assert.ok(after.some((e) => e.backend === 'b2'), 'the added backend takes calls');
  // sipp's uas answers a BYE of a call it never saw 200 OK, so success alone does not prove it: no
  // session moved, so every in-dialog message of the calls up on b0 (ACK, BYE) went to b0.
  assert.ok(onB0 > 0);
  assert.deepEqual(repinned, [], 'the calls up on b0 finished there (no re-pin)');
  const status = d.dispatcher.status().services[0]!;
  assert.deepEqual(status.backends.map((b) => b.id), ['b1', 'b2']);
});
