/**
 * Fuzzes open() and the body decoders with random datagrams and with mutations of valid messages.
 * Deterministic: the PRNG seed is printed; rerun a failure with WIRE_FUZZ_SEED=<seed>.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeAvailability, encodeAvailability, type AvailabilityFlag } from './availability.js';
import { decodeElectionAdvert, encodeElectionAdvert } from './election-advert.js';
import { MessageType, open, seal, type WireReject } from './envelope.js';
import { decodeTransmissionAgent } from './transmission-agent.js';
import { decodeLoadVector, encodeLoadVector } from './load-vector.js';
import { checkFrame, decodeFrame, encodeFrame, NO_SID, OpWriter } from './replication-frame.js';
import { KEY } from './wire.fixtures.js';

const DEFAULT_SEED = 0x5eed_2024;
const SEED = process.env['WIRE_FUZZ_SEED'] !== undefined ? Number(process.env['WIRE_FUZZ_SEED']) >>> 0 : DEFAULT_SEED;
const RANDOM_BUFFERS = 20_000;
const MUTATIONS = 20_000;
const OPEN_REJECTS: ReadonlySet<WireReject> = new Set(['truncated', 'bad-mac', 'version', 'type']);

/** mulberry32: small, fast, good enough to spread bytes and lengths; fully determined by its seed. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomBytes(rand: () => number, n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(rand() * 256);
  return b;
}

const int = (rand: () => number, below: number): number => Math.floor(rand() * below);

function validMessage(rand: () => number): Buffer {
  const pick = rand();
  if (pick < 1 / 3) {
    const body = encodeElectionAdvert({
      group: int(rand, 65536),
      sender: int(rand, 65536),
      priority: int(rand, 256),
      preempt: rand() < 0.5,
      intervalMs: 1 + int(rand, 65535),
      epoch: int(rand, 2 ** 32),
      seq: int(rand, 2 ** 32),
      timestamp: int(rand, 2 ** 32),
    });
    return seal(MessageType.ElectionAdvert, body, KEY);
  }
  if (pick < 2 / 3) {
    const flags: AvailabilityFlag[] = ['available', 'app-unavailable', 'planned-failure'];
    const body = encodeAvailability({ host: int(rand, 65536), seq: int(rand, 2 ** 32), flag: flags[int(rand, 3)]!, timestamp: int(rand, 2 ** 32) });
    return seal(MessageType.Availability, body, KEY);
  }
  const body = encodeLoadVector({
    host: int(rand, 65536),
    seq: int(rand, 2 ** 32),
    timestamp: int(rand, 2 ** 32),
    cpu: rand(),
    memory: rand(),
    network: rand(),
    io: rand(),
    backlog: rand(),
    load: rand(),
  });
  return seal(MessageType.LoadVector, body, KEY);
}

/** One random mutation; always returns a message different from `msg`. */
function mutate(rand: () => number, msg: Buffer): { kind: string; mutated: Buffer } {
  const r = rand();
  if (r < 0.4) {
    // 1 to 8 distinct bit flips.
    const mutated = Buffer.from(msg);
    const bits = new Set<number>();
    const n = 1 + int(rand, 8);
    while (bits.size < n) bits.add(int(rand, msg.length * 8));
    for (const bit of bits) mutated[bit >>> 3]! ^= 1 << (bit & 7);
    return { kind: `flip ${[...bits].join(',')}`, mutated };
  }
  if (r < 0.6) {
    const len = int(rand, msg.length);
    return { kind: `truncate to ${len}`, mutated: Buffer.from(msg.subarray(0, len)) };
  }
  if (r < 0.8) {
    const extra = 1 + int(rand, 40);
    return { kind: `extend by ${extra}`, mutated: Buffer.concat([msg, randomBytes(rand, extra)]) };
  }
  // Replace one byte with a different value.
  const mutated = Buffer.from(msg);
  const at = int(rand, msg.length);
  mutated[at] = (mutated[at]! + 1 + int(rand, 255)) & 0xff;
  return { kind: `byte ${at} replaced`, mutated };
}

function decodeIfOk(msg: Buffer): void {
  const r = open(msg, KEY);
  if (r.ok) {
    if (r.type === MessageType.Availability) decodeAvailability(r.body);
    else if (r.type === MessageType.ElectionAdvert) decodeElectionAdvert(r.body);
    else if (r.type === MessageType.Replication) decodeFrame(r.body);
    else if (r.type === MessageType.TransmissionAgent) decodeTransmissionAgent(r.body);
    else decodeLoadVector(r.body);
  }
}

test(`fuzz (seed ${SEED}, rerun with WIRE_FUZZ_SEED=${SEED}): random datagrams never open and never throw`, (t) => {
  t.diagnostic(`WIRE_FUZZ_SEED=${SEED}`);
  console.log(`# wire fuzz seed: ${SEED} (rerun with WIRE_FUZZ_SEED=${SEED})`);
  const rand = prng(SEED);
  const reasons = new Map<string, number>();
  for (let i = 0; i < RANDOM_BUFFERS; i++) {
    const buf = randomBytes(rand, int(rand, 101));
    let r: ReturnType<typeof open>;
    try {
      r = open(buf, KEY);
      // The decoders must survive arbitrary bodies too (they see only authenticated ones in practice).
      decodeAvailability(buf);
      decodeLoadVector(buf);
      decodeElectionAdvert(buf);
      decodeFrame(buf);
      decodeTransmissionAgent(buf);
    } catch (err) {
      assert.fail(`seed ${SEED} case ${i}: threw on ${buf.toString('hex')}: ${String(err)}`);
    }
    assert.ok(!r.ok, `seed ${SEED} case ${i}: random bytes opened: ${buf.toString('hex')}`);
    assert.ok(OPEN_REJECTS.has(r.reason), `seed ${SEED} case ${i}: reason ${r.reason}`);
    assert.equal(r.reason, buf.length < 17 ? 'truncated' : 'bad-mac', `seed ${SEED} case ${i}`);
    reasons.set(r.reason, (reasons.get(r.reason) ?? 0) + 1);
  }
  t.diagnostic(`rejects: ${JSON.stringify(Object.fromEntries(reasons))}`);
  assert.ok((reasons.get('truncated') ?? 0) > 0 && (reasons.get('bad-mac') ?? 0) > 0);
});

test(`fuzz (seed ${SEED}): mutations of valid messages never open and never throw`, (t) => {
  const rand = prng(SEED ^ 0x9e3779b9);
  const kinds = new Map<string, number>();
  for (let i = 0; i < MUTATIONS; i++) {
    const msg = validMessage(rand);
    const before = open(msg, KEY);
    assert.ok(before.ok, `seed ${SEED} case ${i}: the valid message must open`);
    const { kind, mutated } = mutate(rand, msg);
    assert.ok(!mutated.equals(msg), `seed ${SEED} case ${i}: mutation ${kind} changed nothing`);
    let r: ReturnType<typeof open>;
    try {
      r = open(mutated, KEY);
      decodeIfOk(mutated);
    } catch (err) {
      assert.fail(`seed ${SEED} case ${i} (${kind}): threw on ${mutated.toString('hex')}: ${String(err)}`);
    }
    assert.ok(!r.ok, `seed ${SEED} case ${i} (${kind}): mutated message opened: ${mutated.toString('hex')}`);
    assert.ok(OPEN_REJECTS.has(r.reason), `seed ${SEED} case ${i}: reason ${r.reason}`);
    const k = kind.split(' ')[0]!;
    kinds.set(k, (kinds.get(k) ?? 0) + 1);
  }
  t.diagnostic(`mutations: ${JSON.stringify(Object.fromEntries(kinds))}`);
  assert.equal(kinds.size, 4);
});

/** A valid replication frame body with a few random ops (every op kind with fields, the snapshot blocks included). */
function validFrameBody(rand: () => number): Buffer {
  const w = new OpWriter(64);
  const n = 1 + int(rand, 6);
  for (let i = 0; i < n; i++) {
    const sid = rand() < 0.2 ? NO_SID : int(rand, 2 ** 52);
    const addr = (): number | string => (rand() < 0.7 ? int(rand, 0xf0000000) : 'fe80::' + int(rand, 65536).toString(16));
    switch (int(rand, 11)) {
      case 0: w.sessionOpen(int(rand, 4), sid === NO_SID ? 1 : sid, int(rand, 8), rand() < 0.5 ? null : 'call-' + int(rand, 1e9)); break;
      case 1: w.sessionRepin(int(rand, 4), int(rand, 2 ** 40), int(rand, 8)); break;
      case 2: w.sessionClose(int(rand, 4), int(rand, 2 ** 40), 'ended'); break;
      case 3: w.sessionData(int(rand, 4), int(rand, 2 ** 40), 'udp 10.0.0.' + int(rand, 256) + ' 5060'); break;
      case 4: w.flowInsert(int(rand, 4), sid, { src: addr(), srcPort: int(rand, 65536), dst: addr(), dstPort: int(rand, 65536), proto: 17 }, 'secondary', int(rand, 2 ** 31)); break;
      case 5: w.flowRemove(int(rand, 4), { src: addr(), srcPort: int(rand, 65536), dst: addr(), dstPort: int(rand, 65536), proto: 6 }); break;
      case 6: w.relayOpen(int(rand, 4), int(rand, 2 ** 40), int(rand, 65536), addr(), int(rand, 65536), addr(), int(rand, 65536)); break;
      case 7: w.snapshotEnd(int(rand, 2 ** 32), int(rand, 2 ** 32)); break;
      case 8: {
        w.sessionBlock(int(rand, 4));
        for (let k = 1 + int(rand, 3); k > 0; k--) w.sessionEntry(int(rand, 2 ** 52), int(rand, 8), rand() < 0.5 ? null : 'call-' + int(rand, 1e9), rand() < 0.3 ? null : 'udp 5060 10.0.0.' + int(rand, 256));
        w.endBlock();
        break;
      }
      case 9: {
        w.flowBlock(int(rand, 4));
        for (let k = 1 + int(rand, 3); k > 0; k--) w.flowEntry(sid, int(rand, 0xf0000000), int(rand, 65536), int(rand, 0xf0000000), int(rand, 65536), 17, int(rand, 3), int(rand, 2 ** 31));
        w.endBlock();
        break;
      }
      default: w.ack(int(rand, 2 ** 32));
    }
  }
  return encodeFrame({ sender: int(rand, 65536), seq: int(rand, 2 ** 32), nonce: randomBytes(rand, 8) }, w.count, w.bytes());
}

test(`fuzz (seed ${SEED}): mutated replication frame bodies never make decodeFrame throw`, () => {
  const rand = prng(SEED ^ 0x4f1bbcdc);
  let decoded = 0;
  for (let i = 0; i < MUTATIONS; i++) {
    const body = validFrameBody(rand);
    assert.ok(decodeFrame(body), `seed ${SEED} case ${i}: the valid frame must decode`);
    const { kind, mutated } = mutate(rand, body);
    try {
      const ok = decodeFrame(mutated) !== null;
      if (ok) decoded++;
      // The receiver's path (checkFrame, then visitFrame) accepts exactly what decodeFrame does.
      assert.equal(checkFrame(mutated), ok, `seed ${SEED} case ${i} (${kind}): checkFrame disagrees with decodeFrame`);
    } catch (err) {
      if (err instanceof assert.AssertionError) throw err;
      assert.fail(`seed ${SEED} case ${i} (${kind}): threw on ${mutated.toString('hex')}: ${String(err)}`);
    }
    // Sealed, a mutated frame never opens.
    const sealed = seal(MessageType.Replication, body, KEY);
    assert.ok(!open(mutate(rand, sealed).mutated, KEY).ok);
  }
  // Most single-byte changes inside fields still decode (to other values): the decoder is not trivially rejecting everything.
  assert.ok(decoded > 0);
});
