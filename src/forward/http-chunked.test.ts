import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChunkedScanner } from './http-chunked.js';

const b = (s: string) => Buffer.from(s, 'latin1');

function scanAll(input: string, split = 0): { consumed: number; done: boolean; error: string } {
  const s = new ChunkedScanner();
  const buf = b(input);
  if (split > 0) {
    let total = 0;
    for (let i = 0; i < buf.length; i += split) {
      const end = Math.min(buf.length, i + split);
      const n = s.scan(buf, i, end);
      if (n < 0) return { consumed: -1, done: false, error: s.error };
      total += n;
      if (s.done) break;
    }
    return { consumed: total, done: s.done, error: s.error };
  }
  const n = s.scan(buf, 0, buf.length);
  return { consumed: n, done: s.done, error: s.error };
}

test('a chunked body ends after the last chunk and the empty trailer', () => {
  const body = '5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n';
  assert.deepEqual(scanAll(body + 'GET / HTTP/1.1\r\n'), { consumed: body.length, done: true, error: '' });
});

test('every split of the input gives the same answer', () => {
  const body = '1a;name=value\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: 1\r\n\r\n';
  for (let split = 1; split <= body.length; split++) {
    assert.deepEqual(scanAll(body, split), { consumed: body.length, done: true, error: '' }, `split ${split}`);
  }
});

test('upper-case hex, extensions and trailers are accepted', () => {
  const body = 'A;x;y=1;z="q \\"s"\r\n0123456789\r\n0\r\nA: b\r\nC: d\r\n\r\n';
  assert.equal(scanAll(body).consumed, body.length);
});

// Issue 18's differential fuzzer against llhttp (strict): what it refuses, the scanner refuses too.
for (const [name, input, why] of [
  ['whitespace after the size', 'A ;x\r\n0123456789\r\n0\r\n\r\n', 'whitespace after chunk size'],
  ['an extension name with ":"', '5;ext:=v\r\nhello\r\n0\r\n\r\n', 'malformed chunk extension'],
  ['an empty extension', '5;\r\nhello\r\n0\r\n\r\n', 'malformed chunk extension'],
  ['a trailer line without ":"', '0\r\nX-T0\r\n\r\n', 'malformed trailer field'],
  ['Content-Length in a trailer', '0\r\nContent-Length: 5\r\n\r\n', 'framing field in trailer'],
  ['Transfer-Encoding in a trailer', '0\r\ntransfer-encoding: chunked\r\n\r\n', 'framing field in trailer'],
] as const) {
  test(`refused (llhttp refuses it): ${name}`, () => {
    assert.equal(scanAll(input).error, why);
  });
}

test('an incomplete body consumes everything and is not done', () => {
  const r = scanAll('10\r\nonly-part');
  assert.deepEqual(r, { consumed: 13, done: false, error: '' });
});

for (const [name, input, why] of [
  ['non-hex size', 'zz\r\n', 'chunk size is not hexadecimal'],
  ['empty size', '\r\n', 'chunk size is not hexadecimal'],
  ['negative size', '-1\r\n', 'chunk size is not hexadecimal'],
  ['17 hex digits', '00000000000000001\r\n', 'chunk size has too many digits'],
  ['size beyond 2^53', 'FFFFFFFFFFFFFF\r\n', 'chunk size too large'],
  ['bare LF after size', '5\nhello\r\n', 'chunk size is not hexadecimal'],
  ['data longer than size', '5\r\nhello!\r\n', 'chunk data not followed by CRLF'],
  ['data not followed by CRLF', '5\r\nhelloXY', 'chunk data not followed by CRLF'],
  ['bare LF in trailer', '0\r\nA: b\n\r\n', 'bare LF in trailer'],
  ['garbage after size', '5x\r\nhello\r\n', 'chunk size is not hexadecimal'],
] as const) {
  test(`refuses ${name}`, () => {
    const r = scanAll(input);
    assert.equal(r.consumed, -1);
    assert.equal(r.error, why);
  });
}

test('onData receives exactly the decoded body, and position tracks where the stream stands', () => {
  const s = new ChunkedScanner();
  const input = b('5\r\nhello\r\n6;x=1\r\n world\r\n0\r\n\r\n');
  const parts: string[] = [];
  const positions: string[] = [];
  for (let i = 0; i < input.length; i++) {
    s.scan(input, i, i + 1, (buf, from, to) => parts.push(Buffer.from(buf.subarray(from, to)).toString('latin1')));
    positions.push(s.position);
  }
  assert.equal(parts.join(''), 'hello world');
  // After "5\r\n" (3 bytes) the scanner is inside data with 5 bytes to come.
  assert.equal(positions[2], 'data');
  assert.equal(positions[7], 'data-crlf'); // "hello" consumed, CRLF expected
  assert.equal(positions[8], 'data-lf');
  assert.equal(positions[9], 'boundary'); // after the CRLF, before the next size
  const mid = new ChunkedScanner();
  mid.scan(b('a\r\n0123'), 0, 7);
  assert.equal(mid.position, 'data');
  assert.equal(mid.chunkRemaining, 6);
});
