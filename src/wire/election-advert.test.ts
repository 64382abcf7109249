import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { ELECTION_ADVERT_BYTES, decodeElectionAdvert, encodeElectionAdvert, type ElectionAdvert } from './election-advert.js';
import { MessageType, open, seal } from './envelope.js';
import { ELECTION_ADVERT_BODY_HEX, ELECTION_ADVERT_MSG_HEX, KEY, singleBitFlips } from './wire.fixtures.js';

/** The advert the hand-written fixture spells out field by field. */
const FIXTURE: ElectionAdvert = {
  group: 0x0102,
  sender: 0x0304,
  priority: 100,
  preempt: true,
  intervalMs: 20,
  epoch: 7,
  seq: 0x0a0b0c0d,
  timestamp: 0xa0b0c0d0,
};

test('encode: 20 bytes, field by field as the layout table says', () => {
  assert.equal(ELECTION_ADVERT_BYTES, 20);
  const body = encodeElectionAdvert(FIXTURE);
  assert.equal(body.length, 20);
  assert.equal(body.toString('hex'), ELECTION_ADVERT_BODY_HEX);
});

test('seal: version byte 0x13, 37 bytes on the wire, tag as computed by openssl', () => {
  const msg = seal(MessageType.ElectionAdvert, encodeElectionAdvert(FIXTURE), KEY);
  assert.equal(msg.length, 37);
  assert.equal(msg[20], 0x13);
  assert.equal(msg.toString('hex'), ELECTION_ADVERT_MSG_HEX);
});

test('decode: the hand-written message opens as type 3 and decodes to its fields', () => {
  const r = open(Buffer.from(ELECTION_ADVERT_MSG_HEX, 'hex'), KEY);
  assert.ok(r.ok);
  assert.equal(r.type, 3);
  assert.deepEqual(decodeElectionAdvert(r.body), FIXTURE);
});

test('decode: extremes of every field (hex written by hand)', () => {
  // group ffff, sender 0000, priority 0 (resign), flags 00, interval 1, epoch ffffffff, seq 0, ts ffffffff
  assert.deepEqual(decodeElectionAdvert(Buffer.from('ffff' + '0000' + '00' + '00' + '0001' + 'ffffffff' + '00000000' + 'ffffffff', 'hex')), {
    group: 65535,
    sender: 0,
    priority: 0,
    preempt: false,
    intervalMs: 1,
    epoch: 0xffffffff,
    seq: 0,
    timestamp: 0xffffffff,
  });
  // priority 255 (owner), interval 65535
  const owner = decodeElectionAdvert(Buffer.from('0001' + '0002' + 'ff' + '01' + 'ffff' + '00000001' + '00000002' + '00000003', 'hex'));
  assert.equal(owner?.priority, 255);
  assert.equal(owner?.intervalMs, 65535);
  assert.equal(owner?.preempt, true);
});

test('decode: wrong length, a reserved flag bit or a zero interval is malformed (null)', () => {
  const body = Buffer.from(ELECTION_ADVERT_BODY_HEX, 'hex');
  for (let len = 0; len < 20; len++) assert.equal(decodeElectionAdvert(body.subarray(0, len)), null, `length ${len}`);
  assert.equal(decodeElectionAdvert(Buffer.concat([body, Buffer.alloc(1)])), null, 'length 21');
  for (let bit = 1; bit < 8; bit++) {
    const b = Buffer.from(body);
    b[5] = 0x01 | (1 << bit);
    assert.equal(decodeElectionAdvert(b), null, `flag bit ${bit}`);
  }
  const zero = Buffer.from(body);
  zero.writeUInt16BE(0, 6);
  assert.equal(decodeElectionAdvert(zero), null);
});

test('encode refuses fields that do not fit (the sender’s bug)', () => {
  assert.throws(() => encodeElectionAdvert({ ...FIXTURE, group: 65536 }), RangeError);
  assert.throws(() => encodeElectionAdvert({ ...FIXTURE, sender: -1 }), RangeError);
  assert.throws(() => encodeElectionAdvert({ ...FIXTURE, priority: 256 }), RangeError);
  assert.throws(() => encodeElectionAdvert({ ...FIXTURE, intervalMs: 0 }), RangeError);
  assert.throws(() => encodeElectionAdvert({ ...FIXTURE, intervalMs: 65536 }), RangeError);
  assert.throws(() => encodeElectionAdvert({ ...FIXTURE, epoch: 2 ** 32 }), RangeError);
});

test('every single-bit flip of the sealed fixture is bad-mac', () => {
  const msg = Buffer.from(ELECTION_ADVERT_MSG_HEX, 'hex');
  for (const { byte, bit, mutated } of singleBitFlips(msg)) {
    assert.deepEqual(open(mutated, KEY), { ok: false, reason: 'bad-mac' }, `byte ${byte} bit ${bit}`);
  }
});

test('random 20-byte bodies: null, or an advert that re-encodes to the same bytes', () => {
  let decoded = 0;
  for (let i = 0; i < 5000; i++) {
    const body = randomBytes(20);
    if (i % 2 === 0) body[5] = body[5]! & 0x01; // half with valid flags, so most decode
    const a = decodeElectionAdvert(body);
    if (a === null) {
      assert.ok((body[5]! & 0xfe) !== 0 || body.readUInt16BE(6) === 0, body.toString('hex'));
      continue;
    }
    decoded++;
    assert.equal(encodeElectionAdvert(a).toString('hex'), body.toString('hex'));
  }
  assert.ok(decoded > 2000, `${decoded} decoded`);
});
