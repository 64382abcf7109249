/**
 * @module Wire timestamps: wall-clock milliseconds carried as u32 (mod 2^32, which wraps every
 * ~49.7 days) and unwrapped by the receiver to the full value nearest its own clock. Correct as long
 * as sender and receiver clocks, plus any planned-failure lead time, are within ±2^31 ms (~24.8
 * days) of each other; the replay guard's freshness window is far tighter anyway.
 */

/** 2^32: the modulus of a wire timestamp. */
export const WIRE_TIMESTAMP_MODULUS = 0x1_0000_0000;
const HALF_MODULUS = 0x8000_0000;

/** wallMs mod 2^32, in [0, 2^32). Fractional milliseconds are floored. */
export function wireTimestamp(wallMs: number): number {
  // ToUint32 (>>> 0) is an exact modulo 2^32 for every integral double, negative ones included.
  return Math.floor(wallMs) >>> 0;
}

/**
 * The full wall-clock ms whose low 32 bits are `ts` and which is nearest to `nowWallMs`: within
 * [now - 2^31, now + 2^31). A heartbeat sent just before the counter wrapped, received just after,
 * unwraps to the past; a planned failure announced just before the wrap for a time after it unwraps
 * to the future.
 */
export function unwrapTimestamp(ts: number, nowWallMs: number): number {
  const now = Math.floor(nowWallMs);
  let delta = (ts >>> 0) - (now >>> 0); // in (-2^32, 2^32)
  if (delta >= HALF_MODULUS) delta -= WIRE_TIMESTAMP_MODULUS;
  else if (delta < -HALF_MODULUS) delta += WIRE_TIMESTAMP_MODULUS;
  return now + delta;
}
