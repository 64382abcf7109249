import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FakeClock } from '../core/clock.js';
import type { HanetSiblingConfig } from '../config/agent-schema.js';
import type { TransmissionAgentMessage } from '../wire/transmission-agent.js';
import { ChangeJournal } from './change-journal.js';
import { FakeHostSystem } from './host-system.fake.js';
import { TransmissionAgentResponder } from './transmission-agent-responder.js';

const SIB: HanetSiblingConfig = { id: 1, address: '10.1.0.1:7400', serviceAddress: '10.0.0.21', via: 'priv0', localAddress: '10.1.0.2' };

function stateFile(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'hf-hanet-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return join(dir, 'state.json');
}

async function flush(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
}

function harness(t: TestContext) {
  const clock = new FakeClock();
  const sys = new FakeHostSystem(['pub0', 'priv0']);
  sys.sysctls.set('net.ipv4.ip_forward', '0');
  sys.sysctls.set('net.ipv4.neigh.pub0.proxy_delay', '80');
  const file = stateFile(t);
  const journal = new ChangeJournal(file, sys);
  const replies: string[] = [];
  const r = new TransmissionAgentResponder({
    siblings: [SIB],
    journal,
    sys,
    clock,
    siblingTimeoutMs: 400,
    garpCount: 3,
    routeProtocol: 218,
    reply: (s, kind, reason) => replies.push(`${kind} ${reason} ${s.id}`),
  });
  const request = (over: Partial<TransmissionAgentMessage> = {}): TransmissionAgentMessage => ({
    kind: 'request',
    reason: 'none',
    host: 1,
    seq: 0,
    timestamp: 0,
    address: '10.0.0.21',
    nextHop: '10.1.0.2',
    ...over,
  });
  return { clock, sys, file, journal, replies, r, request };
}

test('a request: forwarding on, host route via the private link, proxy ARP, gratuitous ARP, then ack (HANet §3.5)', async (t) => {
  const h = harness(t);
  h.r.setPublicInterface('pub0');
  h.r.onMessage(h.request());
  await flush();
  assert.deepEqual(h.replies, ['ack none 1']);
  assert.equal(h.sys.sysctls.get('net.ipv4.ip_forward'), '1');
  assert.equal(h.sys.sysctls.get('net.ipv4.neigh.pub0.proxy_delay'), '0');
  assert.deepEqual(h.sys.ipLog, ['route replace 10.0.0.21/32 via 10.1.0.2 dev priv0 proto 218', 'neigh replace proxy 10.0.0.21 dev pub0']);
  assert.deepEqual(h.sys.garps, ['pub0 10.0.0.21 x3']);
  assert.ok(existsSync(h.file), 'the changes are in the state file');
  assert.equal(JSON.parse(readFileSync(h.file, 'utf8')).entries.length, 4);
  // A repeated request is acknowledged without changing anything again.
  h.r.onMessage(h.request({ seq: 1 }));
  await flush();
  assert.deepEqual(h.replies, ['ack none 1', 'ack none 1']);
  assert.equal(h.sys.ipLog.length, 2);
  assert.deepEqual(h.r.relays(), [{ sibling: 1, address: '10.0.0.21', iface: 'pub0' }]);
});

test('release undoes every change, in reverse, and restores the sysctls', async (t) => {
  const h = harness(t);
  h.r.setPublicInterface('pub0');
  h.r.onMessage(h.request());
  await flush();
  h.r.onMessage(h.request({ kind: 'release' }));
  await flush();
  assert.deepEqual(h.sys.ipLog.slice(2), ['neigh del proxy 10.0.0.21 dev pub0', 'route del 10.0.0.21/32 via 10.1.0.2 dev priv0 proto 218']);
  assert.equal(h.sys.sysctls.get('net.ipv4.ip_forward'), '0');
  assert.equal(h.sys.sysctls.get('net.ipv4.neigh.pub0.proxy_delay'), '80');
  assert.equal(existsSync(h.file), false);
  assert.deepEqual(h.r.relays(), []);
});

test('a requester silent for siblingTimeoutMs: the relay is undone', async (t) => {
  const h = harness(t);
  h.r.setPublicInterface('pub0');
  h.r.onMessage(h.request());
  await flush();
  h.clock.advance(300);
  h.r.onMessage(h.request({ seq: 1 }));
  await flush();
  h.clock.advance(300);
  await flush();
  assert.equal(h.r.relays().length, 1, 'kept alive by the refresh');
  h.clock.advance(200);
  await flush();
  assert.deepEqual(h.r.relays(), []);
  assert.equal(h.r.counts().silent, 1);
});

test('refused and never acted upon: another address than the sibling\'s, or no GOOD public link here', async (t) => {
  const h = harness(t);
  h.r.onMessage(h.request());
  await flush();
  assert.deepEqual(h.replies, ['refuse no-public-link 1']);
  h.r.setPublicInterface('pub0');
  h.r.onMessage(h.request({ address: '10.0.0.99' }));
  await flush();
  assert.deepEqual(h.replies, ['refuse no-public-link 1', 'refuse not-allowed 1']);
  assert.deepEqual(h.sys.ipLog, []);
  assert.equal(h.sys.sysctls.get('net.ipv4.ip_forward'), '0');
  assert.equal(h.r.counts().refused, 2);
});

test('our own public link fails while relaying: undone, and the server is told', async (t) => {
  const h = harness(t);
  h.r.setPublicInterface('pub0');
  h.r.onMessage(h.request());
  await flush();
  h.r.setPublicInterface(null);
  await flush();
  assert.deepEqual(h.r.relays(), []);
  assert.deepEqual(h.replies, ['ack none 1', 'refuse no-public-link 1']);
});

test('crash recovery: a restart undoes what the state file lists', async (t) => {
  const h = harness(t);
  h.r.setPublicInterface('pub0');
  h.r.onMessage(h.request());
  await flush();
  // The process dies here: nothing undone. A new journal on the same file recovers.
  const sys2 = new FakeHostSystem(['pub0', 'priv0']);
  sys2.sysctls.set('net.ipv4.ip_forward', '1');
  const again = new ChangeJournal(h.file, sys2);
  assert.equal(await again.recover(), 4);
  assert.deepEqual(sys2.ipLog, ['neigh del proxy 10.0.0.21 dev pub0', 'route del 10.0.0.21/32 via 10.1.0.2 dev priv0 proto 218']);
  assert.equal(sys2.sysctls.get('net.ipv4.ip_forward'), '0');
  assert.equal(sys2.sysctls.get('net.ipv4.neigh.pub0.proxy_delay'), '80');
  assert.equal(existsSync(h.file), false);
  assert.equal(await again.recover(), 0, 'nothing left the second time');
});
