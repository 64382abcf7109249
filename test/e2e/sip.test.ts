/**
 * @module End-to-end tests of the SIP forwarder (issue 5): a dispatcher started in-process with a
 * `sip` service in front of real sipp uas processes (three, round-robin), real sipp uac callers and
 * raw sockets for what sipp cannot send (malformed messages). UDP uas backends get a TCP listener on
 * their port for the health probe (see test/helpers/sip-backends.ts).
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import {
  channels,
  type BackendStateEvent,
  type ConnectionEvent,
  type MessageDropEvent,
  type SessionEvent,
  type SessionRepinEvent,
} from '../../src/core/diagnostics.js';
import { ListenError } from '../../src/core/errors.js';
import { parseSipMessage } from '../../src/sessions/sip-message.js';
import { HOLDFAST_BRANCH_PREFIX } from '../../src/forward/sip/sip-forwarder.js';
import { describeResult, fixture, freeSipPort, parseMessageLog, runUac, startUac, UAS_STAT_PERIOD_MS } from '../helpers/sipp.js';
import { startSipDispatcher, type SipDispatcher, type SipDispatcherOptions } from '../helpers/sip-dispatcher.js';
import { collect, rawUdpPeer, rawUdpPeerWithTcpPresence, receivedCallIds, startUasPool, until } from '../helpers/sip-backends.js';

/** sipp's own deadline for a run (it exits 255 past it); the tests' runs take 1-3 s. */
const UAC_TIMEOUT_S = 15;

/**
 * The dispatcher on a port free for both UDP and TCP. With port 0 the TCP listener picks a port and
 * UDP binds the same number, which another process's UDP socket may hold (EADDRINUSE): pick again.
 */
async function startSip(t: TestContext, opts: SipDispatcherOptions): Promise<SipDispatcher> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startSipDispatcher(t, { ...opts, listen: `127.0.0.1:${await freeSipPort()}` });
    } catch (err) {
      if (!(err instanceof ListenError) || attempt >= 5) throw err;
    }
  }
}

function assertAllOk(r: Awaited<ReturnType<typeof runUac>>, calls: number): void {
  assert.equal(r.code, 0, describeResult(r));
  assert.equal(r.successful, calls, describeResult(r));
  assert.equal(r.failed, 0, describeResult(r));
}

test('a whole call over UDP: INVITE/180/200/ACK/BYE/200 through holdfast, every message on one uas', { timeout: 30_000 }, async (t) => {
  const pool = await startUasPool(t, 3, { transport: 'udp', traceMessages: true });
  const d = await startSip(t, { backends: pool.map((b) => b.port) });
  const uac = await startUac({ t, target: d.target, transport: 'udp', calls: 1, rate: 10, timeoutS: UAC_TIMEOUT_S, traceMessages: true });
  const r = await uac.done;
  assertAllOk(r, 1);

  const withCall = pool.filter((b) => parseMessageLog(b.uas.messages()).length > 0);
  assert.equal(withCall.length, 1, 'exactly one uas saw the call');
  const seen = parseMessageLog(withCall[0]!.uas.messages()).filter((m) => m.direction === 'received');
  assert.deepEqual(
    seen.map((m) => m.firstLine.split(' ')[0]),
    ['INVITE', 'ACK', 'BYE'],
  );
  const service = `${d.address.host}:${d.address.port}`;
  for (const m of seen) {
    const parsed = parseSipMessage(Buffer.from(m.text, 'latin1'), { transport: 'udp' });
    assert.ok(parsed.ok, m.text);
    const msg = parsed.message;
    assert.equal(msg.vias.length, 2, 'our Via above the caller\'s');
    assert.ok(msg.vias[0]!.branch!.startsWith(HOLDFAST_BRANCH_PREFIX), msg.vias[0]!.branch!);
    assert.equal(msg.vias[0]!.host, '127.0.0.1');
    assert.deepEqual([msg.vias[1]!.host, msg.vias[1]!.port], ['127.0.0.1', uac.port], "the caller's Via below ours");
    assert.equal(msg.maxForwards, 69, 'Max-Forwards decremented');
    assert.equal(/\nRecord-Route: /.test(m.text), msg.method === 'INVITE', 'Record-Route on the INVITE only');
  }
  assert.match(seen[0]!.text, new RegExp(`\\r\\nRecord-Route: <sip:${service};transport=udp;lr>\\r\\n`));

  // The caller sees only its own Via in every response: ours was removed.
  const answers = parseMessageLog(r.messages).filter((x) => x.direction === 'received');
  assert.deepEqual(
    answers.map((m) => m.firstLine),
    ['SIP/2.0 180 Ringing', 'SIP/2.0 200 OK', 'SIP/2.0 200 OK'],
  );
  for (const m of answers) {
    assert.equal(m.text.match(/^Via:/gm)?.length, 1, m.text);
    assert.doesNotMatch(m.text, new RegExp(HOLDFAST_BRANCH_PREFIX.replace('.', '\\.')));
  }
});

test('30 calls spread round-robin over 3 uas, each call on one backend', { timeout: 30_000 }, async (t) => {
  const CALLS = 30;
  const pool = await startUasPool(t, 3, { transport: 'udp', traceMessages: true });
  const d = await startSip(t, { backends: pool.map((b) => b.port) });
  const opened = collect<SessionEvent>(t, channels.sessionOpen);
  const r = await runUac({ t, target: d.target, transport: 'udp', calls: CALLS, rate: 60, timeoutS: UAC_TIMEOUT_S });
  assertAllOk(r, CALLS);
  assert.equal(opened.length, CALLS, 'one session per call');
  assert.deepEqual(
    ['b0', 'b1', 'b2'].map((id) => opened.filter((e) => e.backend === id).length),
    [10, 10, 10],
  );
  const ids = pool.map((b) => receivedCallIds(b.uas));
  assert.deepEqual(ids.map((s) => s.size), [10, 10, 10], 'each uas saw the messages of 10 calls');
  const all = new Set(ids.flatMap((s) => [...s]));
  assert.equal(all.size, CALLS, 'no Call-ID reached two backends');
});

test('re-INVITE within a call follows the pin', { timeout: 30_000 }, async (t) => {
  const CALLS = 6;
  const pool = await startUasPool(t, 3, { transport: 'udp', scenario: fixture('uas-reinvite.xml'), traceMessages: true });
  const d = await startSip(t, { backends: pool.map((b) => b.port) });
  const drops = collect<MessageDropEvent>(t, channels.messageDrop);
  const r = await runUac({ t, target: d.target, transport: 'udp', scenario: fixture('uac-reinvite.xml'), calls: CALLS, rate: 30, callLengthMs: 100, timeoutS: UAC_TIMEOUT_S });
  assertAllOk(r, CALLS);
  assert.deepEqual(drops, []);
  for (const b of pool) {
    const invites = parseMessageLog(b.uas.messages()).filter((m) => m.direction === 'received' && m.firstLine.startsWith('INVITE'));
    assert.equal(invites.length, 2 * receivedCallIds(b.uas).size, 'both INVITEs of each call on its uas');
  }
});

test('CANCEL while ringing: 200 for the CANCEL, 487 for the INVITE, through holdfast', { timeout: 30_000 }, async (t) => {
  const CALLS = 6;
  const pool = await startUasPool(t, 3, { transport: 'udp', scenario: fixture('uas-ringing.xml'), traceMessages: true });
  const d = await startSip(t, { backends: pool.map((b) => b.port) });
  const r = await runUac({ t, target: d.target, transport: 'udp', scenario: fixture('uac-cancel.xml'), calls: CALLS, rate: 30, timeoutS: UAC_TIMEOUT_S });
  assertAllOk(r, CALLS);
  for (const b of pool) {
    const log = parseMessageLog(b.uas.messages()).filter((m) => m.direction === 'received');
    const branchOf = (m: (typeof log)[number]) => /^Via: [^;\n]*;branch=([^;,\s]+)/m.exec(m.text)?.[1];
    for (const id of receivedCallIds(b.uas)) {
      const invite = log.find((m) => m.callId === id && m.firstLine.startsWith('INVITE'))!;
      const cancel = log.find((m) => m.callId === id && m.firstLine.startsWith('CANCEL'));
      assert.ok(cancel, `the CANCEL of ${id} reached the INVITE's uas`);
      assert.equal(branchOf(cancel), branchOf(invite), 'RFC 3261 §9.1: the CANCEL carries the INVITE\'s branch, ours too');
    }
  }
});

for (const transport of ['udp', 'tcp'] as const) {
  test(`callee hangs up over ${transport}: the uas's BYE reaches the caller and its 200 comes back`, { timeout: 30_000 }, async (t) => {
    const CALLS = 3;
    const pool = await startUasPool(t, 3, { transport, scenario: fixture('uas-bye.xml'), extra: ['-d', '200'] });
    const d = await startSip(t, { backends: pool.map((b) => b.port), transports: [transport] });
    const drops = collect<MessageDropEvent>(t, channels.messageDrop);
    const r = await runUac({ t, target: d.target, transport, scenario: fixture('uac-wait-bye.xml'), calls: CALLS, rate: 30, timeoutS: UAC_TIMEOUT_S });
    assertAllOk(r, CALLS);
    assert.deepEqual(drops, []);
    await until(() => pool.every((b) => (b.uas.stats()?.successful ?? 0) >= 1), () => `every uas to count its call successful: ${pool.map((b) => JSON.stringify(b.uas.stats()?.failedBy)).join(' ')}`);
  });
}

test('a call over TCP (-t t1): framed both ways, one upstream connection per backend', { timeout: 30_000 }, async (t) => {
  const CALLS = 6;
  const pool = await startUasPool(t, 3, { transport: 'tcp' });
  const d = await startSip(t, { backends: pool.map((b) => b.port), transports: ['tcp'] });
  const conns = collect<ConnectionEvent>(t, channels.connectionOpen);
  const opened = collect<SessionEvent>(t, channels.sessionOpen);
  const r = await runUac({ t, target: d.target, transport: 'tcp', calls: CALLS, rate: 30, timeoutS: UAC_TIMEOUT_S });
  assertAllOk(r, CALLS);
  assert.deepEqual(conns, [{ service: 'sip', protocol: 'sip' }], 'one client connection');
  assert.deepEqual(
    ['b0', 'b1', 'b2'].map((id) => opened.filter((e) => e.backend === id).length),
    [2, 2, 2],
  );
  await until(() => pool.every((b) => b.uas.calls() === 2), () => `2 calls on each uas: ${pool.map((b) => b.uas.calls())}`);
});

test('malformed UDP datagrams are dropped and counted; the next call still works', { timeout: 30_000 }, async (t) => {
  const pool = await startUasPool(t, 3, { transport: 'udp' });
  const d = await startSip(t, { backends: pool.map((b) => b.port), sip: { maxMessageBytes: 2048 } });
  const drops = collect<MessageDropEvent>(t, channels.messageDrop);
  const client = await rawUdpPeer(t);
  const invite = (extra: string, body = '') =>
    `INVITE sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:${client.port};branch=z9hG4bKraw\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:x@y>\r\n${extra}CSeq: 1 INVITE\r\nMax-Forwards: 70\r\n\r\n${body}`;
  await client.send(Buffer.from([0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42]), d.address.port); // a STUN header
  await client.send(invite('Content-Length: 0\r\n'), d.address.port); // no Call-ID
  await client.send(invite('Call-ID: c1\r\nContent-Length: 500\r\n', 'short'), d.address.port); // Content-Length past the datagram
  await client.send(invite('Call-ID: c2\r\nContent-Length: 0\r\n').replace('CSeq: 1 INVITE', 'CSeq: 1 BYE'), d.address.port);
  await client.send(invite(`Call-ID: c3\r\nX-Pad: ${'p'.repeat(3000)}\r\nContent-Length: 0\r\n`), d.address.port); // over maxMessageBytes
  await client.send('\r\n\r\n', d.address.port); // a keep-alive: ignored, not counted
  await until(() => drops.length >= 5, () => `5 drops, saw ${JSON.stringify(drops)}`);
  await new Promise((r) => setTimeout(r, 100));
  assert.deepEqual(
    drops.map((e) => `${e.reason}/${e.transport}`).sort(),
    ['malformed/udp', 'malformed/udp', 'malformed/udp', 'malformed/udp', 'too-large/udp'],
  );
  assert.equal(client.received.length, 0, 'nothing answered');
  assert.deepEqual(pool.map((b) => b.uas.calls()), [0, 0, 0]);
  const r = await runUac({ t, target: d.target, transport: 'udp', calls: 3, rate: 30, timeoutS: UAC_TIMEOUT_S });
  assertAllOk(r, 3);
});

test('malformed TCP: bad framing closes the connection (counted), an unparsable framed message is dropped, pings are answered', { timeout: 30_000 }, async (t) => {
  const pool = await startUasPool(t, 3, { transport: 'tcp' });
  const d = await startSip(t, { backends: pool.map((b) => b.port), transports: ['tcp'], sip: { maxMessageBytes: 4096 } });
  const drops = collect<MessageDropEvent>(t, channels.messageDrop);
  const base = 'OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bKtcp\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:x@y>\r\nCSeq: 1 OPTIONS\r\n';
  const closesAfter = async (bytes: string): Promise<void> => {
    const s = net.connect(d.address.port, '127.0.0.1');
    t.after(() => s.destroy());
    s.on('error', () => {});
    await once(s, 'connect');
    s.write(bytes);
    await once(s, 'close');
  };
  await closesAfter('hello\r\n\r\n'); // not SIP, and no Content-Length
  await closesAfter(`${base}Call-ID: t1\r\n\r\n`); // no Content-Length
  await closesAfter(`${base}Call-ID: t2\r\nContent-Length: 100000\r\n\r\n`); // over maxMessageBytes
  await closesAfter(`INVITE sip:x SIP/2.0\r\nX: ${'a'.repeat(5000)}`); // a head that never ends
  assert.deepEqual(drops.map((e) => `${e.reason}/${e.transport}`), ['malformed/tcp', 'malformed/tcp', 'too-large/tcp', 'too-large/tcp']);

  const s = net.connect(d.address.port, '127.0.0.1');
  t.after(() => s.destroy());
  s.on('error', () => {});
  await once(s, 'connect');
  let got = '';
  s.on('data', (c: Buffer) => (got += c.toString('latin1')));
  s.write(`${base.replace('CSeq: 1 OPTIONS', 'CSeq: 1 INVITE')}Call-ID: t3\r\nContent-Length: 0\r\n\r\n`); // CSeq method differs
  s.write('\r\n\r\n'); // RFC 5626 ping
  await until(() => got === '\r\n', () => `a CRLF pong, got ${JSON.stringify(got)}`);
  assert.equal(drops.at(-1)?.reason, 'malformed');
  assert.equal(drops.length, 5);
  assert.equal(s.destroyed, false, 'the connection stays open');
  const r = await runUac({ t, target: d.target, transport: 'tcp', calls: 3, rate: 30, timeoutS: UAC_TIMEOUT_S });
  assertAllOk(r, 3);
});

test("sip.malformed 'forward': an unparsable datagram goes as it is to the backend its flow is pinned to", { timeout: 30_000 }, async (t) => {
  const backends = [await rawUdpPeerWithTcpPresence(t), await rawUdpPeerWithTcpPresence(t)];
  // Raw peers record every datagram: the tcp probe keeps the udp probe's empty datagram out of them.
  const d = await startSip(t, { backends: backends.map((b) => b.port), sip: { malformed: 'forward' }, health: { probe: { type: 'tcp' } } });
  await d.waitForState('b0', 'up');
  await d.waitForState('b1', 'up');
  const client = await rawUdpPeer(t);
  const options = `OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:${client.port};branch=z9hG4bKfw1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:x@y>\r\nCall-ID: fw-1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n`;
  await client.send(options, d.address.port);
  await until(() => backends.some((b) => b.received.length > 0), () => 'the OPTIONS at a backend');
  const pinned = backends.findIndex((b) => b.received.length > 0);
  const garbage = Buffer.from('NOT SIP AT ALL \x00\xff\r\n\r\n', 'latin1');
  await client.send(garbage, d.address.port);
  const got = await backends[pinned]!.next(1);
  assert.ok(got.data.equals(garbage), 'forwarded byte for byte');
  // Round-robin would have picked the other backend for a new session: the flow's pin decided.
  assert.equal(backends[1 - pinned]!.received.length, 0);
});

test('backend failure: a uas killed mid-run is detected at once (ICMP), its calls are re-pinned, new calls go to the others', { timeout: 45_000 }, async (t) => {
  const pool = await startUasPool(t, 3, { transport: 'udp' });
  const d = await startSip(t, { backends: pool.map((b) => b.port) });
  for (const id of ['b0', 'b1', 'b2']) await d.waitForState(id, 'up');
  const repins = collect<SessionRepinEvent>(t, channels.sessionRepin);
  const states = collect<BackendStateEvent>(t, channels.backendState);
  const RATE = 20;
  const CALL_MS = 1500;
  const uac = await startUac({ t, target: d.target, transport: 'udp', calls: 50, rate: RATE, callLengthMs: CALL_MS, timeoutS: UAC_TIMEOUT_S, statPeriodMs: 100 });
  await until(() => pool[1]!.uas.calls() >= 6, () => `calls on b1 (${pool[1]!.uas.calls()})`, 10_000);
  const activeAtKill = uac.stats()?.currentCalls ?? -1;
  await pool[1]!.crash();
  const r = await uac.done;
  const down = states.find((e) => e.backend === 'b1' && e.to === 'down');
  assert.ok(down, `b1 went down: ${JSON.stringify(states)}`);
  assert.equal(down.reason, 'refused', 'ICMP port unreachable on the connected upstream socket');
  const fromB1 = repins.filter((e) => e.from === 'b1');
  assert.ok(fromB1.length >= 1, 'the calls pinned to b1 were re-pinned');
  assert.ok(fromB1.every((e) => e.to === 'b0' || e.to === 'b2'), JSON.stringify(fromB1));
  // Only calls established on b1 can fail (their BYE reaches a uas that never saw them).
  assert.ok(r.failed <= fromB1.length, `${r.failed} failed, ${fromB1.length} re-pinned; ${describeResult(r)}`);
  assert.equal(r.failed + r.successful, 50, describeResult(r));
  // A re-pinned call that was past its 200 reaches a uas that never saw it: sipp counts it failed
  // ('UnexpectedMessage') but still answers its BYE 200, so the caller does not see the loss.
  await new Promise((resolve) => setTimeout(resolve, 3 * UAS_STAT_PERIOD_MS));
  const lostDialogs = [0, 2].reduce((n, i) => n + (pool[i]!.uas.stats()?.failedBy['UnexpectedMessage'] ?? 0), 0);
  assert.ok(lostDialogs <= fromB1.length, `${lostDialogs} dialogs lost, ${fromB1.length} re-pinned`);
  t.diagnostic(
    `kill: ${activeAtKill} calls active at the caller, ${fromB1.length} re-pinned from b1, ` +
      `${r.failed} failed at the caller, ${lostDialogs} dialogs unknown to their new uas`,
  );

  const before = pool[0]!.uas.calls() + pool[2]!.uas.calls();
  const again = await runUac({ t, target: d.target, transport: 'udp', calls: 10, rate: 50, timeoutS: UAC_TIMEOUT_S });
  assertAllOk(again, 10);
  await until(() => pool[0]!.uas.calls() + pool[2]!.uas.calls() === before + 10, () => 'the 10 new calls on b0 and b2');
  assert.equal(d.backend('b1').state, 'down');
});
