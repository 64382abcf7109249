/**
 * @module The authenticated envelope every binary control message travels in between agents and
 * dispatchers: `seal()` appends a version byte and a truncated HMAC-SHA256 tag to a body, `open()`
 * checks them and hands back the body. The body codecs live beside it (availability.ts,
 * load-vector.ts, election-advert.ts); replay and freshness are replay-guard.ts's job, after decoding.
 *
 * ## Byte layout (all integers big-endian)
 *
 * A message on the wire is `body ‖ version ‖ tag`:
 *
 * | offset   | size | field                                                                     |
 * |----------|------|---------------------------------------------------------------------------|
 * | 0        | n    | body (layout depends on the type, below)                                  |
 * | n        | 1    | version byte = `(version << 4) \| type`: the type's format version       |
 * | n + 1    | 16   | tag = first 16 bytes of HMAC-SHA256(clusterKey, body ‖ version byte)      |
 *
 * Types: 1 = availability (version byte 0x11), 2 = load vector (version byte 0x12), 3 = election
 * advert (version byte 0x13), 4 = state replication frame (version byte 0x34, format version 3 since
 * snapshots travel in SESSION_BLOCK and FLOW_BLOCK ops; version 2, 0x24, carried the sender's
 * election epoch without them; 0x14 and 0x24 are refused as 'version'; layout in
 * replication-frame.ts: a 16-byte header and a batch of session/flow operations, over TCP),
 * 5 = transmission agent (version byte 0x15; HANet's takeover request between siblings, below).
 *
 * Availability body (type 1), 11 bytes, SARA Fig. 6; 28 bytes on the wire:
 *
 * | offset | size | field         | meaning                                                          |
 * |--------|------|---------------|------------------------------------------------------------------|
 * | 0      | 2    | Host_Identity | u16, the agent's host id                                         |
 * | 2      | 4    | Seq_Nber      | u32, +1 per announcement, wraps at 2^32                          |
 * | 6      | 1    | Flag          | bits 0-5: 1 node and application available, 2 node available    |
 * |        |      |               | and application unavailable, 3 planned failure at Timestamp;     |
 * |        |      |               | bit 6 (0x40): the agent was starved of CPU before this send      |
 * |        |      |               | (issue 17: one interval late or more, half of it spent waiting   |
 * |        |      |               | for a CPU); bit 7 (0x80): the node is reached through a sibling  |
 * |        |      |               | (HANet: its public links failed, a sibling relays its packets).  |
 * |        |      |               | Agents set bits 6 and 7 only while starved or relayed, so older  |
 * |        |      |               | dispatchers see 1-3 otherwise                                    |
 * | 7      | 4    | Timestamp     | u32, wall-clock ms mod 2^32: the send time, or for flag 3 the    |
 * |        |      |               | planned failure time; unwrapped by the receiver to the value     |
 * |        |      |               | nearest its own clock (timestamp.ts)                             |
 *
 * Load vector body (type 2), 22 bytes; 39 bytes on the wire:
 *
 * | offset | size | field     | meaning                                                              |
 * |--------|------|-----------|----------------------------------------------------------------------|
 * | 0      | 2    | host      | u16, the agent's host id                                             |
 * | 2      | 4    | seq       | u32, +1 per load vector (its own counter), wraps at 2^32             |
 * | 6      | 4    | timestamp | u32, wall-clock ms mod 2^32 at send time                             |
 * | 10     | 2    | cpu       | u16 fixed point, v = round(x * 65535) for x in [0,1]                 |
 * | 12     | 2    | memory    | same encoding                                                        |
 * | 14     | 2    | network   | same encoding                                                        |
 * | 16     | 2    | io        | same encoding                                                        |
 * | 18     | 2    | backlog   | same encoding                                                        |
 * | 20     | 2    | load      | same encoding; the agent's weighted scalar load                      |
 *
 * Election advert body (type 3), 20 bytes; 37 bytes on the wire. Sent by a group's master every
 * interval to its peer dispatchers (RFC 5798 §5.2, adapted; replication/election.ts):
 *
 * | offset | size | field     | meaning                                                              |
 * |--------|------|-----------|----------------------------------------------------------------------|
 * | 0      | 2    | group     | u16, the group id (VRRP's VRID): one VIP and the services on it      |
 * | 2      | 2    | sender    | u16, the sending dispatcher's id; breaks priority ties               |
 * | 4      | 1    | priority  | u8: 0 = master resigning (backups take over after Skew_Time),        |
 * |        |      |           | 1-254, 255 = owner (always preempts)                                 |
 * | 5      | 1    | flags     | bit 0 = the sender preempts; bits 1-7 reserved, must be 0            |
 * | 6      | 2    | interval  | u16, the sender's advertisement interval in ms, 1-65535              |
 * | 8      | 4    | epoch     | u32, the sender's master epoch: max epoch seen + 1 at each takeover  |
 * | 12     | 4    | seq       | u32, +1 per advert of this group from this sender, wraps at 2^32     |
 * | 16     | 4    | timestamp | u32, wall-clock ms mod 2^32 at send time                             |
 *
 * Transmission agent body (type 5), 20 bytes; 37 bytes on the wire. Between the agents of two
 * sibling servers, over their private link (HANet §2.3; hanet/transmission-agent-*.ts):
 *
 * | offset | size | field     | meaning                                                              |
 * |--------|------|-----------|----------------------------------------------------------------------|
 * | 0      | 1    | kind      | 1 request (take over my transmission), 2 ack, 3 release, 4 refuse   |
 * | 1      | 1    | reason    | refuse only (else 0): 1 no GOOD public link, 2 address not allowed,  |
 * |        |      |           | 3 busy relaying another address for that host                        |
 * | 2      | 2    | host      | u16, the sender's Host_Identity                                      |
 * | 4      | 4    | seq       | u32, +1 per message from this sender, wraps at 2^32                  |
 * | 8      | 4    | timestamp | u32, wall-clock ms mod 2^32 at send time                             |
 * | 12     | 4    | address   | IPv4, the requester's service address (answers echo the request's)  |
 * | 16     | 4    | next hop  | IPv4, the requester's address on the private link                    |
 *
 * The tag is checked (in constant time) before anything else in the message is believed, so an
 * unauthenticated sender learns nothing from which reason it gets back except 'truncated' and
 * 'bad-mac'. A version or type this build does not know is reported only for authentic messages.
 */
import { createHmac, timingSafeEqual, type KeyObject } from 'node:crypto';
import type { WireReject } from '../core/diagnostics.js';

/** The envelope format version, the high nibble of the version byte (of every type but Replication). */
export const WIRE_VERSION = 1;
/** The replication frame's format version (2: the header carries the sender's election epoch; 3: snapshot blocks). */
export const REPLICATION_WIRE_VERSION = 3;
/** HMAC-SHA256 truncated to 128 bits (RFC 2104 §5 allows truncation to at least half the output). */
export const TAG_BYTES = 16;

export const MessageType = { Availability: 1, LoadVector: 2, ElectionAdvert: 3, Replication: 4, TransmissionAgent: 5 } as const;
export type MessageType = (typeof MessageType)[keyof typeof MessageType];

export type { WireReject };

export type OpenResult = { ok: true; type: MessageType; body: Buffer } | { ok: false; reason: WireReject };

/** Version byte plus tag: what the envelope adds to a body. */
export const ENVELOPE_OVERHEAD_BYTES = 1 + TAG_BYTES;

const HMAC_ALGORITHM = 'sha256';

// Reject results carry no per-message data, so one frozen object per reason serves every call:
// the reject path allocates nothing beyond the HMAC itself.
const REJECT_TRUNCATED: OpenResult = Object.freeze({ ok: false, reason: 'truncated' });
const REJECT_BAD_MAC: OpenResult = Object.freeze({ ok: false, reason: 'bad-mac' });
const REJECT_VERSION: OpenResult = Object.freeze({ ok: false, reason: 'version' });
const REJECT_TYPE: OpenResult = Object.freeze({ ok: false, reason: 'type' });

function isMessageType(t: number): t is MessageType {
  return (
    t === MessageType.Availability ||
    t === MessageType.LoadVector ||
    t === MessageType.ElectionAdvert ||
    t === MessageType.Replication ||
    t === MessageType.TransmissionAgent
  );
}

/** The format version this build speaks for a type: the high nibble of its version byte. */
export function versionOf(type: MessageType): number {
  return type === MessageType.Replication ? REPLICATION_WIRE_VERSION : WIRE_VERSION;
}

/**
 * The cluster key as the sealing functions take it: the raw bytes, or a KeyObject made once from them
 * (crypto.createSecretKey): a sender that seals often (replication) then skips importing the key at
 * every HMAC (measured within noise of the raw key here: 4-7 µs per small frame either way).
 */
export type SealKey = Buffer | KeyObject;

/** HMAC-SHA256(key, msg[0, end)), full 32 bytes. */
function mac(key: SealKey, msg: Uint8Array, end: number): Buffer {
  return createHmac(HMAC_ALGORITHM, key).update(msg.subarray(0, end)).digest();
}

/**
 * Wraps `body` for the wire: `body ‖ version byte ‖ tag`. Throws RangeError for a type this build
 * does not define (a programming error on the sending side, never input from the network).
 */
export function seal(type: MessageType, body: Uint8Array, key: SealKey): Buffer {
  if (!isMessageType(type)) throw new RangeError(`unknown wire message type ${String(type)}`);
  const n = body.length;
  const msg = Buffer.allocUnsafe(n + ENVELOPE_OVERHEAD_BYTES);
  msg.set(body, 0);
  msg[n] = (versionOf(type) << 4) | type;
  mac(key, msg, n + 1).copy(msg, n + 1, 0, TAG_BYTES);
  return msg;
}

/**
 * seal() in place, for a sender that builds its record in one buffer (replication: `u32 length ‖
 * body ‖ version byte ‖ tag`, one allocation and one socket write per frame): the body is
 * `buf[start, start + bodyBytes)`; the version byte and the tag are written after it, so `buf` needs
 * ENVELOPE_OVERHEAD_BYTES of room there. The bytes from `start` on are then exactly what seal()
 * returns for that body. Throws RangeError for an unknown type or a buffer without that room.
 */
export function sealAt(type: MessageType, buf: Buffer, start: number, bodyBytes: number, key: SealKey): void {
  if (!isMessageType(type)) throw new RangeError(`unknown wire message type ${String(type)}`);
  const end = start + bodyBytes;
  if (!(start >= 0 && bodyBytes >= 0 && end + ENVELOPE_OVERHEAD_BYTES <= buf.length)) {
    throw new RangeError(`sealAt: no room for the envelope after ${bodyBytes} body bytes at ${start} in ${buf.length}`);
  }
  buf[end] = (versionOf(type) << 4) | type;
  createHmac(HMAC_ALGORITHM, key).update(buf.subarray(start, end + 1)).digest().copy(buf, end + 1, 0, TAG_BYTES);
}

/**
 * Authenticates a received message and returns its type and body (a view into `msg`, not a copy).
 * Never throws on any input: every datagram an attacker can send ends in a reject reason. The body's
 * length is not checked here; the type's decoder returns null when it is wrong ('malformed').
 */
export function open(msg: Buffer, key: SealKey): OpenResult {
  const len = msg.length;
  if (len < ENVELOPE_OVERHEAD_BYTES) return REJECT_TRUNCATED;
  const signed = len - TAG_BYTES;
  const expected = mac(key, msg, signed);
  // Both views are exactly TAG_BYTES long, as timingSafeEqual requires.
  if (!timingSafeEqual(expected.subarray(0, TAG_BYTES), msg.subarray(signed, len))) return REJECT_BAD_MAC;
  const versionByte = msg[signed - 1]!;
  const type = versionByte & 0x0f;
  if (!isMessageType(type)) return versionByte >>> 4 === WIRE_VERSION || versionByte >>> 4 === REPLICATION_WIRE_VERSION ? REJECT_TYPE : REJECT_VERSION;
  if (versionByte >>> 4 !== versionOf(type)) return REJECT_VERSION;
  return { ok: true, type, body: msg.subarray(0, signed - 1) };
}
