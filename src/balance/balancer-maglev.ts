/**
 * @module Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and Reliable Software Network
 * Load Balancer", NSDI 2016, §3.4): a lookup table of M entries (M prime) filled from one permutation
 * of the table's slots per backend, so that every dispatcher holding the same backends maps the same
 * key (a SIP Call-ID, a cookie, a flow's client address and port) to the same backend with no shared
 * state, each backend owns M/N entries (±1), and a backend that joins or leaves moves about 1/N of
 * the keys. `services[].balancer: maglev`, table size `services[].maglev.tableSize` (default 65537).
 */
import { createHash } from 'node:crypto';
import type { Balancer, Candidate, PickResult } from './balancer.js';

/** The paper's default table size (§3.4: M prime and much larger than the number of backends). */
export const MAGLEV_DEFAULT_TABLE_SIZE = 65537;
/** Smallest and largest table sizes accepted (the largest: 4 MiB of Int32 entries). */
export const MAGLEV_MIN_TABLE_SIZE = 7;
export const MAGLEV_MAX_TABLE_SIZE = 1048573;

const NONE: PickResult<never> = Object.freeze({ type: 'none' });

export function isPrime(n: number): boolean {
  if (!Number.isInteger(n) || n < 2) return false;
  if (n % 2 === 0) return n === 2;
  for (let d = 3; d * d <= n; d += 2) if (n % d === 0) return false;
  return true;
}

/** One backend's permutation of the table's slots: slot j of its preference list is (offset + j·skip) mod M. */
export interface MaglevPermutation {
  readonly offset: number;
  readonly skip: number;
  /** Relative weight (> 0); the heaviest backend takes one turn per round, the others proportionally fewer. */
  readonly weight: number;
}

/**
 * The paper's offset and skip of a backend named `name` (§3.4: offset = h1(name) mod M,
 * skip = h2(name) mod (M − 1) + 1): h1 and h2 are the first two big-endian 32-bit words of
 * SHA-256(name), the same in every process.
 */
export function maglevPermutation(name: string, tableSize: number, weight = 1): MaglevPermutation {
  const digest = createHash('sha256').update(name, 'utf8').digest();
  const h1 = digest.readUInt32BE(0);
  const h2 = digest.readUInt32BE(4);
  return { offset: h1 % tableSize, skip: (h2 % (tableSize - 1)) + 1, weight };
}

/**
 * Pseudocode 1 of the paper: the backends take turns, each claiming the next slot of its own
 * permutation that is still empty, until all M slots are taken. Returns, per slot, the index of the
 * backend in `perms` (−1 only when `perms` is empty). Weights: a backend of weight w takes a turn
 * in a round when its credit, growing by w / max weight per round, reaches one; equal weights give
 * exactly the paper's order.
 */
export function populateMaglev(perms: readonly MaglevPermutation[], tableSize: number): Int32Array {
  const entry = new Int32Array(tableSize).fill(-1);
  const n = perms.length;
  if (n === 0) return entry;
  let maxWeight = 0;
  for (const p of perms) if (p.weight > maxWeight) maxWeight = p.weight;
  // pos[i]: the slot at next[i] of backend i's permutation, advanced by skip (mod M) per step.
  const pos = new Float64Array(n);
  const credit = new Float64Array(n);
  for (let i = 0; i < n; i++) pos[i] = perms[i]!.offset;
  let filled = 0;
  for (;;) {
    for (let i = 0; i < n; i++) {
      const p = perms[i]!;
      credit[i]! += p.weight / maxWeight;
      while (credit[i]! >= 1 - 1e-12) {
        credit[i]! -= 1;
        let c = pos[i]!;
        while (entry[c]! >= 0) c = (c + p.skip) % tableSize;
        entry[c] = i;
        pos[i] = (c + p.skip) % tableSize;
        if (++filled === tableSize) return entry;
      }
    }
  }
}

/**
 * The Maglev balancer. `pick(hash)` is one table read; `pick()` without a key walks the table in
 * order (each backend still gets its share). The table is rebuilt only when the set of eligible
 * backends or their weights change: a health change of one backend rebuilds it, an update with the
 * same backends does not. Backends are ordered by id before the table is filled, so the table does
 * not depend on the order in which a dispatcher learnt of them.
 */
export class MaglevBalancer<T extends Candidate> implements Balancer<T> {
  readonly name = 'maglev';
  readonly hashesKeys = true;
  private picks: PickResult<T>[] = [];
  private table: Int32Array;
  private cursor = 0;
  /** Ids and weights of the backends the table was built from, to skip needless rebuilds. */
  private built = '';
  private readonly perms = new Map<string, MaglevPermutation>();

  constructor(readonly tableSize: number = MAGLEV_DEFAULT_TABLE_SIZE) {
    if (!isPrime(tableSize) || tableSize < MAGLEV_MIN_TABLE_SIZE || tableSize > MAGLEV_MAX_TABLE_SIZE) {
      throw new RangeError(`maglev table size: expected a prime in [${MAGLEV_MIN_TABLE_SIZE}, ${MAGLEV_MAX_TABLE_SIZE}], received ${tableSize}`);
    }
    this.table = new Int32Array(tableSize).fill(-1);
  }

  update(eligible: readonly T[]): void {
    const members = eligible.filter((b) => b.weight > 0).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    const signature = members.map((b) => `${b.id}\u0000${b.weight}`).join('\u0001');
    const sameObjects = members.length === this.picks.length && members.every((b, i) => (this.picks[i] as { backend: T }).backend === b);
    if (signature === this.built && sameObjects) return;
    this.picks = members.map((backend) => Object.freeze({ type: 'pick', backend }) as PickResult<T>);
    if (signature === this.built) return;
    this.built = signature;
    const perms = members.map((b) => this.permutationOf(b.id, b.weight));
    this.table = populateMaglev(perms, this.tableSize);
  }

  pick(hash?: number): PickResult<T> {
    const picks = this.picks;
    if (picks.length === 0) return NONE;
    let slot: number;
    if (hash === undefined) {
      slot = this.cursor;
      this.cursor = slot + 1 === this.tableSize ? 0 : slot + 1;
    } else {
      slot = (hash >>> 0) % this.tableSize;
    }
    return picks[this.table[slot]!]!;
  }

  /** The backend id of every slot, in order (tests, the bench's disruption figure). */
  entries(): string[] {
    return Array.from(this.table, (i) => (i < 0 ? '' : (this.picks[i] as { backend: T }).backend.id));
  }

  private permutationOf(id: string, weight: number): MaglevPermutation {
    let p = this.perms.get(id);
    if (p === undefined) {
      p = maglevPermutation(id, this.tableSize);
      if (this.perms.size > 100_000) this.perms.clear(); // bound the cache: ids seen over a long life
      this.perms.set(id, p);
    }
    return weight === p.weight ? p : { offset: p.offset, skip: p.skip, weight };
  }
}
