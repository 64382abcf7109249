/**
 * @module Checks the sipp tooling (test/helpers/sipp.ts) and the scenario pairs of test/fixtures/sipp
 * against the real sipp binary with no holdfast in between, so that a failing holdfast SIP test is
 * never a broken scenario or a misread statistics file. Also pins down the sipp behaviours the SIP
 * forwarder relies on: where a uas sends its answers and its own requests, and what `[last_Via:]`
 * does with two Vias.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import {
  SIPP_EXIT,
  describeResult,
  fixture,
  freeSipPort,
  parseErrorCallIds,
  parseMessageLog,
  parseStatFile,
  runUac,
  startUas,
  type SippTransport,
} from '../helpers/sipp.js';

const TRANSPORTS: readonly SippTransport[] = ['udp', 'tcp'];

/** uac scenario → the uas scenario it is written against. */
const PAIRS: ReadonlyArray<{ name: string; uac: string; uas: string }> = [
  { name: 'built-in uac/uas (SDP in INVITE and 200)', uac: 'uac', uas: 'uas' },
  { name: 'built-in uac against uas-481.xml', uac: 'uac', uas: fixture('uas-481.xml') },
  { name: 're-INVITE in the dialog', uac: fixture('uac-reinvite.xml'), uas: fixture('uas-reinvite.xml') },
  { name: 'CANCEL while ringing (200 + 487, ACK)', uac: fixture('uac-cancel.xml'), uas: fixture('uas-ringing.xml') },
  { name: 'callee hangs up (BYE from the uas)', uac: fixture('uac-wait-bye.xml'), uas: fixture('uas-bye.xml') },
];

const CALLS = 5;

for (const transport of TRANSPORTS) {
  for (const pair of PAIRS) {
    test(`sipp direct over ${transport}: ${pair.name} — every call succeeds`, { timeout: 30_000 }, async (t) => {
      const uas = await startUas({ t, transport, scenario: pair.uas });
      const r = await runUac({ t, target: `127.0.0.1:${uas.port}`, transport, scenario: pair.uac, calls: CALLS, rate: 50, timeoutS: 15 });
      assert.equal(r.code, SIPP_EXIT.allCallsOk, describeResult(r));
      assert.equal(r.created, CALLS, describeResult(r));
      assert.equal(r.successful, CALLS, describeResult(r));
      assert.equal(r.failed, 0, describeResult(r));
      assert.equal(r.unfinished, 0, describeResult(r));
      assert.equal(await uas.waitForCalls(CALLS), CALLS);
      // Over TCP the uas fails calls still in their timewait when the uac hangs up the connection.
      const uasStats = uas.stats()!;
      assert.equal(uasStats.failed - (uasStats.failedBy['TcpClosed'] ?? 0), 0, `${JSON.stringify(uasStats.failedBy)} ${uas.errors()}`);
    });
  }
}

test('the built-in pair carries SDP in the INVITE and in the 200', { timeout: 20_000 }, async (t) => {
  const uas = await startUas({ t, transport: 'udp', traceMessages: true });
  const r = await runUac({ t, target: `127.0.0.1:${uas.port}`, transport: 'udp', calls: 1, rate: 10, timeoutS: 10, traceMessages: true });
  assert.equal(r.successful, 1, describeResult(r));
  const received = uas.messages();
  const invite = received.slice(received.indexOf('INVITE sip:'));
  assert.match(invite.slice(0, invite.indexOf('\n\n\n')), /Content-Type: application\/sdp[\s\S]*\nm=audio \d+ RTP\/AVP 0/);
  const ok = r.messages.slice(r.messages.indexOf('SIP/2.0 200 OK'));
  assert.match(ok.slice(0, ok.indexOf('\n\n\n')), /CSeq: 1 INVITE[\s\S]*Content-Type: application\/sdp[\s\S]*\nm=audio \d+ RTP\/AVP 0/);
});

interface Udp {
  socket: dgram.Socket;
  port: number;
  received: string[];
}

async function udpPeer(t: import('node:test').TestContext): Promise<Udp> {
  const socket = dgram.createSocket('udp4');
  const received: string[] = [];
  socket.on('message', (m) => received.push(m.toString('latin1')));
  await new Promise<void>((r) => socket.bind(0, '127.0.0.1', () => r()));
  t.after(() => socket.close());
  return { socket, port: socket.address().port, received };
}

async function until(what: string, check: () => boolean, timeoutMs = 3_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('a sipp uas answers the source address, not the top Via, and [last_Via:] folds both Vias into one line', { timeout: 20_000 }, async (t) => {
  const uas = await startUas({ t, transport: 'udp' });
  const source = await udpPeer(t);
  const topVia = await udpPeer(t);
  const via1 = `SIP/2.0/UDP 127.0.0.1:${topVia.port};branch=z9hG4bK-proxy-1`;
  const via2 = 'SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK-client-1';
  const invite = [
    `INVITE sip:svc@127.0.0.1:${uas.port} SIP/2.0`,
    `Via: ${via1}`,
    `Via: ${via2}`,
    'From: <sip:a@127.0.0.1>;tag=a1',
    'To: <sip:svc@127.0.0.1>',
    'Call-ID: tooling-via-1',
    'CSeq: 1 INVITE',
    'Contact: <sip:a@127.0.0.1:9>',
    'Max-Forwards: 70',
    'Content-Length: 0',
    '',
    '',
  ].join('\r\n');
  source.socket.send(invite, uas.port, '127.0.0.1');
  await until('a 200 at the source address', () => source.received.some((m) => m.startsWith('SIP/2.0 200')));
  const ok = source.received.find((m) => m.startsWith('SIP/2.0 200'))!;
  assert.ok(source.received.some((m) => m.startsWith('SIP/2.0 180')), source.received.join('\n---\n'));
  assert.equal(topVia.received.length, 0, 'nothing went to the top Via');
  assert.ok(ok.split('\r\n').includes(`Via: ${via1}, ${via2}`), ok);
});

test('uas-bye.xml: the BYE goes to the INVITE source address, with the Record-Route set as Route', { timeout: 20_000 }, async (t) => {
  // A one-call record-routing relay: client → relay → uas, and everything from the uas back to the client.
  const uas = await startUas({ t, transport: 'udp', scenario: fixture('uas-bye.xml') });
  const front = await udpPeer(t);
  const back = await udpPeer(t);
  let client: { port: number } | null = null;
  front.socket.on('message', (m, rinfo) => {
    client = { port: rinfo.port };
    let text = m.toString('latin1');
    if (text.startsWith('INVITE ')) text = text.replace('\r\n', `\r\nRecord-Route: <sip:127.0.0.1:${front.port};lr>\r\n`);
    back.socket.send(text, uas.port, '127.0.0.1');
  });
  back.socket.on('message', (m) => {
    if (client) front.socket.send(m, client.port, '127.0.0.1');
  });
  const r = await runUac({ t, target: `127.0.0.1:${front.port}`, transport: 'udp', scenario: fixture('uac-wait-bye.xml'), calls: 1, rate: 10, timeoutS: 10 });
  assert.equal(r.successful, 1, describeResult(r));
  const bye = back.received.find((m) => m.startsWith('BYE '));
  assert.ok(bye, `the uas's BYE reached the relay's back socket: ${back.received.map((m) => m.split('\r\n')[0]).join(', ')}`);
  const lines = bye.split('\r\n');
  assert.match(lines[0]!, /^BYE sip:sipp@127\.0\.0\.1:\d+;transport=UDP SIP\/2\.0$/);
  assert.ok(lines.includes(`Route: <sip:127.0.0.1:${front.port};lr>`), bye);
  const ok = back.received.find((m) => m.startsWith('SIP/2.0 200') && m.includes('CSeq: 1 INVITE'))!;
  assert.ok(ok.split('\r\n').includes(`Record-Route: <sip:127.0.0.1:${front.port};lr>`), `the 200 copies Record-Route: ${ok}`);
});

function unknownBye(port: number, fromPort: number): string {
  return [
    `BYE sip:svc@127.0.0.1:${port} SIP/2.0`,
    `Via: SIP/2.0/UDP 127.0.0.1:${fromPort};branch=z9hG4bK-unknown-1`,
    'From: <sip:a@127.0.0.1>;tag=a1',
    'To: <sip:svc@127.0.0.1>;tag=b1',
    'Call-ID: tooling-unknown-bye',
    'CSeq: 2 BYE',
    'Content-Length: 0',
    '',
    '',
  ].join('\r\n');
}

test('a BYE for an unknown call: the built-in uas answers 200, uas-481.xml answers 481', { timeout: 20_000 }, async (t) => {
  for (const [scenario, status] of [['uas', 'SIP/2.0 200 OK'], [fixture('uas-481.xml'), 'SIP/2.0 481 Call/Transaction Does Not Exist']] as const) {
    const uas = await startUas({ t, transport: 'udp', scenario });
    const peer = await udpPeer(t);
    peer.socket.send(unknownBye(uas.port, peer.port), uas.port, '127.0.0.1');
    await until(`an answer from ${scenario}`, () => peer.received.length > 0);
    assert.equal(peer.received[0]!.split('\r\n')[0], status);
    assert.match(peer.received[0]!, /\r\nCSeq: 2 BYE\r\n/);
  }
});

test('runUac: calls to nobody end at the timeout as unfinished, exit 255', { timeout: 20_000 }, async (t) => {
  const nobody = await freeSipPort();
  const r = await runUac({ t, target: `127.0.0.1:${nobody}`, transport: 'udp', calls: 3, rate: 10, timeoutS: 2 });
  assert.equal(r.code, SIPP_EXIT.fatal, describeResult(r));
  assert.equal(r.created, 3);
  assert.equal(r.successful, 0);
  assert.equal(r.unfinished, 3);
  // Three INVITEs, each retransmitted at 0.5 s and 1.5 s (T1 doubling) within the 2 s.
  assert.ok(r.retransmissions >= 3, describeResult(r));
  assert.ok(r.durationS >= 1.9 && r.durationS < 10, `durationS ${r.durationS}`);
});

test('startUas on a port already taken fails with sipp exit 254', { timeout: 20_000 }, async (t) => {
  const taken = dgram.createSocket('udp4');
  await new Promise<void>((r) => taken.bind(0, '127.0.0.1', () => r()));
  t.after(() => taken.close());
  await assert.rejects(startUas({ t, transport: 'udp', port: taken.address().port }), /exited \(code 254/);
});

test('parseStatFile: named columns, epoch times, a partial last line ignored', () => {
  const header =
    'StartTime;CurrentTime;TotalCallCreated;CurrentCall;SuccessfulCall(C);FailedCall(C);FailedMaxUDPRetrans(C);FailedTcpClosed(C);Retransmissions(C);IncomingCall(C);ResponseTime1(C);';
  const row = '2026-11-23\t13:44:02.894765\t1795441442.894765;2026-11-23\t13:44:04.394765\t1795441444.394765;20;1;17;2;2;0;5;0;00:00:01:234500;';
  const rows = parseStatFile(`${header}\n${row}\n${row.slice(0, 30)}`);
  assert.equal(rows.length, 1);
  const [r] = rows;
  assert.equal(r!.atMs - r!.startMs, 1500);
  assert.equal(r!.totalCallCreated, 20);
  assert.equal(r!.currentCalls, 1);
  assert.equal(r!.successful, 17);
  assert.equal(r!.failed, 2);
  assert.deepEqual(r!.failedBy, { MaxUDPRetrans: 2 });
  assert.equal(r!.retransmissions, 5);
  assert.equal(r!.responseTimeMs, 1234.5);
  assert.deepEqual(parseStatFile(''), []);
});

test('parseMessageLog and parseErrorCallIds read what sipp writes', () => {
  const log = [
    '----------------------------------------------- 2026-11-23 13:49:46.310793',
    'UDP message received [120] bytes :',
    '',
    'INVITE sip:service@127.0.0.1:25100 SIP/2.0\r',
    'Via: SIP/2.0/UDP 127.0.0.1:25101;branch=z9hG4bK-1\r',
    'Call-ID: 1-16063@127.0.0.1\r',
    'CSeq: 1 INVITE\r',
    '\r',
    '',
    '----------------------------------------------- 2026-11-23 13:49:46.312170',
    'TCP message sent (80 bytes):',
    '',
    'SIP/2.0 180 Ringing\r',
    'i: 1-16063@127.0.0.1\r',
    '\r',
    '',
  ].join('\n');
  const msgs = parseMessageLog(log);
  assert.deepEqual(
    msgs.map((m) => [m.direction, m.transport, m.firstLine, m.callId]),
    [
      ['received', 'UDP', 'INVITE sip:service@127.0.0.1:25100 SIP/2.0', '1-16063@127.0.0.1'],
      ['sent', 'TCP', 'SIP/2.0 180 Ringing', '1-16063@127.0.0.1'],
    ],
  );
  assert.equal(Math.round(msgs[1]!.atMs - msgs[0]!.atMs), 1);
  assert.equal(new Date(msgs[0]!.atMs).getSeconds(), 46);
  const errors =
    "2026-11-23\t14:04:30.369452\t1795442670.369452: Call-Id: 1-30224@127.0.0.1, receive timeout on message Basic Sipstone UAC:1 without label to jump to (ontimeout attribute): aborting call" +
    "2026-11-23\t14:04:31.088267\t1795442671.088267: Aborting call on unexpected message for Call-Id '2-30234@127.0.0.1': while expecting '100' (index 1), received 'SIP/2.0 481 Nope\nCall-ID: 2-30234@127.0.0.1\n'";
  assert.deepEqual(parseErrorCallIds(errors), ['1-30224@127.0.0.1', '2-30234@127.0.0.1']);
});
