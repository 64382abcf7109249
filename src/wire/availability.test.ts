import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AVAILABILITY_BYTES, decodeAvailability, encodeAvailability, type Availability } from './availability.js';
import { MessageType, open, seal } from './envelope.js';
import { AVAILABILITY_BODY_HEX, KEY, LOAD_VECTOR_BODY_HEX, handSeal } from './wire.fixtures.js';

const planned: Availability = { host: 0x0102, seq: 0x01020304, flag: 'planned-failure', timestamp: 0xa0b0c0d0 };

test('the body is 11 bytes: host u16, seq u32, flag u8, timestamp u32, big-endian', () => {
  assert.equal(AVAILABILITY_BYTES, 11);
  const body = encodeAvailability(planned);
  assert.equal(body.toString('hex'), '0102' + '01020304' + '03' + 'a0b0c0d0');
  assert.equal(body.toString('hex'), AVAILABILITY_BODY_HEX);
});

test('flags travel as 1, 2, 3 at offset 6', () => {
  const base = { host: 1, seq: 2, timestamp: 3 };
  assert.equal(encodeAvailability({ ...base, flag: 'available' }).toString('hex'), '0001' + '00000002' + '01' + '00000003');
  assert.equal(encodeAvailability({ ...base, flag: 'app-unavailable' }).toString('hex'), '0001' + '00000002' + '02' + '00000003');
  assert.equal(encodeAvailability({ ...base, flag: 'planned-failure' }).toString('hex'), '0001' + '00000002' + '03' + '00000003');
});

test('decode reads the hand-written body', () => {
  assert.deepEqual(decodeAvailability(Buffer.from('ffff' + 'fffffffe' + '02' + '00000001', 'hex')), {
    host: 65535,
    seq: 4294967294,
    flag: 'app-unavailable',
    timestamp: 1,
  });
  assert.deepEqual(decodeAvailability(Buffer.from(AVAILABILITY_BODY_HEX, 'hex')), planned);
});

test('round trip at the edges of every field', () => {
  for (const host of [0, 1, 0x7fff, 0xffff]) {
    for (const seq of [0, 1, 0x7fffffff, 0xffffffff]) {
      for (const flag of ['available', 'app-unavailable', 'planned-failure'] as const) {
        for (const timestamp of [0, 0x80000000, 0xffffffff]) {
          const a = { host, seq, flag, timestamp };
          assert.deepEqual(decodeAvailability(encodeAvailability(a)), a);
        }
      }
    }
  }
});

test('decode: every other length is null', () => {
  const good = Buffer.from(AVAILABILITY_BODY_HEX, 'hex');
  for (let len = 0; len <= 40; len++) {
    if (len === 11) continue;
    const body = len <= 11 ? good.subarray(0, len) : Buffer.concat([good, Buffer.alloc(len - 11)]);
    assert.equal(decodeAvailability(body), null, `length ${len}`);
  }
});

test('decode: flags 0, 4..63 and the same with bits 6 and 7 set are null', () => {
  const body = Buffer.from(AVAILABILITY_BODY_HEX, 'hex');
  for (let f = 0; f <= 255; f++) {
    body[6] = f;
    const a = decodeAvailability(body);
    const code = f & 0x3f;
    if (code >= 1 && code <= 3) assert.notEqual(a, null, `flag ${f}`);
    else assert.equal(a, null, `flag ${f}`);
  }
});

test('flag bit 7 says the node is reached through a sibling (HANet); without it the field is absent', () => {
  const base = { host: 1, seq: 2, timestamp: 3 };
  assert.equal(encodeAvailability({ ...base, flag: 'available', viaSibling: true }).toString('hex'), '0001' + '00000002' + '81' + '00000003');
  assert.equal(encodeAvailability({ ...base, flag: 'app-unavailable', viaSibling: true }).toString('hex'), '0001' + '00000002' + '82' + '00000003');
  assert.equal(encodeAvailability({ ...base, flag: 'available', viaSibling: false }).toString('hex'), '0001' + '00000002' + '01' + '00000003');
  assert.deepEqual(decodeAvailability(Buffer.from('0001' + '00000002' + '81' + '00000003', 'hex')), { ...base, flag: 'available', viaSibling: true });
  assert.deepEqual(decodeAvailability(Buffer.from('0001' + '00000002' + '83' + '00000003', 'hex')), { ...base, flag: 'planned-failure', viaSibling: true });
  assert.deepEqual(Object.keys(decodeAvailability(Buffer.from('0001' + '00000002' + '01' + '00000003', 'hex'))!), ['host', 'seq', 'flag', 'timestamp']);
});

test('flag bit 6 says the agent was starved of CPU before this send; with bit 7 both; without it the field is absent', () => {
  const base = { host: 1, seq: 2, timestamp: 3 };
  assert.equal(encodeAvailability({ ...base, flag: 'available', starved: true }).toString('hex'), '0001' + '00000002' + '41' + '00000003');
  assert.equal(encodeAvailability({ ...base, flag: 'available', starved: true, viaSibling: true }).toString('hex'), '0001' + '00000002' + 'c1' + '00000003');
  assert.deepEqual(decodeAvailability(Buffer.from('0001' + '00000002' + '41' + '00000003', 'hex')), { ...base, flag: 'available', starved: true });
  assert.deepEqual(decodeAvailability(Buffer.from('0001' + '00000002' + 'c2' + '00000003', 'hex')), {
    ...base,
    flag: 'app-unavailable',
    viaSibling: true,
    starved: true,
  });
  assert.equal(decodeAvailability(Buffer.from('0001' + '00000002' + '40' + '00000003', 'hex')), null, 'bit 6 alone has no event code');
});

test('encode refuses values that do not fit their field', () => {
  assert.throws(() => encodeAvailability({ ...planned, host: 0x10000 }), RangeError);
  assert.throws(() => encodeAvailability({ ...planned, host: -1 }), RangeError);
  assert.throws(() => encodeAvailability({ ...planned, seq: 2 ** 32 }), RangeError);
  assert.throws(() => encodeAvailability({ ...planned, timestamp: 2 ** 32 }), RangeError);
  assert.throws(() => encodeAvailability({ ...planned, flag: 'up' as 'available' }), RangeError);
});

test('through the envelope: 28 bytes, version byte 0x11, decodes to the same announcement', () => {
  const msg = seal(MessageType.Availability, encodeAvailability(planned), KEY);
  assert.equal(msg.length, 28);
  assert.equal(msg[11], 0x11);
  const r = open(msg, KEY);
  assert.ok(r.ok);
  assert.equal(r.type, MessageType.Availability);
  assert.deepEqual(decodeAvailability(r.body), planned);
});

test('a body of the wrong length with a valid MAC opens, and decodes to null (malformed)', () => {
  const good = Buffer.from(AVAILABILITY_BODY_HEX, 'hex');
  const bodies = [good.subarray(0, 10), Buffer.concat([good, Buffer.alloc(1)]), Buffer.from(LOAD_VECTOR_BODY_HEX, 'hex')];
  for (const body of bodies) {
    for (const msg of [seal(MessageType.Availability, body, KEY), handSeal(0x11, body)]) {
      const r = open(msg, KEY);
      assert.ok(r.ok, `body length ${body.length}`);
      assert.equal(r.type, MessageType.Availability);
      assert.equal(decodeAvailability(r.body), null, `body length ${body.length}`);
    }
  }
});
