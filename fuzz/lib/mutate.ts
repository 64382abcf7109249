/**
 * @module A seeded mutational fuzzer's pieces: mutations of a corpus of real messages that aim at
 * the bytes parsers disagree on (line ends, separators, framing field names and values, digits,
 * control bytes), drawn from the benchmarks' seeded PRNG so that a failure replays from its seed.
 */

import { prng } from '../../bench/lib/prng.js';

export type Rand = () => number;

export { prng };

export const int = (rand: Rand, below: number): number => Math.floor(rand() * below);

/** Tokens that framing parsers treat specially: inserting them is how smuggling vectors are made. */
const TOKENS = [
  '\r\n', '\n', '\r', ' ', '\t', ':', ';', ',', '\0', '\x0b', '\x7f', '\xff', '0', '00', '-1', '+1', 'ffffffffffffffffff',
  'Content-Length: ', 'Transfer-Encoding: chunked', 'Transfer-Encoding: identity', 'chunked', 'Connection: ',
  'Content-Length', 'Transfer-Encoding', 'Host: ', 'HTTP/1.1', 'HTTP/1.0', 'GET ', 'POST ', '\r\n\r\n', '0\r\n\r\n',
  '5\r\nhello\r\n', ';ext=1', 'Expect: 100-continue', 'Upgrade: websocket', '"', '\\', 'http://a/', '@', '%00',
];

/** One random mutation of `input` (never empty: an empty input is one byte). */
export function mutate(rand: Rand, input: Buffer): Buffer {
  const b = Buffer.from(input);
  const at = (): number => int(rand, b.length + 1);
  switch (int(rand, 9)) {
    case 0: {
      // flip bits
      for (let k = 1 + int(rand, 3); k > 0 && b.length > 0; k--) {
        const i = int(rand, b.length);
        b[i] = b[i]! ^ (1 << int(rand, 8));
      }
      return b;
    }
    case 1: {
      // set a byte to anything
      if (b.length > 0) b[int(rand, b.length)] = int(rand, 256);
      return b;
    }
    case 2:
    case 3: {
      // insert a token
      const i = at();
      return Buffer.concat([b.subarray(0, i), Buffer.from(TOKENS[int(rand, TOKENS.length)]!, 'latin1'), b.subarray(i)]);
    }
    case 4: {
      // delete a range
      const i = at();
      const n = 1 + int(rand, 8);
      const out = Buffer.concat([b.subarray(0, i), b.subarray(i + n)]);
      return out.length > 0 ? out : Buffer.from('x');
    }
    case 5: {
      // duplicate a range (a repeated header line, a doubled chunk)
      const i = at();
      const n = 1 + int(rand, 40);
      return Buffer.concat([b.subarray(0, i + n), b.subarray(i, i + n), b.subarray(i + n)]);
    }
    case 6: {
      // change the case of a letter
      const i = int(rand, Math.max(1, b.length));
      const c = b[i];
      if (c !== undefined && ((c >= 65 && c <= 90) || (c >= 97 && c <= 122))) b[i] = c ^ 0x20;
      return b;
    }
    case 7: {
      // replace a digit run with another number
      const text = b.toString('latin1');
      const m = [...text.matchAll(/\d+/g)];
      if (m.length === 0) return b;
      const pick = m[int(rand, m.length)]!;
      const n = ['0', '1', '9', '10', '65536', '007', '9007199254740993', String(int(rand, 100))][int(rand, 8)]!;
      return Buffer.from(text.slice(0, pick.index) + n + text.slice(pick.index! + pick[0].length), 'latin1');
    }
    default: {
      // truncate
      return b.subarray(0, Math.max(1, int(rand, b.length + 1)));
    }
  }
}

/** `rounds` stacked mutations of a corpus entry. */
export function mutant(rand: Rand, corpus: readonly Buffer[]): Buffer {
  let b = corpus[int(rand, corpus.length)]!;
  for (let k = 1 + int(rand, 4); k > 0; k--) b = mutate(rand, b);
  return b;
}
