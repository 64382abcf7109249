/**
 * @module The hash of a flow's or session's key that key-hashing balancers (Maglev) look up. Every
 * dispatcher must compute the same number for the same key with no shared state, so it is a fixed
 * function of the key's characters: FNV-1a (32 bits) over its UTF-16 code units, then a murmur3
 * finaliser so that keys differing only in their last characters spread over the whole range.
 */

const FNV_OFFSET_32 = 0x811c9dc5;
const FNV_PRIME_32 = 0x01000193;

/** A 32-bit unsigned hash of `key`, the same in every process and on every machine. */
export function keyHash(key: string): number {
  let h = FNV_OFFSET_32;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, FNV_PRIME_32);
  }
  return mix32(h);
}

/** The hash of a flow's client side (address and port): the key of a flow that has no session key. */
export function flowHash(address: string, port: number): number {
  return mix32(keyHash(address) ^ Math.imul(port + 1, 0x9e3779b1));
}

/** murmur3's fmix32: a bijection on 32-bit integers with full avalanche. */
export function mix32(x: number): number {
  let h = x | 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
