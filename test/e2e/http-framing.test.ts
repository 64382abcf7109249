/**
 * @module End-to-end tests of the HTTP/1.1 forwarder's message framing (HTTP-SPEC.md "Keep-alive",
 * "Request framing", "No body", "Hop-by-hop", "Added to each request", "Expect", "Pipelining",
 * "Upgrade"): a raw client writes exact bytes to an in-process dispatcher in front of real backends
 * and checks the exact bytes and connections on both sides.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import type http from 'node:http';
import { connect, wrapSocket, type Address, type RawConnection, type RawRequest } from '../helpers/raw-client.js';
import {
  okResponse,
  receivedText,
  serveRequests,
  startHttpBackend,
  startRawBackend,
  type HttpBackendOptions,
  type HttpHandler,
} from '../helpers/scripted-backend.js';
import { startTestDispatcher } from '../helpers/dispatcher.js';

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function get(path: string, extra = ''): string {
  return `GET ${path} HTTP/1.1\r\nHost: test\r\n${extra}\r\n`;
}

async function open(t: TestContext, addr: Address): Promise<RawConnection> {
  const c = await connect(addr);
  t.after(() => c.destroy());
  return c;
}

async function httpBackend(t: TestContext, handler: HttpHandler, opts?: HttpBackendOptions) {
  const b = await startHttpBackend(handler, opts);
  t.after(() => b.close());
  return b;
}

async function rawBackend(t: TestContext, onConnection: Parameters<typeof startRawBackend>[0]) {
  const b = await startRawBackend(onConnection);
  t.after(() => b.close());
  return b;
}

/** Answers "<method> <url>" with a Content-Length. */
const echoUrl: HttpHandler = (req, res) => {
  const body = `${req.method} ${req.url}`;
  res.setHeader('content-length', Buffer.byteLength(body));
  res.end(body);
};

function readStream(req: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => resolve(Buffer.concat(parts)));
    req.on('error', reject);
  });
}

function connectionTokens(value: string | undefined): string[] {
  return (value ?? '').split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);
}

// ---------------------------------------------------------------------------------------------
// Keep-alive

test('keep-alive: two sequential requests use one client connection and one backend connection', async (t) => {
  const b = await httpBackend(t, echoUrl);
  const d = await startTestDispatcher(t, { backends: [b.hostPort] });
  const c = await open(t, d.address);
  c.write(get('/one'));
  const r1 = await c.readResponse();
  assert.equal(r1.status, 200);
  assert.equal(r1.body.toString(), 'GET /one');
  assert.ok(!connectionTokens(r1.get('connection')).includes('close'), `unexpected Connection: ${r1.get('connection')}`);
  c.write(get('/two'));
  const r2 = await c.readResponse();
  assert.equal(r2.status, 200);
  assert.equal(r2.body.toString(), 'GET /two');
  assert.equal(c.isEnded, false, 'the client connection must stay open');
  assert.equal(b.requests.length, 2);
  assert.equal(b.requestConnections, 1, 'backend connection is pooled and reused for the second request');
  assert.equal(b.requests[0]!.remotePort, b.requests[1]!.remotePort);
});

test('keep-alive: a reply over the socket write buffer in one read, then a second request on the pooled connection', async (t) => {
  // Regression (found by bench/failover-chaos): a 16-64 KiB reply arriving in one read makes the
  // client write return false, which pauses the backend socket; the exchange then completes in the
  // same callback and the connection went back to the pool still paused, so the next request on it
  // never read its reply.
  const body = randomBytes(40 * 1024);
  const b = await httpBackend(t, (_req, res) => {
    res.setHeader('content-length', body.length);
    res.end(body);
  });
  const d = await startTestDispatcher(t, { backends: [b.hostPort] });
  const c = await open(t, d.address);
  for (const path of ['/one', '/two', '/three']) {
    c.write(get(path));
    const r = await c.readResponse({ timeoutMs: 3_000 });
    assert.equal(r.status, 200, path);
    assert.equal(sha(r.body), sha(body), path);
  }
  assert.equal(b.requestConnections, 1, 'the backend connection was reused each time');
});

test('bytes 0x80-0xFF in the target and in field values reach the backend unchanged (not re-encoded)', async (t) => {
  // Regression (review): heads are parsed as latin1 and were written back as UTF-8.
  const b = await startRawBackend((socket) => serveRequests(socket, () => okResponse('ok')));
  t.after(() => b.close());
  const d = await startTestDispatcher(t, { backends: [b.hostPort] });
  const c = await open(t, d.address);
  c.write(Buffer.from('GET /caf\xc3\xa9 HTTP/1.1\r\nHost: test\r\nX-Name: \xe9t\xe9\r\n\r\n', 'latin1'));
  const r = await c.readResponse();
  assert.equal(r.status, 200);
  const seen = receivedText(b);
  assert.ok(seen.startsWith('GET /caf\xc3\xa9 HTTP/1.1\r\n'), `backend saw ${JSON.stringify(seen.slice(0, 40))}`);
  assert.ok(seen.includes('\r\nX-Name: \xe9t\xe9\r\n'), 'the field value is byte-exact');
});

test('pipelined requests followed by a half-close all get their replies, then the connection ends', async (t) => {
  // Regression (review): the half-close made the proxy close after the first reply.
  const b = await httpBackend(t, echoUrl);
  const d = await startTestDispatcher(t, { backends: [b.hostPort] });
  const c = await open(t, d.address);
  c.write(get('/a') + get('/b') + get('/c'));
  c.end();
  for (const path of ['/a', '/b', '/c']) {
    const r = await c.readResponse();
    assert.equal(r.body.toString(), `GET ${path}`);
  }
  const rest = await c.readUntilClose({ timeoutMs: 3_000 });
  assert.equal(rest.data.length, 0);
  assert.equal(b.requests.length, 3);
});

test('keep-alive: Connection: close gets Connection: close and the proxy closes after the response', async (t) => {
  const b = await httpBackend(t, echoUrl);
  const d = await startTestDispatcher(t, { backends: [b.hostPort] });
  const c = await open(t, d.address);
  c.write(get('/bye', 'Connection: close\r\n'));
  const r = await c.readResponse();
  assert.equal(r.status, 200);
  assert.equal(r.body.toString(), 'GET /bye');
  assert.ok(connectionTokens(r.get('connection')).includes('close'), `Connection header was ${r.get('connection')}`);
  const rest = await c.readUntilClose({ timeoutMs: 2_000 });
  assert.equal(rest.data.length, 0, `bytes after the response: ${rest.data.toString('latin1')}`);
});

test('keep-alive: HTTP/1.0 without keep-alive is closed after the response', async (t) => {
  const b = await httpBackend(t, echoUrl);
  const d = await startTestDispatcher(t, { backends: [b.hostPort] });
  const c = await open(t, d.address);
  c.write('GET /old HTTP/1.0\r\nHost: test\r\n\r\n');
  const r = await c.readResponse();
  assert.equal(r.status, 200);
  assert.equal(r.body.toString(), 'GET /old');
  const rest = await c.readUntilClose({ timeoutMs: 2_000 });
  assert.equal(rest.data.length, 0);
});

test('keep-alive: HTTP/1.0 with Connection: keep-alive stays open for a second request', async (t) => {
  const b = await httpBackend(t, echoUrl);
  const d = await startTestDispatcher(t, { backends: [b.hostPort] });
  const c = await open(t, d.address);
  c.write('GET /k1 HTTP/1.0\r\nHost: test\r\nConnection: keep-alive\r\n\r\n');
  const r1 = await c.readResponse();
  assert.equal(r1.status, 200);
  assert.equal(r1.body.toString(), 'GET /k1');
  assert.ok(!r1.closeDelimited, 'a kept-alive HTTP/1.0 response needs a length');
  c.write('GET /k2 HTTP/1.0\r\nHost: test\r\nConnection: keep-alive\r\n\r\n');
  const r2 = await c.readResponse();
  assert.equal(r2.body.toString(), 'GET /k2');
  assert.equal(b.requests.length, 2);
});

// ---------------------------------------------------------------------------------------------
// Request framing

test('request framing: a Content-Length body arrives byte-exact with the same Content-Length', async (t) => {
  const b = await httpBackend(t, (_req, res, rec) => {
    const body = sha(rec.body);
    res.setHeader('content-length', body.length);
    res.end(body);
  });
  const d = await startTestDispatcher(t, { backends: [b.hostPort] });
  const c = await open(t, d.address);
  const body = randomBytes(100_000);
  c.write(`POST /cl HTTP/1.1\r\nHost: test\r\nContent-Length: ${body.length}\r\n\r\n`);
  c.write(body.subarray(0, 1000));
  await sleep(20);
  c.write(body.subarray(1000));
  const r = await c.readResponse();
  assert.equal(r.status, 200);
  assert.equal(r.body.toString(), sha(body));
  const rec = b.requests[0]!;
  assert.equal(rec.headers['content-length'], String(body.length));
  assert.equal(rec.headers['transfer-encoding'], undefined);
  assert.ok(rec.body.equals(body));
});

test('request framing: a chunked body stays chunked, bytes unchanged, trailers passed', async (t) => {
  const seen: RawRequest[] = [];
  const b = await rawBackend(t, (s) =>
    serveRequests(s, (req) => {
      seen.push(req);
      return okResponse('ok');
    }),
  );
  const d = await startTestDispatcher(t, { backends: [b.hostPort] });
  const c = await open(t, d.address);
  const data = randomBytes(1000);
  const chunkedBody = Buffer.concat([
    Buffer.from('5\r\nhello\r\n1a\r\nabcdefghijklmnopqrstuvwxyz\r\n3e8\r\n', 'latin1'),
    data,
    Buffer.from('\r\n0\r\nX-Checksum: abc123\r\n\r\n', 'latin1'),
  ]);
  c.write('POST /chunked HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n');
  c.write(chunkedBody.subarray(0, 9)); // split inside the second chunk's size line and data
  await sleep(20);
  c.write(chunkedBody.subarray(9, 500));
  await sleep(20);
  c.write(chunkedBody.subarray(500));
  const r = await c.readResponse();
  assert.equal(r.status, 200);
  assert.equal(seen.length, 1);
  const req = seen[0]!;
  assert.deepEqual(req.headers['transfer-encoding'], ['chunked']);
  assert.equal(req.headers['content-length'], undefined, 'chunked stays chunked: no Content-Length added');
  assert.ok(req.chunked);
  assert.equal(req.rawBody.toString('latin1'), chunkedBody.toString('latin1'), 'chunked body bytes unchanged');
  assert.deepEqual(req.trailers['x-checksum'], ['abc123']);
  assert.ok(req.body.equals(Buffer.concat([Buffer.from('helloabcdefghijklmnopqrstuvwxyz'), data])));
});

test('request framing: a chunked body with trailers reaches a node:http backend intact', async (t) => {
  const b = await httpBackend(t, (_req, res, rec) => {
    const out = `${rec.body.toString()}|${rec.trailers['x-sum'] ?? 'no-trailer'}`;
    res.setHeader('content-length', Buffer.byteLength(out));
    res.end(out);
  });
  const d = await startTestDispatcher(t, { backends: [b.hostPort] });
  const c = await open(t, d.address);
  c.write('POST /t HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\nX-Sum: 42\r\n\r\n');
  const r = await c.readResponse();
  assert.equal(r.status, 200);
  assert.equal(r.body.toString(), 'abcde|42');
});

// ---------------------------------------------------------------------------------------------
// Response framing

test('response framing: Content-Length response relayed with its length, then keep-alive', async (t) => {
  const b = await rawBackend(t, (s) => serveRequests(s, (req) => okResponse(`hello world ${req.target}`)));
  const d = await startTestDispatcher(t, { backends: [b.hostPort] });
  const c = await open(t, d.address);
  c.write(get('/x'));
  const r = await c.readResponse();
  assert.equal(r.status, 200);
  assert.equal(r.get('content-length'), String('hello world /x'.length));
  assert.equal(r.chunked, false);
  assert.equal(r.body.toString(), 'hello world /x');
  c.write(get('/y'));
  assert.equal((await c.readResponse()).body.toString(), 'hello world /y');
});

test('response framing: chunked response relayed chunked with its bytes and trailers unchanged', async (t) => {
  const chunked = '4\r\nwiki\r\n5\r\npedia\r\ne\r\n in\r\n\r\nchunks.\r\n0\r\nX-Done: yes\r\n\r\n';
  const b = await rawBackend(t, (s) =>
    serveRequests(s, (req) =>
      req.target === '/chunked'
        ? `HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n${chunked}`
        : okResponse('after'),
    ),
  );
  const d = await startTestDispatcher(t, { backends: [b.hostPort] });
  const c = await open(t, d.address);
  c.write(get('/chunked'));
  const r = await c.readResponse();
  assert.equal(r.status, 200);
  assert.equal(r.chunked, true);
  assert.equal(r.get('content-length'), undefined);
  assert.equal(r.rawBody.toString('latin1'), chunked, 'chunk framing bytes unchanged');
  assert.equal(r.body.toString(), 'wikipedia in\r\n\r\nchunks.');
  assert.deepEqual(r.trailers['x-done'], ['yes']);
  c.write(get('/next'));
  assert.equal((await c.readResponse()).body.toString(), 'after');
});

test('response framing: close-delimited response is read to backend EOF, then the client is closed', async (t) => {
  const body = randomBytes(50_000);
  const b = await rawBackend(t, async (s) => {
    const conn = wrapSocket(s, 'backend');
    await conn.readRequest();
    s.write('HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n');
    s.write(body.subarray(0, 20_000));
    await sleep(30);
    s.end(body.subarray(20_000));
  });
  const d = await startTestDispatcher(t, { backends: [b.hostPort] });
  const c = await open(t, d.address);
  c.write(get('/eof'));
  const r = await c.readResponse();
  assert.equal(r.status, 200);
  assert.ok(r.body.equals(body), `body: got ${r.body.length} bytes, expected ${body.length}`);
  const closed = await c.closed;
  assert.equal(closed.reset, false, 'the client connection is closed cleanly after the body');
});

test('large bodies: 20 MB upload (Content-Length) and 20 MB download arrive hash-equal', async (t) => {
  const big = randomBytes(20 * 1024 * 1024);
  const b = await httpBackend(t, (req, res, rec) => {
    if (req.method === 'POST') {
      const out = `${rec.body.length}:${sha(rec.body)}`;
      res.setHeader('content-length', out.length);
      res.end(out);
    } else {
      res.setHeader('content-length', big.length);
      res.end(big);
    }
  });
  const d = await startTestDispatcher(t, { backends: [b.hostPort] });
  const c = await open(t, d.address);
  c.write(`POST /up HTTP/1.1\r\nHost: test\r\nContent-Length: ${big.length}\r\n\r\n`);
  c.write(big);
  const up = await c.readResponse({ timeoutMs: 15_000 });
  assert.equal(up.status, 200);
  assert.equal(up.body.toString(), `${big.length}:${sha(big)}`);
  c.write(get('/down'));
  const down = await c.readResponse({ timeoutMs: 15_000 });
  assert.equal(down.status, 200);
  assert.equal(down.body.length, big.length);
  assert.equal(sha(down.body), sha(big));
});

test('large bodies: 20 MB chunked upload and chunked download arrive hash-equal', async (t) => {
  const big = randomBytes(20 * 1024 * 1024);
  const b = await httpBackend(t, async (req, res, rec) => {
    if (req.method === 'POST') {
      const out = `${rec.body.length}:${sha(rec.body)}`;
      res.setHeader('content-length', out.length);
      res.end(out);
    } else {
      for (let i = 0; i < big.length; i += 1024 * 1024) {
        if (!res.write(big.subarray(i, i + 1024 * 1024))) await new Promise((r) => res.once('drain', r));
      }
      res.end();
    }
  });
  const d = await startTestDispatcher(t, { backends: [b.hostPort] });
  const c = await open(t, d.address);
  c.write('POST /up HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n');
  for (let i = 0; i < big.length; i += 1024 * 1024) {
    const part = big.subarray(i, i + 1024 * 1024);
    c.write(`${part.length.toString(16)}\r\n`);
    c.write(part);
    c.write('\r\n');
  }
  c.write('0\r\n\r\n');
  const up = await c.readResponse({ timeoutMs: 15_000 });
  assert.equal(up.body.toString(), `${big.length}:${sha(big)}`);
  c.write(get('/down'));
  const down = await c.readResponse({ timeoutMs: 15_000 });
  assert.equal(down.chunked, true);
  assert.equal(sha(down.body), sha(big));
});

// ---------------------------------------------------------------------------------------------
// No body

test('no body: HEAD with Content-Length has no body and the next request works at once', async (t) => {
  const b = await httpBackend(t, (req, res) => {
    if (req.method === 'HEAD') {
      res.setHeader('content-length', '12345');
      res.end();
    } else echoUrl(req, res, b.requests.at(-1)!);
  });
  const d = await startTestDispatcher(t, { backends: [b.hostPort] });
  const c = await open(t, d.address);
  c.write('HEAD /h HTTP/1.1\r\nHost: test\r\n\r\n');
  const h = await c.readResponse({ head: true, timeoutMs: 2_000 });
  assert.equal(h.status, 200);
  assert.equal(h.get('content-length'), '12345');
  c.write(get('/after-head'));
  const r = await c.readResponse({ timeoutMs: 2_000 });
  assert.equal(r.status, 200);
  assert.equal(r.body.toString(), 'GET /after-head');
});

test('no body: 204 and 304 with a misleading Content-Length have no body; the connection goes on', async (t) => {
  const b = await rawBackend(t, (s) =>
    serveRequests(s, (req) => {
      if (req.target === '/204') return 'HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n';
      if (req.target === '/304') return 'HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\nContent-Length: 100\r\n\r\n';
      return okResponse(`ok ${req.target}`);
    }),
  );
  const d = await startTestDispatcher(t, { backends: [b.hostPort] });
  const c = await open(t, d.address);
  c.write(get('/204'));
  const r204 = await c.readResponse({ timeoutMs: 2_000 });
  assert.equal(r204.status, 204);
  c.write(get('/n1'));
  const n1 = await c.readResponse({ timeoutMs: 2_000 });
  assert.equal(n1.status, 200, 'the request after a 204 is answered (the proxy did not wait for a 204 body)');
  assert.equal(n1.body.toString(), 'ok /n1');
  c.write(get('/304', 'If-None-Match: "v1"\r\n'));
  const r304 = await c.readResponse({ timeoutMs: 2_000 });
  assert.equal(r304.status, 304);
  assert.equal(r304.get('etag'), '"v1"');
  c.write(get('/n2'));
  const n2 = await c.readResponse({ timeoutMs: 2_000 });
  assert.equal(n2.body.toString(), 'ok /n2');
  assert.equal(c.buffered, 0, 'no stray bytes after the responses');
});

test('no body: a 1xx interim response (103) is relayed, then the final response', async (t) => {
  const b = await rawBackend(t, (s) =>
    serveRequests(s, async (req, conn) => {
      if (req.target !== '/hints') return okResponse('plain');
      conn.write('HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n');
      await sleep(30);
      return okResponse('final');
    }),
  );
  const d = await startTestDispatcher(t, { backends: [b.hostPort] });
  const c = await open(t, d.address);
  c.write(get('/hints'));
  const hints = await c.readResponse();
  assert.equal(hints.status, 103);
  assert.equal(hints.get('link'), '</style.css>; rel=preload');
  const final = await c.readResponse();
  assert.equal(final.status, 200);
  assert.equal(final.body.toString(), 'final');
  c.write(get('/again'));
  assert.equal((await c.readResponse()).body.toString(), 'plain');
});

// ---------------------------------------------------------------------------------------------
// Expect: 100-continue

test('Expect: 100-continue is forwarded; the backend 100 reaches the client before it sends the body', async (t) => {
  let continueSentAt = 0;
  const b = await httpBackend(t, echoUrl, {
    checkContinue: async (req, res, rec) => {
      await sleep(50);
      continueSentAt = Date.now();
      res.writeContinue();
      rec.body = await readStream(req);
      const out = `echo:${rec.body.toString()}`;
      res.setHeader('content-length', Buffer.byteLength(out));
      res.end(out);
    },
  });
  const d = await startTestDispatcher(t, { backends: [b.hostPort] });
  const c = await open(t, d.address);
  c.write('POST /upload HTTP/1.1\r\nHost: test\r\nExpect: 100-continue\r\nContent-Length: 11\r\n\r\n');
  const interim = await c.readResponse({ timeoutMs: 3_000 });
  assert.equal(interim.status, 100, 'the client gets the backend 100 Continue before sending its body');
  assert.ok(continueSentAt > 0, 'the 100 came from the backend, after it decided');
  assert.equal(b.requests[0]!.headers['expect'], '100-continue', 'Expect is forwarded to the backend');
  c.write('hello world');
  const r = await c.readResponse({ timeoutMs: 3_000 });
  assert.equal(r.status, 200);
  assert.equal(r.body.toString(), 'echo:hello world');
});

// ---------------------------------------------------------------------------------------------
// Pipelining

test('pipelining: three requests in one write are answered in order on the same connection', async (t) => {
  const delays: Record<string, number> = { '/a': 150, '/b': 50, '/c': 0 };
  const b = await httpBackend(t, async (req, res, rec) => {
    await sleep(delays[req.url ?? ''] ?? 0);
    const out = `${req.url}:${rec.body.toString()}`;
    res.setHeader('content-length', Buffer.byteLength(out));
    res.end(out);
  });
  const d = await startTestDispatcher(t, { backends: [b.hostPort] });
  const c = await open(t, d.address);
  c.write(get('/a') + 'POST /b HTTP/1.1\r\nHost: test\r\nContent-Length: 7\r\n\r\npayload' + get('/c'));
  const bodies: string[] = [];
  for (let i = 0; i < 3; i++) bodies.push((await c.readResponse({ timeoutMs: 3_000 })).body.toString());
  assert.deepEqual(bodies, ['/a:', '/b:payload', '/c:']);
  assert.equal(c.isEnded, false);
  c.write(get('/c'));
  assert.equal((await c.readResponse()).body.toString(), '/c:');
});

// ---------------------------------------------------------------------------------------------
// Hop-by-hop

test('hop-by-hop: request fields and fields named in Connection are removed before forwarding', async (t) => {
  const b = await httpBackend(t, echoUrl);
  const d = await startTestDispatcher(t, { backends: [b.hostPort] });
  const c = await open(t, d.address);
  c.write(
    'GET /hop HTTP/1.1\r\nHost: test\r\nConnection: keep-alive, X-Custom-Hop\r\nX-Custom-Hop: secret\r\n' +
      'Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\nTrailer: X-Foo\r\n' +
      'Upgrade: websocket\r\nX-End-To-End: kept\r\n\r\n',
  );
  const r = await c.readResponse();
  assert.equal(r.status, 200);
  const h = b.requests[0]!.headers;
  for (const name of ['x-custom-hop', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'upgrade']) {
    assert.equal(h[name], undefined, `${name} must not reach the backend (got ${String(h[name])})`);
  }
  assert.ok(!connectionTokens(h['connection']).includes('x-custom-hop'), `Connection: ${h['connection']}`);
  assert.equal(h['x-end-to-end'], 'kept');
});

test('hop-by-hop: response fields and fields named in Connection are removed before relaying', async (t) => {
  const b = await rawBackend(t, (s) =>
    serveRequests(s, () =>
      'HTTP/1.1 200 OK\r\nConnection: X-Resp-Hop\r\nX-Resp-Hop: secret\r\nKeep-Alive: timeout=5, max=100\r\n' +
        'Proxy-Connection: keep-alive\r\nTE: trailers\r\nTrailer: X-T\r\nUpgrade: h2c\r\nX-Kept: yes\r\n' +
        'Content-Length: 2\r\n\r\nok',
    ),
  );
  const d = await startTestDispatcher(t, { backends: [b.hostPort] });
  const c = await open(t, d.address);
  c.write(get('/hop'));
  const r = await c.readResponse();
  assert.equal(r.status, 200);
  assert.equal(r.body.toString(), 'ok');
  for (const name of ['x-resp-hop', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'upgrade']) {
    assert.equal(r.headers[name], undefined, `${name} must not reach the client (got ${String(r.headers[name])})`);
  }
  assert.ok(!connectionTokens(r.get('connection')).includes('x-resp-hop'), `Connection: ${r.get('connection')}`);
  assert.equal(r.get('x-kept'), 'yes');
  c.write(get('/again'));
  assert.equal((await c.readResponse()).status, 200);
});

// ---------------------------------------------------------------------------------------------
// Forwarded headers, Host

test('forwarded headers: X-Forwarded-For, X-Forwarded-Proto and Forwarded are added; Host unchanged', async (t) => {
  const seen: RawRequest[] = [];
  const b = await rawBackend(t, (s) => serveRequests(s, (req) => (seen.push(req), okResponse('ok'))));
  const d = await startTestDispatcher(t, { backends: [b.hostPort] });
  const c = await open(t, d.address);
  c.write('GET /f HTTP/1.1\r\nHost: example.test:8080\r\n\r\n');
  assert.equal((await c.readResponse()).status, 200);
  const h = seen[0]!.headers;
  assert.deepEqual(h['x-forwarded-for'], ['127.0.0.1']);
  assert.deepEqual(h['x-forwarded-proto'], ['http']);
  assert.deepEqual(h['forwarded'], ['for=127.0.0.1;proto=http']);
  assert.deepEqual(h['host'], ['example.test:8080']);
});

test('forwarded headers: existing values are appended to (one line each), X-Forwarded-Proto kept', async (t) => {
  const seen: RawRequest[] = [];
  const b = await rawBackend(t, (s) => serveRequests(s, (req) => (seen.push(req), okResponse('ok'))));
  const d = await startTestDispatcher(t, { backends: [b.hostPort] });
  const c = await open(t, d.address);
  c.write(
    'GET /f HTTP/1.1\r\nHost: test\r\nX-Forwarded-For: 203.0.113.7\r\nX-Forwarded-Proto: https\r\n' +
      'Forwarded: for=198.51.100.1;proto=https\r\n\r\n',
  );
  assert.equal((await c.readResponse()).status, 200);
  const h = seen[0]!.headers;
  assert.deepEqual(h['x-forwarded-for'], ['203.0.113.7, 127.0.0.1']);
  assert.deepEqual(h['x-forwarded-proto'], ['https'], 'X-Forwarded-Proto only added if absent');
  assert.deepEqual(h['forwarded'], ['for=198.51.100.1;proto=https, for=127.0.0.1;proto=http']);
});

test('forwarded headers: an IPv6 client is for="[::1]" in Forwarded and ::1 in X-Forwarded-For', async (t) => {
  const seen: RawRequest[] = [];
  const b = await rawBackend(t, (s) => serveRequests(s, (req) => (seen.push(req), okResponse('ok'))));
  const d = await startTestDispatcher(t, { backends: [b.hostPort], listen: '[::1]:0' });
  assert.equal(d.address.host, '::1');
  const c = await open(t, d.address);
  c.write(get('/v6', 'Forwarded: for=192.0.2.60\r\n'));
  assert.equal((await c.readResponse()).status, 200);
  const h = seen[0]!.headers;
  assert.deepEqual(h['x-forwarded-for'], ['::1']);
  assert.deepEqual(h['forwarded'], ['for=192.0.2.60, for="[::1]";proto=http']);
});

test('forwarded headers: http.forwardedHeaders false adds none of them', async (t) => {
  const seen: RawRequest[] = [];
  const b = await rawBackend(t, (s) => serveRequests(s, (req) => (seen.push(req), okResponse('ok'))));
  const d = await startTestDispatcher(t, { backends: [b.hostPort], http: { forwardedHeaders: false } });
  const c = await open(t, d.address);
  c.write(get('/f', 'X-Forwarded-For: 203.0.113.7\r\n'));
  assert.equal((await c.readResponse()).status, 200);
  const h = seen[0]!.headers;
  assert.deepEqual(h['x-forwarded-for'], ['203.0.113.7'], 'an existing value passes unchanged');
  assert.equal(h['x-forwarded-proto'], undefined);
  assert.equal(h['forwarded'], undefined);
});

// ---------------------------------------------------------------------------------------------
// Upgrade

test('upgrade: backend 101 splices the sockets; client bytes echo back through the tunnel', async (t) => {
  let upgradeReq: Omit<RawRequest, 'body' | 'rawBody' | 'trailers' | 'chunked'> | null = null;
  const b = await rawBackend(t, async (s) => {
    const conn = wrapSocket(s, 'backend');
    upgradeReq = await conn.readRequestHead();
    s.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo-proto\r\n\r\n');
    const early = conn.detach();
    if (early.length) s.write(early);
    s.on('data', (chunk: Buffer) => s.write(chunk));
    s.on('end', () => s.end());
  });
  const d = await startTestDispatcher(t, { backends: [b.hostPort] });
  const c = await open(t, d.address);
  c.write('GET /chat HTTP/1.1\r\nHost: test\r\nConnection: Upgrade\r\nUpgrade: echo-proto\r\n\r\n');
  const r = await c.readResponse();
  assert.equal(r.status, 101);
  assert.ok(upgradeReq, 'backend got the upgrade request');
  const req = upgradeReq as unknown as RawRequest;
  assert.equal(req.get('upgrade'), 'echo-proto', 'Upgrade forwarded on an upgrade request');
  assert.ok(connectionTokens(req.get('connection')).includes('upgrade'), `Connection: ${req.get('connection')}`);
  // RFC 9110 §7.8: a 101 names the protocol switched to; without it no client can proceed.
  assert.equal(r.get('upgrade'), 'echo-proto', '101 relayed with its Upgrade field');
  c.write('ping-123');
  assert.equal((await c.read(8)).toString(), 'ping-123');
  const blob = randomBytes(256 * 1024);
  c.write(blob);
  assert.equal(sha(await c.read(blob.length)), sha(blob));
  c.end();
  const rest = await c.readUntilClose({ timeoutMs: 3_000 });
  assert.equal(rest.data.length, 0);
});

test('upgrade: a backend that closes while the client is paused by backpressure ends the client too', async (t) => {
  // Regression (review): a client paused by the tunnel's backpressure never read the end, and with
  // the tunnel's timeouts off it stayed open forever.
  const b = await rawBackend(t, async (s) => {
    const conn = wrapSocket(s, 'backend');
    if (!(await conn.readRequestHead())) return; // a tcp probe
    s.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: sink\r\n\r\n');
    conn.detach();
    s.pause(); // reads nothing: the proxy's writes to it back up, and it pauses the client
    setTimeout(() => s.destroy(), 400);
  });
  const d = await startTestDispatcher(t, { backends: [b.hostPort] });
  const c = await open(t, d.address);
  c.write('GET /sink HTTP/1.1\r\nHost: test\r\nConnection: Upgrade\r\nUpgrade: sink\r\n\r\n');
  assert.equal((await c.readResponse()).status, 101);
  // More than loopback buffers hold, so the proxy must pause the client.
  const blob = randomBytes(1024 * 1024);
  for (let i = 0; i < 32; i++) c.write(blob);
  const closed = await Promise.race([c.closed.then(() => 'closed'), sleep(4_000).then(() => 'still open')]);
  assert.equal(closed, 'closed', 'the client connection ends once the backend is gone');
});

test('upgrade: a backend that answers 200 instead of 101 gets normal response handling', async (t) => {
  const b = await rawBackend(t, (s) =>
    serveRequests(s, (req) => okResponse(req.headers['upgrade'] ? 'no upgrade for you' : `plain ${req.target}`)),
  );
  const d = await startTestDispatcher(t, { backends: [b.hostPort] });
  const c = await open(t, d.address);
  c.write('GET /chat HTTP/1.1\r\nHost: test\r\nConnection: Upgrade\r\nUpgrade: echo-proto\r\n\r\n');
  const r = await c.readResponse();
  assert.equal(r.status, 200);
  assert.equal(r.body.toString(), 'no upgrade for you');
  c.write(get('/next'));
  const n = await c.readResponse();
  assert.equal(n.body.toString(), 'plain /next');
});
