/**
 * The short seeded fuzz run inside `npm test` (issue 18): every target, 20 000 inputs each from a
 * fixed seed, must keep its property; and the differential oracle itself is checked on vectors
 * whose answer is known (it must be able to fail).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fuzzTarget } from './run.js';
import { TARGETS } from './targets.js';
import { disagreement, frameHoldfast, frameLlhttp } from './http-framing.js';

const INPUTS = 20_000;
const SEED = 20_261_207;

for (const t of TARGETS) {
  test(`fuzz ${t.name}: ${INPUTS} seeded inputs keep the property`, () => {
    const r = fuzzTarget(t, INPUTS, SEED);
    assert.deepEqual(r.failures.map((f) => `${f.what.split('\n')[0]} <= ${f.inputHex}`), []);
  });
}

test('the differential oracle: the same framing agrees; a request llhttp frames differently is caught', () => {
  const ok = Buffer.from('POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc', 'latin1');
  assert.equal(disagreement(ok), null);
  assert.equal(frameHoldfast(ok).kind, 'request');
  assert.equal(frameLlhttp(ok).kind, 'request');
  // Refused by both: holdfast stricter or equal is fine.
  assert.equal(disagreement(Buffer.from('POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx', 'latin1')), null);
  // The fixed findings stay fixed: each was a disagreement before the parser followed llhttp.
  for (const vector of [
    'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\xa0chunked\r\n\r\n0\r\n\r\n',
    'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\t\r\n\r\n0\r\n\r\n',
    'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked,\r\n\r\n0\r\n\r\n',
    'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\t\r\n\r\nx',
    'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1 \r\nx\r\n0\r\n\r\n',
    'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1;a:=b\r\nx\r\n0\r\n\r\n',
    'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nContent-Length: 5\r\n\r\n',
    "POST 'up HTTP/1.1\r\nHost: a\r\n\r\n",
    'GET http://a#b/ HTTP/1.1\r\nHost: a\r\n\r\n',
    'OST / HTTP/1.1\r\nHost: a\r\n\r\n',
  ]) {
    const input = Buffer.from(vector, 'latin1');
    assert.equal(frameLlhttp(input).kind, 'reject', `llhttp refuses ${JSON.stringify(vector)}`);
    assert.equal(frameHoldfast(input).kind, 'reject', `holdfast refuses ${JSON.stringify(vector)}`);
  }
});
