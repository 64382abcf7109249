import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseResponseHead } from '../http/http-head.js';
import { chunkedTrailer, responseHeaders, translateRequest, trailerHeaders } from './h2-headers.js';
import { ChunkedScanner } from '../http/http-chunked.js';

const headOf = (raw: string[], endStream = true): string => {
  const r = translateRequest(raw, endStream);
  assert.equal(r.type, 'request');
  return r.type === 'request' ? r.head.toString('latin1') : '';
};

test(':authority becomes Host and replaces a host field; cookie crumbs are joined with "; " (RFC 9113 §8.3.1, §8.2.3)', () => {
  const head = headOf([':method', 'GET', ':scheme', 'https', ':authority', 'a.example', ':path', '/x?y', 'host', 'evil.example', 'cookie', 'a=1', 'accept', '*/*', 'cookie', 'b=2']);
  assert.equal(head, 'GET /x?y HTTP/1.1\r\nhost: a.example\r\naccept: */*\r\ncookie: a=1; b=2\r\n\r\n');
});

test('no :authority: the host field is kept; neither: no Host (the HTTP/1.1 path answers 400)', () => {
  assert.match(headOf([':method', 'GET', ':path', '/', 'host', 'h.example']), /\r\nhost: h\.example\r\n/);
  assert.doesNotMatch(headOf([':method', 'GET', ':path', '/']), /host:/);
});

test('connection-specific fields are never passed (RFC 9113 §8.2.2)', () => {
  const head = headOf([':method', 'GET', ':path', '/', ':authority', 'a', 'connection', 'close', 'keep-alive', '1', 'te', 'trailers', 'upgrade', 'x', 'proxy-connection', 'y', 'x-ok', '1']);
  assert.equal(head, 'GET / HTTP/1.1\r\nhost: a\r\nx-ok: 1\r\n\r\n');
});

test('a body of unknown length goes chunked; a content-length is kept; a HEADERS frame with END_STREAM has no body framing', () => {
  const chunked = translateRequest([':method', 'POST', ':path', '/', ':authority', 'a'], false);
  assert.ok(chunked.type === 'request' && chunked.chunked);
  assert.match(chunked.head.toString('latin1'), /transfer-encoding: chunked\r\n\r\n$/);
  const cl = translateRequest([':method', 'POST', ':path', '/', ':authority', 'a', 'content-length', '5'], false);
  assert.ok(cl.type === 'request' && !cl.chunked);
  assert.match(cl.head.toString('latin1'), /content-length: 5\r\n\r\n$/);
  assert.doesNotMatch(headOf([':method', 'GET', ':path', '/', ':authority', 'a'], true), /transfer-encoding|content-length/);
});

test('CONNECT and extended CONNECT are refused with 501', () => {
  assert.deepEqual(translateRequest([':method', 'CONNECT', ':authority', 'a:443'], false), { type: 'refuse', status: 501, reason: 'CONNECT is not supported over HTTP/2' });
  const ws = translateRequest([':method', 'CONNECT', ':protocol', 'websocket', ':path', '/', ':authority', 'a'], false);
  assert.equal(ws.type, 'refuse');
});

test('reply fields: hop-by-hop and Connection-named fields dropped, Set-Cookie kept apart, other repeats joined', () => {
  const res = parseResponseHead('HTTP/1.1 200 OK\r\nConnection: x-hop, keep-alive\r\nKeep-Alive: timeout=5\r\nX-Hop: 1\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nVary: a\r\nVary: b\r\nTransfer-Encoding: chunked', 'GET');
  assert.deepEqual({ ...responseHeaders(res) }, { ':status': 200, 'set-cookie': ['a=1', 'b=2'], vary: 'a, b' });
});

test('request trailers become the chunked trailer section; reply trailers become HTTP/2 trailers', () => {
  assert.equal(chunkedTrailer(null), '0\r\n\r\n');
  assert.equal(chunkedTrailer({ 'x-sum': 'abc', ':bad': 'x', connection: 'y', 'content-length': '3' }), '0\r\nx-sum: abc\r\n\r\n');
  assert.deepEqual({ ...trailerHeaders([{ name: 'x-sum', value: '1', line: 'X-Sum: 1' }, { name: 'te', value: 'x', line: 'TE: x' }]) }, { 'x-sum': '1' });
});

test('chunked scanner as the HTTP/2 dechunker: data across reads, extensions skipped, trailers collected, the end found', () => {
  const body = Buffer.from('5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 42 \r\nX-B:b\r\n\r\n', 'latin1');
  for (let cut = 1; cut < body.length; cut++) {
    const d = new ChunkedScanner(undefined, true);
    const out: Buffer[] = [];
    const on = (b: Uint8Array, s: number, e: number): void => {
      out.push(Buffer.from(b.subarray(s, e)));
    };
    assert.equal(d.scan(body, 0, cut, on), cut);
    assert.equal(d.scan(body, cut, body.length, on), body.length - cut);
    assert.ok(d.done);
    assert.equal(Buffer.concat(out).toString(), 'hello world');
    assert.deepEqual(d.trailers!.map((f) => [f.name, f.value]), [['x-sum', '42'], ['x-b', 'b']]);
  }
  assert.equal(new ChunkedScanner(undefined, true).scan(Buffer.from('1\r\nab\r\n'), 0, 7, () => {}), -1);
});
