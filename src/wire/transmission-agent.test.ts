import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MessageType, open, seal } from './envelope.js';
import {
  TRANSMISSION_AGENT_BYTES,
  decodeTransmissionAgent,
  encodeTransmissionAgent,
  type TransmissionAgentMessage,
} from './transmission-agent.js';
import { KEY, TRANSMISSION_AGENT_BODY_HEX, TRANSMISSION_AGENT_MSG_HEX, handSeal, singleBitFlips } from './wire.fixtures.js';

const FIXTURE: TransmissionAgentMessage = {
  kind: 'request',
  reason: 'none',
  host: 0x0102,
  seq: 0x0a0b0c0d,
  timestamp: 0xa0b0c0d0,
  address: '10.1.2.3',
  nextHop: '192.168.0.1',
};

test('encode: 20 bytes, field by field as the layout table says', () => {
  assert.equal(TRANSMISSION_AGENT_BYTES, 20);
  const body = encodeTransmissionAgent(FIXTURE);
  assert.equal(body.toString('hex'), TRANSMISSION_AGENT_BODY_HEX);
});

test('kinds travel as 1-4 at offset 0, refuse reasons as 1-3 at offset 1', () => {
  const hex = (m: Partial<TransmissionAgentMessage>) => encodeTransmissionAgent({ ...FIXTURE, ...m }).subarray(0, 2).toString('hex');
  assert.equal(hex({ kind: 'request' }), '0100');
  assert.equal(hex({ kind: 'ack' }), '0200');
  assert.equal(hex({ kind: 'release' }), '0300');
  assert.equal(hex({ kind: 'refuse', reason: 'no-public-link' }), '0401');
  assert.equal(hex({ kind: 'refuse', reason: 'not-allowed' }), '0402');
  assert.equal(hex({ kind: 'refuse', reason: 'busy' }), '0403');
});

test('seal: version byte 0x15, 37 bytes on the wire, tag as computed by openssl', () => {
  const msg = seal(MessageType.TransmissionAgent, encodeTransmissionAgent(FIXTURE), KEY);
  assert.equal(msg.length, 37);
  assert.equal(msg[20], 0x15);
  assert.equal(msg.toString('hex'), TRANSMISSION_AGENT_MSG_HEX);
  assert.deepEqual(handSeal(0x15, encodeTransmissionAgent(FIXTURE)), msg);
});

test('decode: the hand-written message opens as type 5 and decodes to its fields', () => {
  const r = open(Buffer.from(TRANSMISSION_AGENT_MSG_HEX, 'hex'), KEY);
  assert.ok(r.ok);
  assert.equal(r.type, 5);
  assert.deepEqual(decodeTransmissionAgent(r.body), FIXTURE);
  assert.deepEqual(
    decodeTransmissionAgent(Buffer.from('04' + '01' + 'ffff' + 'ffffffff' + '00000001' + 'ffffffff' + '01000000', 'hex')),
    { kind: 'refuse', reason: 'no-public-link', host: 65535, seq: 4294967295, timestamp: 1, address: '255.255.255.255', nextHop: '1.0.0.0' },
  );
});

test('decode: wrong lengths, unknown kinds and reasons, a reason off refuse, 0.0.0.0 are null', () => {
  const good = Buffer.from(TRANSMISSION_AGENT_BODY_HEX, 'hex');
  for (let len = 0; len <= 40; len++) {
    if (len === 20) continue;
    const body = len <= 20 ? good.subarray(0, len) : Buffer.concat([good, Buffer.alloc(len - 20)]);
    assert.equal(decodeTransmissionAgent(body), null, `length ${len}`);
  }
  for (let k = 0; k <= 255; k++) {
    const b = Buffer.from(good);
    b[0] = k;
    if (k === 4) b[1] = 1;
    assert.equal(decodeTransmissionAgent(b) !== null, k >= 1 && k <= 4, `kind ${k}`);
  }
  for (let r = 0; r <= 255; r++) {
    const refuse = Buffer.from(good);
    refuse[0] = 4;
    refuse[1] = r;
    assert.equal(decodeTransmissionAgent(refuse) !== null, r >= 1 && r <= 3, `refuse reason ${r}`);
    const request = Buffer.from(good);
    request[1] = r;
    assert.equal(decodeTransmissionAgent(request) !== null, r === 0, `request reason ${r}`);
  }
  const zeroAddress = Buffer.from(good);
  zeroAddress.fill(0, 12, 16);
  assert.equal(decodeTransmissionAgent(zeroAddress), null);
  const zeroHop = Buffer.from(good);
  zeroHop.fill(0, 16, 20);
  assert.equal(decodeTransmissionAgent(zeroHop), null);
});

test('encode refuses values that do not fit their field', () => {
  assert.throws(() => encodeTransmissionAgent({ ...FIXTURE, host: 0x10000 }), RangeError);
  assert.throws(() => encodeTransmissionAgent({ ...FIXTURE, seq: 2 ** 32 }), RangeError);
  assert.throws(() => encodeTransmissionAgent({ ...FIXTURE, address: '::1' }), RangeError);
  assert.throws(() => encodeTransmissionAgent({ ...FIXTURE, nextHop: '10.0.0.256' }), RangeError);
  assert.throws(() => encodeTransmissionAgent({ ...FIXTURE, kind: 'steal' as 'request' }), RangeError);
});

test('every single-bit change of the sealed message fails to open', () => {
  const msg = Buffer.from(TRANSMISSION_AGENT_MSG_HEX, 'hex');
  for (const { mutated } of singleBitFlips(msg)) assert.equal(open(mutated, KEY).ok, false);
});
