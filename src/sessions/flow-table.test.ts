import { test } from 'node:test';
import assert from 'node:assert/strict';
import { prng } from '../../bench/lib/prng.js';
import { FakeClock } from '../core/clock.js';
import {
  FLOW_INITIAL_SLOTS,
  FlowTable,
  INTERN_IDLE_MAX,
  NO_FLOW,
  PROTO_TCP,
  PROTO_UDP,
  addressKey,
  addressOf,
  internedAddressCount,
  pinAddress,
  type FlowHandle,
  type FlowTableOptions,
} from './flow-table.js';
import { NO_SESSION } from './session-table.js';

const CLIENT = 0x0a000001; // 10.0.0.1
const SERVICE = 0x7f000001; // 127.0.0.1

function table(maxFlows: number, timeoutMs = 1000, extra: Partial<FlowTableOptions> = {}): { flows: FlowTable; clock: FakeClock } {
  const clock = new FakeClock(5000);
  return { flows: new FlowTable({ service: 't', maxFlows, timeoutMs, clock, ...extra }), clock };
}

test('addressKey: dotted quads are their u32 value; IPv6 and class E are interned in 240.0.0.0/4', () => {
  assert.equal(addressKey('1.2.3.4'), 0x01020304);
  assert.equal(addressKey('127.0.0.1'), 0x7f000001);
  assert.equal(addressKey('255.255.255.255') >= 0xf0000000, true); // class E: interned, not 0xffffffff
  assert.equal(addressKey('239.255.255.255'), 0xefffffff);
  assert.equal(addressKey('0.0.0.0'), 0);
  assert.equal(addressKey(''), -1);
  const v6 = addressKey('::1');
  assert.ok(v6 >= 0xf0000000 && v6 <= 0xffffffff, `::1 → ${v6}`);
  assert.equal(addressKey('::1'), v6);
  assert.notEqual(addressKey('::2'), v6);
  assert.equal(addressOf(v6), '::1');
  assert.equal(addressOf(0x01020304), '1.2.3.4');
  assert.equal(addressOf(addressKey('240.0.0.1')), '240.0.0.1');
  assert.notEqual(addressKey('240.0.0.1'), 0xf0000001);
  // Not dotted quads: interned as text, never parsed to a wrong value.
  for (const s of ['1.2.3', '1.2.3.4.5', '256.1.1.1', '1..2.3', '1.2.3.4 ', 'a.b.c.d', '1.2.3.1000', '.1.2.3']) {
    const k = addressKey(s);
    assert.ok(k >= 0xf0000000, `${s} → ${k}`);
    assert.equal(addressOf(k), s);
  }
});

test('lifecycle: new → established → inactive at exactly the timeout → purged at exactly twice the timeout', () => {
  const { flows, clock } = table(64, 1000);
  const h = flows.insert(CLIENT, 40000, SERVICE, 5060, PROTO_UDP, 'signalling');
  assert.notEqual(h, NO_FLOW);
  assert.equal(flows.size, 1);
  assert.equal(flows.status(h), 'new');
  assert.equal(flows.role(h), 'signalling');
  assert.equal(flows.lookup(CLIENT, 40000, SERVICE, 5060, PROTO_UDP), h);
  assert.equal(flows.lookup(CLIENT, 40000, SERVICE, 5060, PROTO_TCP), NO_FLOW);
  assert.equal(flows.lookup(CLIENT, 40001, SERVICE, 5060, PROTO_UDP), NO_FLOW);
  assert.deepEqual(
    [flows.srcIp(h), flows.srcPort(h), flows.dstIp(h), flows.dstPort(h), flows.proto(h), flows.timeoutMs(h), flows.lastSeen(h)],
    [CLIENT, 40000, SERVICE, 5060, PROTO_UDP, 1000, 5000],
  );
  const purgedSeen: [FlowHandle, number][] = [];
  flows.onPurge((p) => purgedSeen.push([p, flows.srcPort(p)]));

  clock.advance(400); // t = 5400: a datagram
  flows.seen(h);
  assert.equal(flows.status(h), 'established');
  assert.equal(flows.lastSeen(h), 5400);
  clock.advance(999); // idle 999 ms
  assert.equal(flows.status(h), 'established');
  assert.equal(flows.sweep(), 0);
  clock.advance(1); // idle 1000 ms = the timeout: inactive, before any sweep
  assert.equal(flows.status(h), 'inactive');
  assert.equal(flows.sweep(), 0);
  clock.advance(998); // idle 1998 ms
  assert.equal(flows.sweep(), 0);
  clock.advance(1); // idle 1999 ms = 2 × timeout − 1: still there
  assert.equal(flows.sweep(), 0);
  assert.equal(flows.lookup(CLIENT, 40000, SERVICE, 5060, PROTO_UDP), h);
  assert.equal(flows.status(h), 'inactive');
  assert.deepEqual(purgedSeen, []);
  clock.advance(1); // idle 2000 ms = 2 × timeout: purged, the listener still sees the flow
  assert.equal(flows.sweep(), 1);
  assert.deepEqual(purgedSeen, [[h, 40000]]);
  assert.equal(flows.lookup(CLIENT, 40000, SERVICE, 5060, PROTO_UDP), NO_FLOW);
  assert.equal(flows.size, 0);
  assert.equal(flows.has(h), false);
});

test('an inactive flow revives on a datagram; per-flow timeouts; sweep of a flow never seen', () => {
  const { flows, clock } = table(64, 1000);
  const a = flows.insert(CLIENT, 1, SERVICE, 5060, PROTO_UDP, 'signalling');
  const b = flows.insert(CLIENT, 2, SERVICE, 5060, PROTO_UDP, 'signalling', NO_SESSION, 200);
  clock.advance(399);
  assert.equal(flows.sweep(), 0);
  assert.equal(flows.status(b), 'inactive');
  clock.advance(1); // b: idle 400 = 2 × 200
  assert.equal(flows.sweep(), 1);
  assert.equal(flows.has(b), false);
  clock.advance(700); // a: idle 1100, never seen since insert
  assert.equal(flows.status(a), 'inactive');
  flows.seen(a);
  assert.equal(flows.status(a), 'established');
  clock.advance(1999);
  assert.equal(flows.sweep(), 0);
  clock.advance(1);
  assert.equal(flows.sweep(), 1);
  assert.equal(flows.size, 0);
});

test('announced flows become secondary on their first datagram; other roles keep theirs', () => {
  const { flows } = table(64);
  const ann = flows.insert(CLIENT, 20000, SERVICE, 30000, PROTO_UDP, 'announced');
  const sig = flows.insert(CLIENT, 5060, SERVICE, 5060, PROTO_UDP, 'signalling');
  const sec = flows.insert(CLIENT, 20001, SERVICE, 30001, PROTO_UDP, 'secondary');
  assert.deepEqual([flows.role(ann), flows.status(ann)], ['announced', 'new']);
  flows.seen(ann);
  flows.seen(sig);
  flows.seen(sec);
  assert.deepEqual([flows.role(ann), flows.status(ann)], ['secondary', 'established']);
  assert.equal(flows.role(sig), 'signalling');
  assert.equal(flows.role(sec), 'secondary');
  flows.seen(ann);
  assert.equal(flows.role(ann), 'secondary');
});

test('insert of a tracked flow returns its handle unchanged', () => {
  const { flows, clock } = table(64);
  const h = flows.insert(CLIENT, 1, SERVICE, 2, PROTO_TCP, 'announced', 77 * 0x1000000 + 3);
  clock.advance(10);
  assert.equal(flows.insert(CLIENT, 1, SERVICE, 2, PROTO_TCP, 'signalling', NO_SESSION, 5), h);
  assert.deepEqual([flows.role(h), flows.session(h), flows.timeoutMs(h), flows.lastSeen(h), flows.size], ['announced', 77 * 0x1000000 + 3, 1000, 5000, 1]);
});

test('a full table refuses new flows, keeps serving the tracked ones, and recovers after removals', () => {
  const { flows } = table(16);
  const handles: FlowHandle[] = [];
  for (let port = 1; port <= 16; port++) handles.push(flows.insert(CLIENT, port, SERVICE, 80, PROTO_TCP, 'signalling'));
  assert.equal(new Set(handles).size, 16);
  assert.ok(handles.every((h) => h >= 0));
  assert.equal(flows.size, 16);
  assert.equal(flows.insert(CLIENT, 17, SERVICE, 80, PROTO_TCP, 'signalling'), NO_FLOW);
  assert.equal(flows.insert(CLIENT, 5, SERVICE, 80, PROTO_TCP, 'signalling'), handles[4]);
  for (let port = 1; port <= 16; port++) assert.equal(flows.lookup(CLIENT, port, SERVICE, 80, PROTO_TCP), handles[port - 1]);
  flows.seen(handles[0]!);
  assert.equal(flows.status(handles[0]!), 'established');
  flows.remove(handles[2]!);
  flows.remove(handles[2]!); // twice: no effect
  assert.equal(flows.size, 15);
  const h17 = flows.insert(CLIENT, 17, SERVICE, 80, PROTO_TCP, 'signalling');
  assert.notEqual(h17, NO_FLOW);
  assert.equal(flows.insert(CLIENT, 18, SERVICE, 80, PROTO_TCP, 'signalling'), NO_FLOW);
  assert.equal(flows.lookup(CLIENT, 3, SERVICE, 80, PROTO_TCP), NO_FLOW);
  assert.equal(flows.capacity, 16);
  // Memory never went past 16 slots: 16 × 44 bytes of slots + 32 index positions × 12 bytes.
  assert.equal(flows.bytes(), 16 * 44 + 32 * 12);
});

test('memory grows lazily by doubling, up to maxFlows and never above', () => {
  const { flows } = table(3000);
  assert.equal(flows.bytes(), 0);
  flows.insert(CLIENT, 1, SERVICE, 80, PROTO_TCP, 'signalling');
  // 1024 slots × 44 bytes + 2048 positions (1433.6 ≥ 1024 at load 0.7) × 12 bytes.
  assert.equal(FLOW_INITIAL_SLOTS, 1024);
  assert.equal(flows.bytes(), 1024 * 44 + 2048 * 12);
  for (let port = 2; port <= 3000; port++) assert.notEqual(flows.insert(CLIENT, port, SERVICE, 80, PROTO_TCP, 'signalling'), NO_FLOW);
  // 3000 slots (1024 → 2048 → 3000) + 8192 positions (4096 × 0.7 < 3000).
  assert.equal(flows.bytes(), 3000 * 44 + 8192 * 12);
  assert.equal(flows.insert(CLIENT, 3001, SERVICE, 80, PROTO_TCP, 'signalling'), NO_FLOW);
  assert.equal(flows.bytes(), 3000 * 44 + 8192 * 12);
});

test('handles stay valid across other deletions and across growth', () => {
  const { flows } = table(5000);
  const byPort = new Map<number, FlowHandle>();
  for (let port = 1; port <= 3000; port++) byPort.set(port, flows.insert(CLIENT, port, SERVICE, 9, PROTO_UDP, port % 2 ? 'announced' : 'signalling', port * 0x1000000 + port));
  for (let port = 3; port <= 3000; port += 3) {
    flows.remove(byPort.get(port)!);
    byPort.delete(port);
  }
  // Reuses the freed slots, then grows 4096 → 5000.
  for (let port = 3001; port <= 5000; port++) byPort.set(port, flows.insert(CLIENT, port, SERVICE, 9, PROTO_UDP, 'signalling', port * 0x1000000 + port));
  assert.equal(flows.size, 5000 - 1000);
  for (const [port, h] of byPort) {
    assert.equal(flows.lookup(CLIENT, port, SERVICE, 9, PROTO_UDP), h);
    assert.equal(flows.srcPort(h), port);
    assert.equal(flows.session(h), port * 0x1000000 + port);
    assert.equal(flows.role(h), port <= 3000 && port % 2 ? 'announced' : 'signalling');
    assert.deepEqual(flows.flowsOf(port * 0x1000000 + port), [h]);
  }
  for (let port = 3; port <= 3000; port += 3) assert.equal(flows.lookup(CLIENT, port, SERVICE, 9, PROTO_UDP), NO_FLOW);
});

test('a removed flow\'s handle names nothing', () => {
  const { flows } = table(64);
  const h = flows.insert(CLIENT, 1, SERVICE, 2, PROTO_UDP, 'announced', 0x1000000);
  flows.remove(h);
  assert.deepEqual(
    [flows.has(h), flows.srcIp(h), flows.srcPort(h), flows.dstIp(h), flows.dstPort(h), flows.proto(h), flows.session(h), flows.status(h), flows.role(h), flows.lastSeen(h)],
    [false, -1, -1, -1, -1, -1, NO_SESSION, 'inactive', 'signalling', -1],
  );
  flows.seen(h);
  flows.setSession(h, 0x2000000);
  assert.equal(flows.size, 0);
  assert.deepEqual(flows.flowsOf(0x2000000), []);
  for (const bad of [-1, 1.5, 64, 1e9, Number.NaN]) assert.equal(flows.has(bad), false);
});

test('removeSession removes that session\'s flows only; setSession moves a flow between sessions', () => {
  const { flows } = table(64);
  const s1 = 1 * 0x1000000 + 7;
  const s2 = 3 * 0x1000000 + 7; // same slot as s1, another generation
  const big = 0x0fffffff * 0x1000000 + 0xffffff; // the largest handle the session table makes
  const one = [1, 2, 3].map((p) => flows.insert(CLIENT, p, SERVICE, 5060, PROTO_UDP, 'signalling', s1));
  const two = [4, 5].map((p) => flows.insert(CLIENT, p, SERVICE, 5060, PROTO_UDP, 'announced', s2));
  const none = flows.insert(CLIENT, 6, SERVICE, 5060, PROTO_UDP, 'signalling');
  const third = flows.insert(CLIENT, 7, SERVICE, 5060, PROTO_UDP, 'signalling', big);
  assert.deepEqual(flows.flowsOf(s1).sort(), [...one].sort());
  assert.deepEqual(flows.flowsOf(big), [third]);
  assert.equal(flows.removeSession(NO_SESSION), 0);
  assert.equal(flows.size, 7);

  flows.setSession(one[1]!, s2);
  assert.deepEqual(flows.flowsOf(s1).sort(), [one[0]!, one[2]!].sort());
  assert.deepEqual(flows.flowsOf(s2).sort(), [...two, one[1]!].sort());
  flows.setSession(none, s1);
  flows.setSession(none, NO_SESSION);
  assert.equal(flows.session(none), NO_SESSION);

  assert.equal(flows.removeSession(s1), 2);
  assert.equal(flows.removeSession(s1), 0);
  assert.equal(flows.lookup(CLIENT, 1, SERVICE, 5060, PROTO_UDP), NO_FLOW);
  assert.equal(flows.lookup(CLIENT, 3, SERVICE, 5060, PROTO_UDP), NO_FLOW);
  assert.equal(flows.lookup(CLIENT, 2, SERVICE, 5060, PROTO_UDP), one[1]);
  assert.equal(flows.lookup(CLIENT, 6, SERVICE, 5060, PROTO_UDP), none);
  assert.equal(flows.size, 5);
  // Removing the head of a list keeps the rest of it reachable.
  flows.remove(flows.flowsOf(s2)[0]!);
  assert.equal(flows.flowsOf(s2).length, 2);
  assert.equal(flows.removeSession(s2), 2);
  assert.equal(flows.removeSession(big), 1);
  assert.deepEqual([flows.size, flows.lookup(CLIENT, 6, SERVICE, 5060, PROTO_UDP)], [1, none]);
});

test('sweep visits at most `budget` slots per call, round robin', () => {
  const { flows, clock } = table(64, 100);
  for (let port = 0; port < 10; port++) flows.insert(CLIENT, port, SERVICE, 1, PROTO_UDP, 'signalling');
  clock.advance(200);
  // Slots 0-2, 3-5, 6-8, then 9 and the (now free) slots 0 and 1.
  assert.deepEqual([flows.sweep(3), flows.sweep(3), flows.sweep(3), flows.sweep(3)], [3, 3, 3, 1]);
  assert.equal(flows.size, 0);
  assert.equal(flows.sweep(), 0);
});

test('purge listeners may end the flow\'s session (removeSession) or revive the flow', () => {
  const { flows, clock } = table(64, 100);
  const s = 0x1000000;
  const a = flows.insert(CLIENT, 1, SERVICE, 1, PROTO_UDP, 'signalling', s);
  const b = flows.insert(CLIENT, 2, SERVICE, 1, PROTO_UDP, 'secondary', s);
  const c = flows.insert(CLIENT, 3, SERVICE, 1, PROTO_UDP, 'signalling');
  const calls: FlowHandle[] = [];
  flows.onPurge((h) => {
    calls.push(h);
    if (flows.session(h) !== NO_SESSION) flows.removeSession(flows.session(h));
    else flows.seen(h);
  });
  clock.advance(200);
  assert.equal(flows.sweep(), 2); // a (taking b with it), then c
  assert.deepEqual(calls, [a, c]);
  assert.deepEqual([flows.has(a), flows.has(b), flows.has(c), flows.size], [false, false, true, 1]);
  assert.equal(flows.status(c), 'established');
});

test('randomized insert/remove/lookup/sessions against a Map model (backward-shift deletion)', () => {
  const rand = prng(20261123);
  // Few distinct addresses and ports, so probe chains collide and wrap; the table fills up often.
  const { flows, clock } = table(700, 1000, { hashSeed: 12345 });
  const keyOf = (i: number): [number, number, number, number, 6 | 17] => [
    0x0a000000 + (i % 13),
    1000 + ((i * 7) % 211),
    SERVICE,
    5060 + (i % 3),
    i % 2 ? PROTO_UDP : PROTO_TCP,
  ];
  const SPACE = 1200;
  const model = new Map<number, { h: FlowHandle; session: number }>();
  const distinct = new Set<string>();
  for (let i = 0; i < SPACE; i++) distinct.add(keyOf(i).join(':'));
  assert.equal(distinct.size, SPACE);
  const sessionOf = (): number => (rand() < 0.2 ? NO_SESSION : (1 + Math.floor(rand() * 40)) * 0x1000000 + 5);
  for (let step = 0; step < 200_000; step++) {
    const i = Math.floor(rand() * SPACE);
    const k = keyOf(i);
    const r = rand();
    if (r < 0.45) {
      const session = sessionOf();
      const h = flows.insert(...k, 'signalling', session);
      const m = model.get(i);
      if (m) assert.equal(h, m.h);
      else if (model.size >= 700) assert.equal(h, NO_FLOW);
      else {
        assert.notEqual(h, NO_FLOW);
        for (const other of model.values()) assert.notEqual(other.h, h);
        model.set(i, { h, session });
      }
    } else if (r < 0.8) {
      const m = model.get(i);
      if (m) {
        flows.remove(m.h);
        model.delete(i);
      }
    } else if (r < 0.9) {
      const m = model.get(i);
      if (m) {
        m.session = sessionOf();
        flows.setSession(m.h, m.session);
      }
    } else if (r < 0.905) {
      const session = sessionOf();
      let expected = 0;
      for (const [j, m] of model) if (session !== NO_SESSION && m.session === session) {
        model.delete(j);
        expected++;
      }
      assert.equal(flows.removeSession(session), expected);
    } else {
      assert.equal(flows.lookup(...k), model.get(i)?.h ?? NO_FLOW);
    }
    assert.equal(flows.size, model.size);
    if (step % 20_000 === 0) clock.advance(1);
  }
  for (let i = 0; i < SPACE; i++) assert.equal(flows.lookup(...keyOf(i)), model.get(i)?.h ?? NO_FLOW, `key ${i}`);
  const bySession = new Map<number, FlowHandle[]>();
  for (const m of model.values()) {
    assert.equal(flows.session(m.h), m.session);
    if (m.session !== NO_SESSION) bySession.set(m.session, [...(bySession.get(m.session) ?? []), m.h]);
  }
  for (let s = 1; s <= 40; s++) {
    const session = s * 0x1000000 + 5;
    assert.deepEqual(flows.flowsOf(session).sort((x, y) => x - y), (bySession.get(session) ?? []).sort((x, y) => x - y));
  }
});

test('interned addresses are held while a flow uses them and released (bounded) after', () => {
  const { flows } = table(64);
  const fresh = (() => {
    let n = 0;
    return () => addressKey(`2001:db8:${(n++).toString(16)}::1`);
  })();
  const held = addressKey('2001:db8:ffff::7');
  const h = flows.insert(held, 5060, SERVICE, 5060, PROTO_UDP, 'signalling');
  for (let i = 0; i < INTERN_IDLE_MAX + 100; i++) fresh();
  assert.equal(addressOf(held), '2001:db8:ffff::7');
  assert.equal(addressKey('2001:db8:ffff::7'), held);
  assert.equal(flows.lookup(addressKey('2001:db8:ffff::7'), 5060, SERVICE, 5060, PROTO_UDP), h);
  assert.ok(internedAddressCount() <= INTERN_IDLE_MAX + 1, `interned ${internedAddressCount()}`);

  flows.remove(h);
  for (let i = 0; i < INTERN_IDLE_MAX + 100; i++) fresh();
  // No flow holds it: released, and the count stays bounded.
  assert.notEqual(addressOf(held), '2001:db8:ffff::7');
  assert.ok(internedAddressCount() <= INTERN_IDLE_MAX, `interned ${internedAddressCount()}`);
  // Interning it again works, and a flow with an IPv6 source and destination holds both ids.
  const src = addressKey('2001:db8:ffff::7');
  const dst = addressKey('fe80::1');
  const h2 = flows.insert(src, 1, dst, 2, PROTO_TCP, 'signalling');
  for (let i = 0; i < 2 * INTERN_IDLE_MAX; i++) fresh();
  assert.deepEqual([addressOf(flows.srcIp(h2)), addressOf(flows.dstIp(h2))], ['2001:db8:ffff::7', 'fe80::1']);
  // A pinned key (a service's own address) stays bound without any flow.
  const service = pinAddress('2001:db8::5060');
  assert.equal(pinAddress('10.1.2.3'), 0x0a010203);
  for (let i = 0; i < 2 * INTERN_IDLE_MAX; i++) fresh();
  assert.equal(addressOf(service), '2001:db8::5060');
  assert.equal(addressKey('2001:db8::5060'), service);
});

test('forEachFrom visits the flows in slot order, at most `max` per call, and resumes', () => {
  const { flows } = table(64);
  const hs = Array.from({ length: 7 }, (_, i) => flows.insert(CLIENT, 1000 + i, SERVICE, 5060, PROTO_UDP, 'signalling', NO_SESSION));
  flows.remove(hs[0]!);
  const seen: number[] = [];
  let from = 0;
  do from = flows.forEachFrom(from, 2, (h) => seen.push(h));
  while (from >= 0);
  assert.deepEqual(seen, hs.slice(1));
});

test('reserve: room for n flows at once (capped at maxFlows), never shrinking; flows and their session index survive', () => {
  const { flows } = table(10_000);
  const session = 5 * 0x1000000 + 1;
  const h = flows.insert(CLIENT, 1, SERVICE, 2, PROTO_UDP, 'signalling', session);
  const before = flows.bytes();
  flows.reserve(6000);
  const reserved = flows.bytes();
  assert.ok(reserved > before);
  flows.reserve(10);
  assert.equal(flows.bytes(), reserved);
  flows.reserve(1e9);
  assert.ok(flows.bytes() > reserved);
  assert.equal(flows.lookup(CLIENT, 1, SERVICE, 2, PROTO_UDP), h);
  assert.deepEqual(flows.flowsOf(session), [h]);
  for (let i = 0; i < 9_999; i++) assert.notEqual(flows.insert(CLIENT, 100 + i, SERVICE, 2, PROTO_UDP, 'signalling'), NO_FLOW);
  assert.equal(flows.insert(CLIENT, 99, SERVICE, 3, PROTO_UDP, 'signalling'), NO_FLOW, 'still bounded by maxFlows');
});
