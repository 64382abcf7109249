/**
 * @module Tests of the chaos origin: the body generators are deterministic per key and distinct
 * across keys, Range/If-Range selection follows RFC 9110, and the server (real sockets, in-process)
 * serves each class as the client expects it.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import {
  BodyStore,
  DET_MAX_BYTES,
  STATIC_MAX_BYTES,
  STATIC_MIN_BYTES,
  PACE_CHUNK_BYTES,
  PACE_SMALL_CHUNK_BYTES,
  parseKey,
  pieceEnd,
  prngBytes,
  selectRange,
  sha256Hex,
  startChaosOrigin,
  staticSize,
  strongEtag,
} from './chaos-origin.js';

test('prngBytes: the same seed gives the same bytes, another seed other bytes, any length', () => {
  const a = prngBytes(7, 1001);
  assert.equal(a.length, 1001);
  assert.deepEqual(prngBytes(7, 1001), a);
  // A longer stream starts with the shorter one (so /det sizes are prefixes of one stream).
  assert.deepEqual(prngBytes(7, 5000).subarray(0, 1001), a);
  assert.notDeepEqual(prngBytes(8, 1001), a);
  assert.equal(prngBytes(0, 0).length, 0);
  // Seed 0 must not be xorshift's all-zero fixed point.
  assert.ok(prngBytes(0, 64).some((b) => b !== 0));
  // Bytes look random enough that a wrong splice cannot go unnoticed: all 256 values appear.
  assert.equal(new Set(prngBytes(3, 65536)).size, 256);
  assert.throws(() => prngBytes(1, -1), RangeError);
});

test('BodyStore: det bodies are prefixes of the key\'s stream; static objects are 1–4 MiB with a strong ETag', () => {
  const store = new BodyStore();
  const small = store.detBody(5, 100);
  const big = store.detBody(5, DET_MAX_BYTES);
  assert.equal(big.length, DET_MAX_BYTES);
  assert.deepEqual(big.subarray(0, 100), small);
  assert.notDeepEqual(store.detBody(6, 100), small);
  assert.throws(() => store.detBody(1, DET_MAX_BYTES + 1), RangeError);

  const sizes = new Set<number>();
  for (let n = 0; n < 8; n++) {
    const obj = store.staticObject(n);
    assert.equal(obj.body.length, staticSize(n));
    assert.ok(obj.body.length >= STATIC_MIN_BYTES && obj.body.length <= STATIC_MAX_BYTES, `size ${obj.body.length}`);
    assert.equal(obj.sha256, createHash('sha256').update(obj.body).digest('hex'));
    assert.equal(obj.etag, strongEtag(obj.body));
    assert.match(obj.etag, /^"sha256-[0-9a-f]{32}"$/);
    sizes.add(obj.body.length);
  }
  assert.ok(sizes.size >= 6, `static sizes should differ: ${[...sizes].join(', ')}`);
  // A second store (another process) builds the same object.
  assert.equal(new BodyStore().staticObject(3).sha256, store.staticObject(3).sha256);
  // Static 3 is not det 3 again.
  assert.notDeepEqual(store.staticObject(3).body.subarray(0, 64), store.detBody(3, 64));
});

test('selectRange: single byte ranges, If-Range, and what is ignored or unsatisfiable', () => {
  const etag = '"sha256-abc"';
  assert.equal(selectRange(undefined, undefined, etag, 1000), null);
  assert.deepEqual(selectRange('bytes=100-', undefined, etag, 1000), { start: 100, end: 999 });
  assert.deepEqual(selectRange('bytes=100-199', undefined, etag, 1000), { start: 100, end: 199 });
  assert.deepEqual(selectRange('bytes=100-5000', undefined, etag, 1000), { start: 100, end: 999 });
  assert.deepEqual(selectRange('bytes=0-', etag, etag, 1000), { start: 0, end: 999 });
  // If-Range with another validator: the object changed, send it whole.
  assert.equal(selectRange('bytes=100-', '"sha256-other"', etag, 1000), null);
  assert.equal(selectRange('bytes=100-', `W/${etag}`, etag, 1000), null);
  assert.equal(selectRange('bytes=1000-', undefined, etag, 1000), 'unsatisfiable');
  // Forms this origin does not honour are ignored (RFC 9110 §14.2 allows it).
  assert.equal(selectRange('bytes=-100', undefined, etag, 1000), null);
  assert.equal(selectRange('bytes=0-1,5-6', undefined, etag, 1000), null);
  assert.equal(selectRange('items=0-', undefined, etag, 1000), null);
  assert.equal(selectRange('bytes=200-100', undefined, etag, 1000), null);
});

test('pieceEnd: small pieces for the first 64 KiB (so held-size replies get cut too), then 64 KiB pieces', () => {
  const pieces = (length: number): number[] => {
    const out: number[] = [];
    for (let off = 0; off < length; ) out.push((off = pieceEnd(off, length)));
    return out;
  };
  assert.deepEqual(pieces(1000), [1000]);
  assert.deepEqual(pieces(2 * PACE_SMALL_CHUNK_BYTES + 1), [PACE_SMALL_CHUNK_BYTES, 2 * PACE_SMALL_CHUNK_BYTES, 2 * PACE_SMALL_CHUNK_BYTES + 1]);
  const big = pieces(1024 * 1024);
  assert.equal(big.length, 65536 / PACE_SMALL_CHUNK_BYTES + (1024 * 1024 - 65536) / PACE_CHUNK_BYTES);
  assert.equal(big[big.length - 1], 1024 * 1024);
  assert.ok(big.every((end, i) => end > (big[i - 1] ?? 0)));
});

test('parseKey accepts 0..2^31-1 only', () => {
  assert.equal(parseKey('0'), 0);
  assert.equal(parseKey('2147483647'), 2147483647);
  assert.equal(parseKey('2147483648'), null);
  assert.equal(parseKey('-1'), null);
  assert.equal(parseKey('1e3'), null);
  assert.equal(parseKey(''), null);
});

async function origin(t: TestContext): Promise<string> {
  const o = await startChaosOrigin({ port: 0 });
  t.after(() => o.close());
  return `http://127.0.0.1:${o.port}`;
}

test('origin: /det and /static bytes equal the store\'s; /rand carries its hash; /echo echoes', async (t) => {
  const base = await origin(t);
  const store = new BodyStore();

  const det = await fetch(`${base}/det/9?size=200000`);
  assert.equal(det.status, 200);
  assert.equal(det.headers.get('content-length'), '200000');
  assert.deepEqual(Buffer.from(await det.arrayBuffer()), store.detBody(9, 200000));

  const obj = store.staticObject(2);
  const st = await fetch(`${base}/static/2`);
  assert.equal(st.status, 200);
  assert.equal(st.headers.get('etag'), obj.etag);
  assert.equal(st.headers.get('accept-ranges'), 'bytes');
  assert.equal(sha256Hex(Buffer.from(await st.arrayBuffer())), obj.sha256);

  const bodies: Buffer[] = [];
  for (let i = 0; i < 2; i++) {
    const r = await fetch(`${base}/rand?size=70000`);
    const body = Buffer.from(await r.arrayBuffer());
    assert.equal(body.length, 70000);
    assert.equal(r.headers.get('x-body-sha256'), sha256Hex(body));
    bodies.push(body);
  }
  assert.notDeepEqual(bodies[0], bodies[1]);

  const sent = prngBytes(42, 100_000);
  const echo = await fetch(`${base}/echo`, { method: 'POST', body: new Uint8Array(sent), headers: { 'Idempotency-Key': 'k1' } });
  assert.equal(echo.status, 200);
  assert.deepEqual(Buffer.from(await echo.arrayBuffer()), sent);

  assert.equal((await fetch(`${base}/det/x?size=1`)).status, 400);
  assert.equal((await fetch(`${base}/det/1?size=${DET_MAX_BYTES + 1}`)).status, 400);
  assert.equal((await fetch(`${base}/nothing`)).status, 404);
});

test('origin: /static honours Range and If-Range as range resume needs it', async (t) => {
  const base = await origin(t);
  const obj = new BodyStore().staticObject(4);
  const total = obj.body.length;
  const k = 123_457;

  const part = await fetch(`${base}/static/4`, { headers: { Range: `bytes=${k}-`, 'If-Range': obj.etag } });
  assert.equal(part.status, 206);
  assert.equal(part.headers.get('content-range'), `bytes ${k}-${total - 1}/${total}`);
  assert.equal(part.headers.get('etag'), obj.etag);
  assert.deepEqual(Buffer.from(await part.arrayBuffer()), obj.body.subarray(k));

  const changed = await fetch(`${base}/static/4`, { headers: { Range: `bytes=${k}-`, 'If-Range': '"sha256-stale"' } });
  assert.equal(changed.status, 200);
  assert.equal(Number(changed.headers.get('content-length')), total);
  await changed.arrayBuffer();

  const beyond = await fetch(`${base}/static/4`, { headers: { Range: `bytes=${total}-` } });
  assert.equal(beyond.status, 416);
  assert.equal(beyond.headers.get('content-range'), `bytes */${total}`);
  await beyond.arrayBuffer();
});
