/**
 * @module The availability announcement body (SARA Fig. 6, 11 bytes): Host_Identity u16 @0,
 * Seq_Nber u32 @2, Flag u8 @6, Timestamp u32 @7, big-endian. The full layout and its envelope are
 * documented in envelope.ts. Flag bit 7 says the node is reached through a sibling (HANet), bit 6
 * that the agent was starved of CPU just before this send (issue 17): extensions older dispatchers
 * never see from a node that is neither relayed nor starved.
 */

export const AVAILABILITY_BYTES = 11;

/**
 * SARA §III.E's three availability events, in wire order: flag 1 = node and application available,
 * 2 = node available but application unavailable, 3 = planned failure at `timestamp`.
 */
export type AvailabilityFlag = 'available' | 'app-unavailable' | 'planned-failure';

export interface Availability {
  host: number;
  seq: number;
  flag: AvailabilityFlag;
  /** u32 as sent: wall-clock ms mod 2^32 (send time, or the planned failure time for flag 3). */
  timestamp: number;
  /** Flag bit 7: the node's public links failed and a sibling relays its packets (HANet). Absent = false. */
  viaSibling?: boolean;
  /**
   * Flag bit 6: this announcement ends a silence that was the agent's own starvation — it went out
   * at least one interval late and the agent's thread spent at least half that lateness waiting
   * for a CPU (run-queue wait), so the agent was runnable, not stopped, and the path not cut.
   * Absent = false.
   */
  starved?: boolean;
}

/** Flag bit 7 (HANet): the node is reached through a sibling. */
export const FLAG_VIA_SIBLING = 0x80;
/** Flag bit 6 (issue 17): the agent was starved of CPU before this send. */
export const FLAG_STARVED = 0x40;
/** Bits 0-5: the availability event code. */
const FLAG_CODE_MASK = 0x3f;

/** Index = wire value; 0 and anything above 3 are malformed. */
const FLAG_BY_CODE: readonly (AvailabilityFlag | undefined)[] = [undefined, 'available', 'app-unavailable', 'planned-failure'];

function flagCode(flag: AvailabilityFlag): number {
  switch (flag) {
    case 'available':
      return 1;
    case 'app-unavailable':
      return 2;
    case 'planned-failure':
      return 3;
    default:
      throw new RangeError(`unknown availability flag ${JSON.stringify(flag)}`);
  }
}

/**
 * The 11-byte body. Throws RangeError (ERR_OUT_OF_RANGE) when a field does not fit its width:
 * the sender's bug, caught before anything is sent.
 */
export function encodeAvailability(a: Availability): Buffer {
  const b = Buffer.allocUnsafe(AVAILABILITY_BYTES);
  b.writeUInt16BE(a.host, 0);
  b.writeUInt32BE(a.seq, 2);
  b.writeUInt8(flagCode(a.flag) | (a.viaSibling === true ? FLAG_VIA_SIBLING : 0) | (a.starved === true ? FLAG_STARVED : 0), 6);
  b.writeUInt32BE(a.timestamp, 7);
  return b;
}

/** Decodes an authenticated body; null when its length or flag (bits 0-5) is not one this version defines. */
export function decodeAvailability(body: Buffer): Availability | null {
  if (body.length !== AVAILABILITY_BYTES) return null;
  const byte = body[6]!;
  const code = byte & FLAG_CODE_MASK;
  // Range check first: an out-of-bounds array read would walk the prototype chain.
  if (code < 1 || code > 3) return null;
  const flag = FLAG_BY_CODE[code]!;
  const a: Availability = { host: body.readUInt16BE(0), seq: body.readUInt32BE(2), flag, timestamp: body.readUInt32BE(7) };
  if ((byte & FLAG_VIA_SIBLING) !== 0) a.viaSibling = true;
  if ((byte & FLAG_STARVED) !== 0) a.starved = true;
  return a;
}
