/**
 * @module Replay and freshness checks for authenticated control messages: a freshness window on the
 * sender's timestamp and, per (host, type), a sliding bitmap of recently seen sequence numbers
 * (the IPsec/DTLS anti-replay window, RFC 4303 §3.4.3, kept as a bit ring as in RFC 6479).
 */
import type { MessageType } from './envelope.js';

/** Default freshness window: a message whose timestamp is further than this from now is 'stale'. */
export const REPLAY_WINDOW_MS = 5000;
/** Default number of most recent sequence numbers remembered per (host, type). */
export const REPLAY_BITMAP_SEQS = 64;
/** Largest accepted `bitmap` option: 8 KiB of bits per (host, type). */
export const REPLAY_BITMAP_MAX_SEQS = 65536;

export type ReplayVerdict = 'ok' | 'replay' | 'stale';

/** What the guard remembers about one (host, type) stream: O(bitmap) bits, nothing per message. */
interface StreamState {
  /** Highest sequence number accepted (u32; compared in serial-number arithmetic, RFC 1982). */
  highest: number;
  /** Newest timestamp (full wall ms) accepted on this stream: tells a restarted agent from a replay. */
  newestTs: number;
  /** Bit (seq mod ring size) set = seq seen, for seqs in (highest - ringSize, highest]. */
  readonly bits: Uint32Array;
}

/**
 * Decides whether an authenticated message is fresh and new. One instance per receiver; memory is
 * one small record per (host, type) ever seen (at most 2^16 hosts × the message types), never per
 * message.
 *
 * Rules, in order:
 * - 'stale' when |timestampWallMs - nowWallMs| > windowMs. A planned-failure announcement carries
 *   the future failure time instead of its send time, so the caller passes the receive time for it
 *   and only the sequence number protects it.
 * - A seq above the highest seen (mod 2^32) is new: 'ok', and the window slides forward.
 * - A seq within the last `bitmap` seqs that was not seen yet (reordered): 'ok' once.
 * - A seq seen already, or older than the bitmap: 'replay' — unless its timestamp is newer than any
 *   accepted on the stream, which only a restarted agent (its counter back at 0) can produce, since
 *   a captured message is never newer than the newest accepted one. Then the stream restarts at
 *   that seq and the message is 'ok'.
 */
export class ReplayGuard {
  readonly #windowMs: number;
  readonly #bitmap: number;
  /** Ring size in bits: a power of two ≥ 32 and ≥ bitmap, so seq mod ring is continuous across 2^32. */
  readonly #ringBits: number;
  readonly #streams = new Map<number, StreamState>();

  constructor(opts?: { windowMs?: number; bitmap?: number }) {
    const windowMs = opts?.windowMs ?? REPLAY_WINDOW_MS;
    const bitmap = opts?.bitmap ?? REPLAY_BITMAP_SEQS;
    if (!(windowMs >= 0)) throw new RangeError(`windowMs: expected a number >= 0, received ${windowMs}`);
    if (!Number.isInteger(bitmap) || bitmap < 1 || bitmap > REPLAY_BITMAP_MAX_SEQS) {
      throw new RangeError(`bitmap: expected an integer in [1, ${REPLAY_BITMAP_MAX_SEQS}], received ${bitmap}`);
    }
    let ring = 32;
    while (ring < bitmap) ring *= 2;
    this.#windowMs = windowMs;
    this.#bitmap = bitmap;
    this.#ringBits = ring;
  }

  /** Number of (host, type) streams remembered. */
  get size(): number {
    return this.#streams.size;
  }

  /** Forgets every stream of `host` (its backend was removed from the configuration). */
  forget(host: number): void {
    for (const key of this.#streams.keys()) if (Math.floor(key / 256) === host) this.#streams.delete(key);
  }

  /**
   * Checks one message and records it when 'ok'. `timestampWallMs` is the unwrapped sender
   * timestamp (timestamp.ts), or the receive time for a planned-failure announcement.
   */
  check(host: number, type: MessageType, seq: number, timestampWallMs: number, nowWallMs: number): ReplayVerdict {
    // Negated comparison so that a NaN timestamp is stale too.
    if (!(Math.abs(timestampWallMs - nowWallMs) <= this.#windowMs)) return 'stale';
    seq >>>= 0;
    const key = host * 256 + type;
    const s = this.#streams.get(key);
    if (s === undefined) {
      const bits = new Uint32Array(this.#ringBits >>> 5);
      this.#streams.set(key, { highest: seq, newestTs: timestampWallMs, bits });
      this.#mark(bits, seq);
      return 'ok';
    }
    // Signed distance from the highest seq, mod 2^32 (RFC 1982 serial-number arithmetic).
    const d = (seq - s.highest) | 0;
    if (d > 0) {
      this.#advance(s, seq, d);
      this.#accept(s, seq, timestampWallMs);
      return 'ok';
    }
    if (d > -this.#bitmap && !this.#seen(s.bits, seq)) {
      this.#accept(s, seq, timestampWallMs);
      return 'ok';
    }
    if (timestampWallMs > s.newestTs) {
      // The agent restarted (or its counter was reset): start the stream over at this seq.
      s.bits.fill(0);
      s.highest = seq;
      this.#accept(s, seq, timestampWallMs);
      return 'ok';
    }
    return 'replay';
  }

  #accept(s: StreamState, seq: number, ts: number): void {
    this.#mark(s.bits, seq);
    if (ts > s.newestTs) s.newestTs = ts;
  }

  /** Slides the window so that `seq` (d above the old highest) is the highest; clears the slots reused. */
  #advance(s: StreamState, seq: number, d: number): void {
    if (d >= this.#ringBits) {
      s.bits.fill(0);
    } else {
      const mask = this.#ringBits - 1;
      for (let i = 1; i <= d; i++) {
        const slot = (s.highest + i) & mask;
        const w = slot >>> 5;
        s.bits[w] = s.bits[w]! & ~(1 << (slot & 31));
      }
    }
    s.highest = seq;
  }

  #mark(bits: Uint32Array, seq: number): void {
    const slot = seq & (this.#ringBits - 1);
    const w = slot >>> 5;
    bits[w] = bits[w]! | (1 << (slot & 31));
  }

  #seen(bits: Uint32Array, seq: number): boolean {
    const slot = seq & (this.#ringBits - 1);
    return (bits[slot >>> 5]! & (1 << (slot & 31))) !== 0;
  }
}
