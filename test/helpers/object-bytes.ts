/**
 * @module The content of the failover tests' objects: byte i of object `seed` is a pure function
 * (murmur3's fmix32 of the word index and seed, 4 bytes per word, no period), so the backend fixture
 * serves it and a test knows every byte a client must receive. test/fixtures/failover-backend.mjs
 * imports the compiled form of this file.
 */
export function objectBytes(seed: number, start: number, end: number): Buffer {
  const out = Buffer.allocUnsafe(end - start);
  for (let i = start; i < end; i++) {
    const w = i >>> 2;
    let x = (Math.imul(w, 0x9e3779b1) ^ Math.imul(seed, 0x85ebca6b)) >>> 0;
    x ^= x >>> 16;
    x = Math.imul(x, 0x85ebca6b);
    x ^= x >>> 13;
    x = Math.imul(x, 0xc2b2ae35);
    x ^= x >>> 16;
    out[i - start] = (x >>> ((i & 3) * 8)) & 0xff;
  }
  return out;
}
