/**
 * @module The load vector body (22 bytes): host u16 @0, seq u32 @2, timestamp u32 @6, then six
 * utilisations in [0,1] as u16 fixed point (cpu @10, memory @12, network @14, io @16, backlog @18,
 * load @20), big-endian. The full layout and its envelope are documented in envelope.ts.
 */

export const LOAD_VECTOR_BYTES = 22;

/** Full scale of the u16 fixed-point encoding: x in [0,1] travels as round(x * FIXED_POINT_SCALE). */
export const FIXED_POINT_SCALE = 65535;

export interface LoadVector {
  host: number;
  seq: number;
  /** u32 as sent: wall-clock ms mod 2^32 at send time. */
  timestamp: number;
  cpu: number;
  memory: number;
  network: number;
  io: number;
  backlog: number;
  /** The agent's weighted scalar load (SARA's l_i), what the balancers use. */
  load: number;
}

/**
 * x in [0,1] → u16. Out-of-range inputs are clamped and NaN becomes 0: a normaliser that overshoots
 * (a queue longer than its reference length) still reports "fully loaded", never a wrapped value.
 * Resolution 1/65535 ≈ 1.5e-5, far below the noise of any load sample.
 */
export function toFixedPoint(x: number): number {
  if (!(x > 0)) return 0; // also NaN
  if (x >= 1) return FIXED_POINT_SCALE;
  return Math.round(x * FIXED_POINT_SCALE);
}

/** u16 → x in [0,1]. */
export function fromFixedPoint(v: number): number {
  return v / FIXED_POINT_SCALE;
}

/** The 22-byte body. Throws RangeError when host, seq or timestamp do not fit their width. */
export function encodeLoadVector(v: LoadVector): Buffer {
  const b = Buffer.allocUnsafe(LOAD_VECTOR_BYTES);
  b.writeUInt16BE(v.host, 0);
  b.writeUInt32BE(v.seq, 2);
  b.writeUInt32BE(v.timestamp, 6);
  b.writeUInt16BE(toFixedPoint(v.cpu), 10);
  b.writeUInt16BE(toFixedPoint(v.memory), 12);
  b.writeUInt16BE(toFixedPoint(v.network), 14);
  b.writeUInt16BE(toFixedPoint(v.io), 16);
  b.writeUInt16BE(toFixedPoint(v.backlog), 18);
  b.writeUInt16BE(toFixedPoint(v.load), 20);
  return b;
}

/** Decodes an authenticated body; null when its length is wrong (every u16 value is a valid x). */
export function decodeLoadVector(body: Buffer): LoadVector | null {
  if (body.length !== LOAD_VECTOR_BYTES) return null;
  return {
    host: body.readUInt16BE(0),
    seq: body.readUInt32BE(2),
    timestamp: body.readUInt32BE(6),
    cpu: body.readUInt16BE(10) / FIXED_POINT_SCALE,
    memory: body.readUInt16BE(12) / FIXED_POINT_SCALE,
    network: body.readUInt16BE(14) / FIXED_POINT_SCALE,
    io: body.readUInt16BE(16) / FIXED_POINT_SCALE,
    backlog: body.readUInt16BE(18) / FIXED_POINT_SCALE,
    load: body.readUInt16BE(20) / FIXED_POINT_SCALE,
  };
}
