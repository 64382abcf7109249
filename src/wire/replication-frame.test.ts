import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MessageType, open, seal, sealAt, ENVELOPE_OVERHEAD_BYTES } from './envelope.js';
import { checkFrame, decodeFrame, encodeFrame, encodeFrameAt, MAX_STRING_BYTES, NO_SID, Op, OpWriter, visitFrame, type OpVisitor, type ReplicationOp } from './replication-frame.js';
import { KEY } from './wire.fixtures.js';

/**
 * Written by hand from the layout in replication-frame.ts:
 * header: sender 0102, count 0002, seq 00000005, nonce 0001020304050607, epoch 00000007;
 * SESSION_OPEN: 01, service 0001, sid 0000000001000005 (generation 1, slot 5), backend 0002, key length 0002, "ab" 6162;
 * FLOW_INSERT: 05, service 0000, sid ffffffffffffffff (none), src 00 0a000001 (10.0.0.1), port 13c4 (5060),
 * dst 03 3a3a31 ("::1"), port 13c4, proto 11 (udp), role 01 (announced), timeout 00007530 (30000 ms).
 */
const BODY_HEX =
  '0102' + '0002' + '00000005' + '0001020304050607' + '00000007' +
  '01' + '0001' + '0000000001000005' + '0002' + '0002' + '6162' +
  '05' + '0000' + 'ffffffffffffffff' + '00' + '0a000001' + '13c4' + '03' + '3a3a31' + '13c4' + '11' + '01' + '00007530';
/** body ‖ 0x34 (format version 3, type 4) ‖ first 16 bytes of HMAC-SHA256(KEY, body ‖ 0x34), computed with openssl dgst -mac HMAC. */
const MSG_HEX = BODY_HEX + '34' + 'b5e5388a0d4bd1708b4403808c63c9ef';
/** The same body sealed as format version 2 (0x24, before the snapshot blocks), as an older build would: refused as 'version'. */
const MSG_V2_HEX = BODY_HEX + '24' + '3b15b1b1655e8793d92f5325dc0f5b14';
/** The same body sealed as format version 1 (0x14), as an older build would: refused as 'version'. */
const MSG_V1_HEX = BODY_HEX + '14' + '7fd6e8fbae673416499bf43baec51bb8';
const NONCE = Buffer.from('0001020304050607', 'hex');

test('replication frame: encodes the hand-written bytes and seals them as type 4', () => {
  const w = new OpWriter(8);
  w.sessionOpen(1, 0x01000005, 2, 'ab');
  w.flowInsert(0, NO_SID, { src: 0x0a000001, srcPort: 5060, dst: '::1', dstPort: 5060, proto: 17 }, 'announced', 30000);
  const body = encodeFrame({ sender: 0x0102, seq: 5, nonce: NONCE, epoch: 7 }, w.count, w.bytes());
  assert.equal(body.toString('hex'), BODY_HEX);
  assert.equal(seal(MessageType.Replication, body, KEY).toString('hex'), MSG_HEX);
});

test('replication frame: decodes the hand-written message', () => {
  const opened = open(Buffer.from(MSG_HEX, 'hex'), KEY);
  assert.ok(opened.ok);
  assert.equal(opened.type, 4);
  const f = decodeFrame(opened.body);
  assert.ok(f);
  assert.equal(f.sender, 0x0102);
  assert.equal(f.seq, 5);
  assert.equal(f.nonce.toString('hex'), '0001020304050607');
  assert.equal(f.epoch, 7);
  assert.deepEqual(f.ops, [
    { op: Op.SessionOpen, service: 1, sid: 16777221, backend: 2, key: 'ab' },
    { op: Op.FlowInsert, service: 0, sid: -1, src: 167772161, srcPort: 5060, dst: '::1', dstPort: 5060, proto: 17, role: 'announced', timeoutMs: 30000 },
  ]);
});

test('replication frame: format versions 1 (0x14, no epoch) and 2 (0x24, no snapshot blocks) are refused as version, authentic or not', () => {
  for (const hex of [MSG_V1_HEX, MSG_V2_HEX]) {
    assert.deepEqual(open(Buffer.from(hex, 'hex'), KEY), { ok: false, reason: 'version' });
    const forged = Buffer.from(hex, 'hex');
    forged[forged.length - 1]! ^= 1;
    assert.deepEqual(open(forged, KEY), { ok: false, reason: 'bad-mac' });
  }
});

/**
 * A tiny snapshot in format version 3, written by hand from the layout in replication-frame.ts:
 * header: sender 0102, count 0003 (three ops: two blocks and one plain insert), seq 00000005, nonce
 * 0001020304050607, epoch 00000007;
 * SESSION_BLOCK: 0e, service 0001, n 0002;
 *   sid 0000000001000005 (generation 1, slot 5), backend 0002, key length 0002, data length 0004, "ab", "udp ";
 *   sid 000000000200000a (generation 2, slot 10), backend 0000, key ffff (anonymous), data ffff (none);
 * FLOW_BLOCK: 0f, service 0000, n 0001;
 *   sid 0000000001000005, src 0a000001 (10.0.0.1), port 13c4 (5060), dst 0a000064 (10.0.0.100), port 13c4,
 *   proto 11 (udp), role 00 (signalling), timeout 00007530 (30000 ms): 26 bytes;
 * FLOW_INSERT (an IPv6 flow has no place in a FLOW_BLOCK): 05, service 0000, sid ffffffffffffffff, src 03
 *   3a3a31 ("::1"), port 13c4, dst 00 0a000064, port 13c4, proto 11, role 02 (secondary), timeout 00007530.
 * Sealed: ‖ 34 ‖ the first 16 bytes of HMAC-SHA256(KEY, body ‖ 34) (openssl dgst -mac HMAC).
 */
const SNAPSHOT_BODY_HEX =
  '0102' + '0003' + '00000005' + '0001020304050607' + '00000007' +
  '0e' + '0001' + '0002' +
  '0000000001000005' + '0002' + '0002' + '0004' + '6162' + '75647020' +
  '000000000200000a' + '0000' + 'ffff' + 'ffff' +
  '0f' + '0000' + '0001' +
  '0000000001000005' + '0a000001' + '13c4' + '0a000064' + '13c4' + '11' + '00' + '00007530' +
  '05' + '0000' + 'ffffffffffffffff' + '03' + '3a3a31' + '13c4' + '00' + '0a000064' + '13c4' + '11' + '02' + '00007530';
const SNAPSHOT_MSG_HEX = SNAPSHOT_BODY_HEX + '34' + 'f423550b26b132b977c116442abd3c23';

test('replication frame v3: a snapshot block encodes to the hand-written bytes', () => {
  const w = new OpWriter(8);
  w.sessionBlock(1);
  w.sessionEntry(0x01000005, 2, 'ab', 'udp ');
  w.sessionEntry(0x0200000a, 0, null, null);
  w.flowBlock(0);
  w.flowEntry(0x01000005, 0x0a000001, 5060, 0x0a000064, 5060, 17, 0, 30000);
  w.endBlock();
  w.flowInsert(0, NO_SID, { src: '::1', srcPort: 5060, dst: 0x0a000064, dstPort: 5060, proto: 17 }, 'secondary', 30000);
  const body = encodeFrame({ sender: 0x0102, seq: 5, nonce: NONCE, epoch: 7 }, w.count, w.bytes());
  assert.equal(body.toString('hex'), SNAPSHOT_BODY_HEX);
  assert.equal(seal(MessageType.Replication, body, KEY).toString('hex'), SNAPSHOT_MSG_HEX);
});

test('replication frame v3: a snapshot block decodes, entry by entry, into the ops it stands for', () => {
  const opened = open(Buffer.from(SNAPSHOT_MSG_HEX, 'hex'), KEY);
  assert.ok(opened.ok);
  const f = decodeFrame(opened.body);
  assert.ok(f);
  assert.deepEqual(f.ops, [
    { op: Op.SessionOpen, service: 1, sid: 0x01000005, backend: 2, key: 'ab' },
    { op: Op.SessionData, service: 1, sid: 0x01000005, data: 'udp ' },
    { op: Op.SessionOpen, service: 1, sid: 0x0200000a, backend: 0, key: null },
    { op: Op.FlowInsert, service: 0, sid: 0x01000005, src: 0x0a000001, srcPort: 5060, dst: 0x0a000064, dstPort: 5060, proto: 17, role: 'signalling', timeoutMs: 30000 },
    { op: Op.FlowInsert, service: 0, sid: -1, src: '::1', srcPort: 5060, dst: 0x0a000064, dstPort: 5060, proto: 17, role: 'secondary', timeoutMs: 30000 },
  ]);
  const { calls, v } = recorder();
  assert.ok(visitFrame(opened.body, v));
  assert.deepEqual(calls[0], ['sessionEntry', 1, 0x01000005, 2, 'ab', 'udp ']);
  assert.deepEqual(calls[1], ['sessionEntry', 1, 0x0200000a, 0, null, null]);
});

test('replication frame v3: malformed snapshot blocks decode to null', () => {
  const body = Buffer.from(SNAPSHOT_BODY_HEX, 'hex');
  const at = 20; // the SESSION_BLOCK's opcode
  const flowAt = at + 5 + 20 + 14; // the FLOW_BLOCK's opcode
  const cases: [string, (b: Buffer) => void][] = [
    ['an empty session block', (b) => b.writeUInt16BE(0, at + 3)],
    ['a session block claiming more entries than present', (b) => b.writeUInt16BE(3, at + 3)],
    ['a key over the cap', (b) => b.writeUInt16BE(MAX_STRING_BYTES + 1, at + 5 + 10)],
    ['data over the cap', (b) => b.writeUInt16BE(0xfffe, at + 5 + 12)],
    ['a sid beyond 2^53', (b) => b.writeUInt32BE(0x00200000, at + 5)],
    ['an empty flow block', (b) => b.writeUInt16BE(0, flowAt + 3)],
    ['a flow block claiming two flows', (b) => b.writeUInt16BE(2, flowAt + 3)],
    ['a flow with protocol 0', (b) => (b[flowAt + 5 + 20] = 0)],
    ['a flow with role 3', (b) => (b[flowAt + 5 + 21] = 3)],
    ['a flow with a timeout above 2^31 - 1', (b) => b.writeUInt32BE(0x80000000, flowAt + 5 + 22)],
    ['a flow source in 240.0.0.0/4 (not an IPv4 address on the wire)', (b) => b.writeUInt32BE(0xf0000001, flowAt + 5 + 8)],
  ];
  for (const [name, spoil] of cases) {
    const b = Buffer.from(body);
    spoil(b);
    assert.equal(decodeFrame(b), null, name);
    assert.equal(checkFrame(b), false, name);
  }
  assert.ok(decodeFrame(body), 'the unspoilt body decodes');
  assert.throws(() => {
    const w = new OpWriter();
    w.sessionBlock(0);
    w.sessionEntry(1, 0, 'x'.repeat(MAX_STRING_BYTES + 1), null);
  }, RangeError);
  assert.throws(() => new OpWriter().sessionEntry(1, 0, null, null), RangeError, 'an entry outside a block');
});

test('replication frame: every op round-trips, with a 52-bit session handle and an anonymous session', () => {
  const big = 2 ** 52 - 1;
  const ops: ReplicationOp[] = [
    { op: Op.SessionOpen, service: 65535, sid: big, backend: 65535, key: null },
    { op: Op.SessionOpen, service: 0, sid: 0, backend: 0, key: 'é'.repeat(512) },
    { op: Op.SessionRepin, service: 3, sid: 7, backend: 4 },
    { op: Op.SessionClose, service: 3, sid: 7, reason: 'timeout' },
    { op: Op.SessionData, service: 3, sid: 7, data: 'udp 127.0.0.1 5060' },
    { op: Op.FlowRemove, service: 2, src: 'fe80::1', srcPort: 1, dst: 0x7f000001, dstPort: 65535, proto: 6 },
    { op: Op.RelayOpen, service: 1, sid: 9, relayPort: 40000, client: 0xc0a80001, clientPort: 8000, backend: '::1', backendPort: 9000 },
    { op: Op.RelayClose, service: 1, sid: 9, relayPort: 40000 },
    { op: Op.SnapshotBegin },
    { op: Op.SnapshotEnd, sessions: 10000, flows: 4294967295 },
    { op: Op.Ack, seq: 4294967295 },
    { op: Op.Challenge },
    { op: Op.TableSizes, service: 2, sessions: 1_000_000, flows: 4294967295 },
  ];
  const w = new OpWriter(4);
  for (const o of ops) {
    switch (o.op) {
      case Op.SessionOpen: w.sessionOpen(o.service, o.sid, o.backend, o.key); break;
      case Op.SessionRepin: w.sessionRepin(o.service, o.sid, o.backend); break;
      case Op.SessionClose: w.sessionClose(o.service, o.sid, o.reason); break;
      case Op.SessionData: w.sessionData(o.service, o.sid, o.data); break;
      case Op.FlowRemove: w.flowRemove(o.service, o); break;
      case Op.RelayOpen: w.relayOpen(o.service, o.sid, o.relayPort, o.client, o.clientPort, o.backend, o.backendPort); break;
      case Op.RelayClose: w.relayClose(o.service, o.sid, o.relayPort); break;
      case Op.SnapshotBegin: w.snapshotBegin(); break;
      case Op.SnapshotEnd: w.snapshotEnd(o.sessions, o.flows); break;
      case Op.Ack: w.ack(o.seq); break;
      case Op.Challenge: w.challenge(); break;
      case Op.TableSizes: w.tableSizes(o.service, o.sessions, o.flows); break;
      default: assert.fail('not listed');
    }
  }
  const f = decodeFrame(encodeFrame({ sender: 1, seq: 1, nonce: NONCE }, w.count, w.bytes()));
  assert.ok(f);
  const expected = ops.map((o) => (o.op === Op.FlowRemove ? { op: o.op, service: o.service, src: o.src, srcPort: o.srcPort, dst: o.dst, dstPort: o.dstPort, proto: o.proto } : o));
  assert.deepEqual(f.ops, expected);
});

test('replication frame: malformed bodies decode to null', () => {
  const body = Buffer.from(BODY_HEX, 'hex');
  assert.equal(decodeFrame(body.subarray(0, 19)), null, 'short header');
  assert.equal(decodeFrame(body.subarray(0, body.length - 1)), null, 'truncated op');
  assert.equal(decodeFrame(Buffer.concat([body, Buffer.from([0])])), null, 'trailing byte');
  const moreOps = Buffer.from(body);
  moreOps.writeUInt16BE(3, 2);
  assert.equal(decodeFrame(moreOps), null, 'count above the ops present');
  const unknownOp = Buffer.from(body);
  unknownOp[20] = 0x7f;
  assert.equal(decodeFrame(unknownOp), null, 'unknown opcode');
  const badRole = Buffer.from(body);
  badRole[body.length - 5] = 3;
  assert.equal(decodeFrame(badRole), null, 'role 3');
  const longKey = Buffer.from(body);
  longKey.writeUInt16BE(MAX_STRING_BYTES + 1, 20 + 13);
  assert.equal(decodeFrame(longKey), null, 'key over the cap');
  assert.throws(() => new OpWriter().sessionOpen(0, 1, 0, 'x'.repeat(MAX_STRING_BYTES + 1)), RangeError);
});

/** Records visitFrame()'s calls as [method, ...args]. */
function recorder(): { calls: unknown[][]; v: OpVisitor } {
  const calls: unknown[][] = [];
  const v = new Proxy({} as OpVisitor, { get: (_t, name) => (...args: unknown[]) => calls.push([name, ...args]) });
  return { calls, v };
}

test('replication frame: visitFrame hands the hand-written ops to the visitor as arguments, no op objects', () => {
  const { calls, v } = recorder();
  assert.equal(visitFrame(Buffer.from(BODY_HEX, 'hex'), v), true);
  assert.deepEqual(calls, [
    ['sessionOpen', 1, 16777221, 2, 'ab'],
    ['flowInsert', 0, -1, 167772161, 5060, '::1', 5060, 17, 'announced', 30000],
  ]);
});

test('replication frame: visitFrame applies nothing of a malformed frame (checked whole first)', () => {
  const body = Buffer.from(BODY_HEX, 'hex');
  const badRole = Buffer.from(body);
  badRole[body.length - 5] = 3; // the second op is malformed: the first must not be visited either
  for (const bad of [badRole, body.subarray(0, body.length - 1), Buffer.concat([body, Buffer.from([0])])]) {
    const { calls, v } = recorder();
    assert.equal(checkFrame(bad), false);
    assert.equal(visitFrame(bad, v), false);
    assert.deepEqual(calls, []);
  }
  assert.equal(checkFrame(body), true);
});

test('replication frame: keys and data are the same UTF-8 bytes on the ASCII fast path and off it', () => {
  const strings = ['', 'a', 'sess-0123456789abcdef', 'x'.repeat(MAX_STRING_BYTES), 'café', 'a\u0000b', '\u{1f600}key', 'ascii-then-ü'.repeat(20), '\x7f\x80'];
  for (const s of strings) {
    const w = new OpWriter(4);
    w.sessionOpen(0, 0x01000001, 1, s);
    w.sessionData(0, 0x01000001, s);
    const expect = Buffer.from(s, 'utf8');
    // SESSION_OPEN: 15 bytes of fields, then the key; SESSION_DATA: 13 bytes of fields, then the data.
    assert.equal(w.bytes().readUInt16BE(13), expect.length, JSON.stringify(s));
    assert.deepEqual(w.bytes().subarray(15, 15 + expect.length), expect);
    const f = decodeFrame(encodeFrame({ sender: 1, seq: 1, nonce: NONCE }, w.count, w.bytes()));
    assert.deepEqual(f?.ops, [
      { op: Op.SessionOpen, service: 0, sid: 0x01000001, backend: 1, key: s },
      { op: Op.SessionData, service: 0, sid: 0x01000001, data: s },
    ]);
  }
});

test('replication frame: a key or data string over MAX_STRING_BYTES throws and leaves the writer as it was', () => {
  const w = new OpWriter(16);
  w.sessionClose(0, 0x01000001, 'ended');
  const before = Buffer.from(w.bytes());
  for (const s of ['k'.repeat(MAX_STRING_BYTES + 1), 'é'.repeat(MAX_STRING_BYTES / 2 + 1), '\u{1f600}'.repeat(MAX_STRING_BYTES / 4 + 1)]) {
    assert.throws(() => w.sessionOpen(0, 0x01000002, 0, s), /session key of \d+ bytes exceeds 1024/);
    assert.throws(() => w.sessionData(0, 0x01000002, s), /session data of \d+ bytes exceeds 1024/);
    assert.equal(w.count, 1);
    assert.deepEqual(w.bytes(), before);
  }
  w.sessionOpen(0, 0x01000002, 0, null);
  const f = decodeFrame(encodeFrame({ sender: 1, seq: 1, nonce: NONCE }, w.count, w.bytes()));
  assert.deepEqual(f?.ops.map((o) => o.op), [Op.SessionClose, Op.SessionOpen]);
});

test('replication frame: encodeFrameAt + sealAt build `u32 length ‖ sealed frame` in one buffer, as encodeFrame + seal', () => {
  const w = new OpWriter(8);
  w.sessionOpen(1, 0x01000005, 2, 'ab');
  w.flowInsert(0, NO_SID, { src: 0x0a000001, srcPort: 5060, dst: '::1', dstPort: 5060, proto: 17 }, 'announced', 30000);
  const n = 20 + w.length;
  const record = Buffer.alloc(4 + n + ENVELOPE_OVERHEAD_BYTES);
  assert.equal(encodeFrameAt(record, 4, { sender: 0x0102, seq: 5, nonce: NONCE, epoch: 7 }, w.count, w.bytes()), n);
  sealAt(MessageType.Replication, record, 4, n, KEY);
  record.writeUInt32BE(n + ENVELOPE_OVERHEAD_BYTES, 0);
  assert.equal(record.subarray(4).toString('hex'), MSG_HEX);
  assert.equal(record.readUInt32BE(0), MSG_HEX.length / 2);
});
