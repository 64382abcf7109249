import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MessageType, open, seal } from './envelope.js';
import {
  FIXED_POINT_SCALE,
  LOAD_VECTOR_BYTES,
  decodeLoadVector,
  encodeLoadVector,
  fromFixedPoint,
  toFixedPoint,
  type LoadVector,
} from './load-vector.js';
import { AVAILABILITY_BODY_HEX, KEY, LOAD_VECTOR_BODY_HEX, handSeal } from './wire.fixtures.js';

const sample: LoadVector = { host: 7, seq: 9, timestamp: 100, cpu: 0, memory: 1, network: 0.5, io: 0.25, backlog: 0.75, load: 0.2 };

test('fixed point: v = round(x * 65535), clamped to [0, 65535]', () => {
  assert.equal(FIXED_POINT_SCALE, 65535);
  assert.equal(toFixedPoint(0), 0);
  assert.equal(toFixedPoint(1), 65535);
  assert.equal(toFixedPoint(0.5), 32768); // 32767.5 rounds up
  assert.equal(toFixedPoint(0.25), 16384); // 16383.75
  assert.equal(toFixedPoint(0.75), 49151); // 49151.25
  assert.equal(toFixedPoint(1 / 65535), 1);
  assert.equal(toFixedPoint(0.4 / 65535), 0);
  assert.equal(toFixedPoint(0.6 / 65535), 1);
  // Out of range: clamped, never wrapped; NaN is 0.
  assert.equal(toFixedPoint(-0.1), 0);
  assert.equal(toFixedPoint(-1e9), 0);
  assert.equal(toFixedPoint(1.0001), 65535);
  assert.equal(toFixedPoint(7), 65535);
  assert.equal(toFixedPoint(Infinity), 65535);
  assert.equal(toFixedPoint(-Infinity), 0);
  assert.equal(toFixedPoint(NaN), 0);
  assert.equal(fromFixedPoint(0), 0);
  assert.equal(fromFixedPoint(65535), 1);
  assert.equal(fromFixedPoint(32768), 32768 / 65535);
});

test('the body is 22 bytes: host u16, seq u32, timestamp u32, six u16 fixed-point values', () => {
  assert.equal(LOAD_VECTOR_BYTES, 22);
  const body = encodeLoadVector(sample);
  assert.equal(body.length, 22);
  assert.equal(body.toString('hex'), '0007' + '00000009' + '00000064' + '0000' + 'ffff' + '8000' + '4000' + 'bfff' + '3333');
  assert.equal(body.toString('hex'), LOAD_VECTOR_BODY_HEX);
});

test('decode reads the hand-written body', () => {
  const v = decodeLoadVector(Buffer.from('fffe' + 'deadbeef' + 'ffffffff' + '0001' + '0002' + '7fff' + 'fffe' + '0000' + 'ffff', 'hex'));
  assert.deepEqual(v, {
    host: 0xfffe,
    seq: 0xdeadbeef,
    timestamp: 0xffffffff,
    cpu: 1 / 65535,
    memory: 2 / 65535,
    network: 32767 / 65535,
    io: 65534 / 65535,
    backlog: 0,
    load: 1,
  });
});

test('round trip: integers exact, fractions within half a step', () => {
  const xs = [0, 1e-6, 0.1, 0.2, 1 / 3, 0.5, 0.999, 1];
  for (const x of xs) {
    const v = { ...sample, host: 65535, seq: 0xffffffff, timestamp: 0xffffffff, cpu: x, memory: 1 - x, network: x, io: x, backlog: x, load: x };
    const d = decodeLoadVector(encodeLoadVector(v));
    assert.ok(d !== null);
    assert.equal(d.host, 65535);
    assert.equal(d.seq, 0xffffffff);
    assert.equal(d.timestamp, 0xffffffff);
    for (const k of ['cpu', 'memory', 'network', 'io', 'backlog', 'load'] as const) {
      assert.ok(Math.abs(d[k] - v[k]) <= 0.5 / 65535, `${k}: ${v[k]} → ${d[k]}`);
    }
  }
});

test('encode clamps out-of-range utilisations', () => {
  const body = encodeLoadVector({ ...sample, cpu: 2, memory: -1, network: NaN, io: 1.5, backlog: -0.01, load: 1e300 });
  assert.equal(body.subarray(10).toString('hex'), 'ffff' + '0000' + '0000' + 'ffff' + '0000' + 'ffff');
});

test('encode refuses host, seq or timestamp that do not fit their field', () => {
  assert.throws(() => encodeLoadVector({ ...sample, host: 70000 }), RangeError);
  assert.throws(() => encodeLoadVector({ ...sample, seq: -1 }), RangeError);
  assert.throws(() => encodeLoadVector({ ...sample, timestamp: 2 ** 32 }), RangeError);
});

test('decode: every other length is null', () => {
  const good = Buffer.from(LOAD_VECTOR_BODY_HEX, 'hex');
  for (let len = 0; len <= 50; len++) {
    if (len === 22) continue;
    const body = len <= 22 ? good.subarray(0, len) : Buffer.concat([good, Buffer.alloc(len - 22)]);
    assert.equal(decodeLoadVector(body), null, `length ${len}`);
  }
});

test('through the envelope: 39 bytes, version byte 0x12, decodes to the same vector', () => {
  const msg = seal(MessageType.LoadVector, encodeLoadVector(sample), KEY);
  assert.equal(msg.length, 39);
  assert.equal(msg[22], 0x12);
  const r = open(msg, KEY);
  assert.ok(r.ok);
  assert.equal(r.type, MessageType.LoadVector);
  const d = decodeLoadVector(r.body);
  assert.ok(d !== null);
  assert.equal(d.host, 7);
  assert.equal(d.memory, 1);
  assert.equal(d.network, 32768 / 65535);
  assert.equal(d.load, 13107 / 65535);
});

test('a body of the wrong length with a valid MAC opens, and decodes to null (malformed)', () => {
  const good = Buffer.from(LOAD_VECTOR_BODY_HEX, 'hex');
  const bodies = [good.subarray(0, 21), Buffer.concat([good, Buffer.alloc(1)]), Buffer.from(AVAILABILITY_BODY_HEX, 'hex')];
  for (const body of bodies) {
    for (const msg of [seal(MessageType.LoadVector, body, KEY), handSeal(0x12, body)]) {
      const r = open(msg, KEY);
      assert.ok(r.ok, `body length ${body.length}`);
      assert.equal(r.type, MessageType.LoadVector);
      assert.equal(decodeLoadVector(r.body), null, `body length ${body.length}`);
    }
  }
});
