import { test } from 'node:test';
import { createSecretKey } from 'node:crypto';
import assert from 'node:assert/strict';
import { ENVELOPE_OVERHEAD_BYTES, MessageType, TAG_BYTES, WIRE_VERSION, open, seal, sealAt } from './envelope.js';
import {
  AVAILABILITY_BODY_HEX,
  AVAILABILITY_MSG_HEX,
  KEY,
  LOAD_VECTOR_BODY_HEX,
  LOAD_VECTOR_MSG_HEX,
  handSeal,
  singleBitFlips,
} from './wire.fixtures.js';

const availabilityBody = Buffer.from(AVAILABILITY_BODY_HEX, 'hex');
const loadBody = Buffer.from(LOAD_VECTOR_BODY_HEX, 'hex');

test('constants are the contract', () => {
  assert.equal(WIRE_VERSION, 1);
  assert.equal(TAG_BYTES, 16);
  assert.equal(ENVELOPE_OVERHEAD_BYTES, 17);
  assert.deepEqual(MessageType, { Availability: 1, LoadVector: 2, ElectionAdvert: 3, Replication: 4, TransmissionAgent: 5 });
});

test('seal: availability is body ‖ 0x11 ‖ 16-byte tag, 28 bytes, tag as computed by openssl', () => {
  const msg = seal(MessageType.Availability, availabilityBody, KEY);
  assert.equal(msg.length, 28);
  assert.equal(msg[11], 0x11);
  assert.equal(msg.toString('hex'), AVAILABILITY_MSG_HEX);
});

test('seal: load vector is body ‖ 0x12 ‖ 16-byte tag, 39 bytes, tag as computed by openssl', () => {
  const msg = seal(MessageType.LoadVector, loadBody, KEY);
  assert.equal(msg.length, 39);
  assert.equal(msg[22], 0x12);
  assert.equal(msg.toString('hex'), LOAD_VECTOR_MSG_HEX);
});

test('seal refuses a type the contract does not define', () => {
  assert.throws(() => seal(6 as MessageType, availabilityBody, KEY), RangeError);
  assert.throws(() => seal(0 as MessageType, availabilityBody, KEY), RangeError);
});

test('open: round trip returns the type and the body', () => {
  for (const [type, body] of [
    [MessageType.Availability, availabilityBody],
    [MessageType.LoadVector, loadBody],
  ] as const) {
    const r = open(seal(type, body, KEY), KEY);
    assert.equal(r.ok, true);
    assert.ok(r.ok);
    assert.equal(r.type, type);
    assert.equal(r.body.toString('hex'), body.toString('hex'));
  }
  // The hand-written vectors open too (independent of seal()).
  const a = open(Buffer.from(AVAILABILITY_MSG_HEX, 'hex'), KEY);
  assert.ok(a.ok);
  assert.equal(a.type, 1);
  assert.equal(a.body.toString('hex'), AVAILABILITY_BODY_HEX);
});

test('open: every truncated length of a sealed message is truncated or bad-mac, never ok, never throws', () => {
  for (const hex of [AVAILABILITY_MSG_HEX, LOAD_VECTOR_MSG_HEX]) {
    const msg = Buffer.from(hex, 'hex');
    for (let len = 0; len < msg.length; len++) {
      const r = open(msg.subarray(0, len), KEY);
      assert.equal(r.ok, false, `length ${len}`);
      assert.ok(!r.ok);
      // Shorter than version byte + tag cannot even be checked; anything longer fails the MAC.
      assert.equal(r.reason, len < 17 ? 'truncated' : 'bad-mac', `length ${len} of ${msg.length}`);
    }
  }
});

test('open: every single-bit flip of a sealed message is bad-mac', () => {
  for (const hex of [AVAILABILITY_MSG_HEX, LOAD_VECTOR_MSG_HEX]) {
    const msg = Buffer.from(hex, 'hex');
    let n = 0;
    for (const { byte, bit, mutated } of singleBitFlips(msg)) {
      const r = open(mutated, KEY);
      assert.deepEqual(r, { ok: false, reason: 'bad-mac' }, `byte ${byte} bit ${bit}`);
      n++;
    }
    assert.equal(n, msg.length * 8);
  }
});

test('open: an extended message (one byte appended) is bad-mac', () => {
  const msg = Buffer.from(AVAILABILITY_MSG_HEX, 'hex');
  for (const extra of [0x00, 0xff]) {
    assert.deepEqual(open(Buffer.concat([msg, Buffer.from([extra])]), KEY), { ok: false, reason: 'bad-mac' });
  }
});

test('open: wrong key is bad-mac, even one bit off', () => {
  const msg = Buffer.from(AVAILABILITY_MSG_HEX, 'hex');
  const other = Buffer.from(KEY);
  other[31]! ^= 0x01;
  assert.deepEqual(open(msg, other), { ok: false, reason: 'bad-mac' });
  assert.deepEqual(open(msg, Buffer.alloc(32)), { ok: false, reason: 'bad-mac' });
  assert.deepEqual(open(seal(MessageType.Availability, availabilityBody, other), KEY), { ok: false, reason: 'bad-mac' });
});

test('open: another version with a valid MAC is version', () => {
  for (const v of [0x21, 0x01, 0xf1, 0x22]) {
    assert.deepEqual(open(handSeal(v, availabilityBody), KEY), { ok: false, reason: 'version' }, `0x${v.toString(16)}`);
  }
  // The same forgery without the key is just bad-mac: nothing is believed before the tag.
  assert.deepEqual(open(handSeal(0x21, availabilityBody, Buffer.alloc(32, 7)), KEY), { ok: false, reason: 'bad-mac' });
  // handSeal agrees with seal() on a valid version byte, so the cases above differ only in it.
  assert.deepEqual(handSeal(0x11, availabilityBody), seal(MessageType.Availability, availabilityBody, KEY));
});

test('open: an unknown type with a valid MAC is type', () => {
  for (const v of [0x10, 0x16, 0x1f]) {
    assert.deepEqual(open(handSeal(v, availabilityBody), KEY), { ok: false, reason: 'type' }, `0x${v.toString(16)}`);
  }
});

test('open: an empty body is enveloped and opened (length checks belong to the decoders)', () => {
  const msg = seal(MessageType.Availability, Buffer.alloc(0), KEY);
  assert.equal(msg.length, 17);
  const r = open(msg, KEY);
  assert.ok(r.ok);
  assert.equal(r.body.length, 0);
});

test('sealAt: in place after a prefix, the bytes from start are exactly seal()\'s; the prefix is untouched', () => {
  const key = Buffer.alloc(32, 7);
  for (const n of [0, 1, 20, 2048]) {
    const body = Buffer.alloc(n);
    for (let i = 0; i < n; i++) body[i] = (i * 31 + 5) & 0xff;
    const buf = Buffer.alloc(4 + n + ENVELOPE_OVERHEAD_BYTES, 0xaa);
    body.copy(buf, 4);
    sealAt(MessageType.Replication, buf, 4, n, key);
    assert.deepEqual(buf.subarray(4), seal(MessageType.Replication, body, key));
    assert.deepEqual(buf.subarray(0, 4), Buffer.alloc(4, 0xaa));
    const r = open(buf.subarray(4), key);
    assert.equal(r.ok, true);
  }
});

test('sealAt refuses an unknown type and a buffer without room for the envelope', () => {
  const key = Buffer.alloc(32, 7);
  assert.throws(() => sealAt(99 as MessageType, Buffer.alloc(64), 0, 4, key), RangeError);
  assert.throws(() => sealAt(MessageType.Replication, Buffer.alloc(10 + ENVELOPE_OVERHEAD_BYTES - 1), 0, 10, key), RangeError);
  assert.throws(() => sealAt(MessageType.Replication, Buffer.alloc(64), -1, 4, key), RangeError);
});

test('a KeyObject made once from the cluster key seals and opens exactly as the raw key does', () => {
  const key = KEY;
  const ko = createSecretKey(key);
  const body = Buffer.from('00010203040506070809', 'hex');
  const sealed = seal(MessageType.Replication, body, key);
  assert.deepEqual(seal(MessageType.Replication, body, ko), sealed);
  const buf = Buffer.alloc(3 + body.length + ENVELOPE_OVERHEAD_BYTES, 0xee);
  body.copy(buf, 3);
  sealAt(MessageType.Replication, buf, 3, body.length, ko);
  assert.deepEqual(buf.subarray(3), sealed);
  const opened = open(sealed, ko);
  assert.ok(opened.ok);
  assert.deepEqual(opened.ok && opened.body, body);
  assert.deepEqual(open(sealed, createSecretKey(Buffer.alloc(key.length, 1))), { ok: false, reason: 'bad-mac' });
});
