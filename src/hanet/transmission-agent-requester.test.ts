import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../core/clock.js';
import type { HanetSiblingConfig } from '../config/agent-schema.js';
import type { TransmissionAgentMessage } from '../wire/transmission-agent.js';
import { TransmissionAgentRequester, RELEASE_REPEATS } from './transmission-agent-requester.js';

const S = '10.0.0.21';
const sib = (id: number, via = 'priv0'): HanetSiblingConfig => ({ id, address: `10.1.0.${id}:7400`, serviceAddress: `10.0.0.2${id}`, via, localAddress: '10.1.0.1' });

function harness(siblings = [sib(2), sib(3)]) {
  const clock = new FakeClock();
  const sent: string[] = [];
  const events: string[] = [];
  const linkDown = new Set<string>();
  const r = new TransmissionAgentRequester({
    address: S,
    siblings,
    requestIntervalMs: 10,
    keepaliveMs: 100,
    siblingTimeoutMs: 300,
    clock,
    linkGood: (iface) => !linkDown.has(iface),
    send: (s, kind) => sent.push(`${clock.now()} ${kind} ${s.id}`),
    attach: async (s) => void events.push(`attach ${s.id}`),
    onRelayed: (s) => events.push(`relayed ${s.id}`),
    onRefused: (s, reason) => events.push(`refused ${s.id} ${reason}`),
    onLost: (s) => events.push(`lost ${s.id}`),
    onIsolated: () => events.push('isolated'),
  });
  const msg = (host: number, kind: TransmissionAgentMessage['kind'], reason: TransmissionAgentMessage['reason'] = 'none'): TransmissionAgentMessage => ({
    kind,
    reason,
    host,
    seq: 0,
    timestamp: 0,
    address: S,
    nextHop: '10.1.0.1',
  });
  return { clock, sent, events, linkDown, r, msg };
}

test('asks at once, repeats every requestIntervalMs until acknowledged, then refreshes every keepaliveMs', () => {
  const h = harness();
  h.r.start();
  assert.deepEqual(h.sent, ['0 request 2']);
  assert.deepEqual(h.events, ['attach 2'], 'the default route points at the sibling before the answer');
  h.clock.advance(35);
  assert.deepEqual(h.sent, ['0 request 2', '10 request 2', '20 request 2', '30 request 2']);
  h.r.onMessage(h.msg(2, 'ack'));
  assert.equal(h.r.state, 'relayed');
  h.sent.length = 0;
  h.clock.advance(250);
  assert.deepEqual(h.sent, ['135 request 2', '235 request 2']);
  h.r.onMessage(h.msg(2, 'ack'));
  h.r.stop();
  assert.equal(h.sent.filter((s) => s.includes('release 2')).length, RELEASE_REPEATS);
  assert.equal(h.r.state, 'idle');
  assert.deepEqual(h.events, ['attach 2', 'relayed 2']);
});

test('a refusal moves on to the next sibling; all refusing is isolation, retried later', () => {
  const h = harness();
  h.r.start();
  h.r.onMessage(h.msg(2, 'refuse', 'no-public-link'));
  assert.deepEqual(h.events, ['attach 2', 'refused 2 no-public-link', 'attach 3']);
  h.r.onMessage(h.msg(3, 'refuse', 'no-public-link'));
  assert.equal(h.r.state, 'isolated');
  assert.deepEqual(h.events.slice(-2), ['refused 3 no-public-link', 'isolated']);
  h.sent.length = 0;
  h.clock.advance(300);
  assert.deepEqual(h.sent, ['300 request 2'], 'the round starts over after siblingTimeoutMs');
});

test('answers from another host, for another address, or while idle are ignored', () => {
  const h = harness();
  h.r.onMessage(h.msg(2, 'ack'));
  assert.equal(h.r.state, 'idle');
  h.r.start();
  h.r.onMessage(h.msg(3, 'ack'));
  h.r.onMessage({ ...h.msg(2, 'ack'), address: '10.0.0.99' });
  assert.equal(h.r.state, 'asking');
});

test('a sibling silent for siblingTimeoutMs while relaying is lost; the next one is asked', () => {
  const h = harness();
  h.r.start();
  h.r.onMessage(h.msg(2, 'ack'));
  h.clock.advance(400);
  assert.deepEqual(h.events, ['attach 2', 'relayed 2', 'lost 2', 'attach 3']);
  assert.equal(h.r.sibling?.id, 3);
});

test('siblings behind a private link that is not GOOD are skipped', () => {
  const h = harness([sib(2, 'priv0'), sib(3, 'priv1')]);
  h.linkDown.add('priv0');
  h.r.start();
  assert.deepEqual(h.sent, ['0 request 3']);
});
