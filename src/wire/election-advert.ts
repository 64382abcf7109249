/**
 * @module The election advertisement body (20 bytes): group u16 @0, sender u16 @2, priority u8 @4,
 * flags u8 @5, interval ms u16 @6, epoch u32 @8, seq u32 @12, timestamp u32 @16, big-endian. The
 * full layout and its envelope are documented in envelope.ts. What the fields mean to the election
 * is replication/election.ts's (RFC 5798 §5.2 fields, adapted: no IP header, an epoch added).
 */

export const ELECTION_ADVERT_BYTES = 20;

/** Priority 0 in an advert: the master is resigning, backups take over after Skew_Time (RFC 5798 §6.4.3). */
export const PRIORITY_RESIGN = 0;
/** Priority 255: the VIP's owner, which always preempts (RFC 5798 §5.2.4). */
export const PRIORITY_OWNER = 255;

/** Flag bit 0: the sender preempts lower-priority masters. Bits 1-7 are reserved and must be 0. */
const FLAG_PREEMPT = 0x01;

export interface ElectionAdvert {
  /** u16: the group (one VIP and the services that move with it), VRRP's VRID widened to 16 bits. */
  group: number;
  /** u16: the sending dispatcher's id; breaks priority ties (RFC 5798 uses the primary IP address). */
  sender: number;
  /** u8: 0 = resigning, 1-254, 255 = owner. */
  priority: number;
  /** Whether the sender preempts (informational: lets peers report a configuration mismatch). */
  preempt: boolean;
  /** u16, 1-65535: the sender's advertisement interval in ms (Master_Adver_Interval for backups). */
  intervalMs: number;
  /** u32: the sender's master epoch; it grows at each takeover. */
  epoch: number;
  /** u32, +1 per advert of this group from this sender, wraps at 2^32 (replay-guard.ts). */
  seq: number;
  /** u32: wall-clock ms mod 2^32 at send time (timestamp.ts). */
  timestamp: number;
}

/** The fields the state machine decides; the transport adds seq and timestamp when it sends. */
export type AdvertFields = Omit<ElectionAdvert, 'seq' | 'timestamp'>;

/**
 * The 20-byte body. Throws RangeError (ERR_OUT_OF_RANGE) when a field does not fit its width or
 * the interval is 0: the sender's bug, caught before anything is sent.
 */
export function encodeElectionAdvert(a: ElectionAdvert): Buffer {
  if (a.intervalMs === 0) throw new RangeError('intervalMs: expected 1-65535, received 0');
  const b = Buffer.allocUnsafe(ELECTION_ADVERT_BYTES);
  b.writeUInt16BE(a.group, 0);
  b.writeUInt16BE(a.sender, 2);
  b.writeUInt8(a.priority, 4);
  b.writeUInt8(a.preempt ? FLAG_PREEMPT : 0, 5);
  b.writeUInt16BE(a.intervalMs, 6);
  b.writeUInt32BE(a.epoch, 8);
  b.writeUInt32BE(a.seq, 12);
  b.writeUInt32BE(a.timestamp, 16);
  return b;
}

/** Decodes an authenticated body; null when its length is wrong, a reserved flag is set or the interval is 0. */
export function decodeElectionAdvert(body: Buffer): ElectionAdvert | null {
  if (body.length !== ELECTION_ADVERT_BYTES) return null;
  const flags = body[5]!;
  if ((flags & ~FLAG_PREEMPT) !== 0) return null;
  const intervalMs = body.readUInt16BE(6);
  if (intervalMs === 0) return null;
  return {
    group: body.readUInt16BE(0),
    sender: body.readUInt16BE(2),
    priority: body[4]!,
    preempt: (flags & FLAG_PREEMPT) !== 0,
    intervalMs,
    epoch: body.readUInt32BE(8),
    seq: body.readUInt32BE(12),
    timestamp: body.readUInt32BE(16),
  };
}
