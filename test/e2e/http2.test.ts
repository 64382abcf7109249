/**
 * @module End-to-end tests of HTTP/2 to clients (issue 19): interop with Node's http2 client, curl
 * (`--http2-prior-knowledge` in cleartext, `--http2` over TLS with ALPN) and h2load; RFC 9113 header
 * translation (`:authority`, cookies, trailers both ways, 100-continue, HEAD, 204, 304); requests the
 * HTTP/1.1 path refuses refused with the same status on their stream; HTTP/1.1 clients on the same
 * listener. Failover and the attack defences are in http2-failover.test.ts and http2-attacks.test.ts.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import type http2 from 'node:http2';
import type { OutgoingHttpHeaders } from 'node:http2';
import { createHash } from 'node:crypto';
import { makeCertKit } from '../../bench/lib/certs.js';
import { prngBytes, startChaosOrigin } from '../../bench/lib/chaos-origin.js';
import { startHttpBackend, type HttpBackend, type HttpHandler } from '../helpers/scripted-backend.js';
import { h2Connect, h2Request, h2Service } from '../helpers/h2-client.js';

async function backend(t: TestContext, handler: HttpHandler): Promise<HttpBackend> {
  const b = await startHttpBackend(handler);
  t.after(() => b.close());
  return b;
}

function run(cmd: string, args: readonly string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: 20_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

/** Echoes what the backend saw as JSON. */
const echo: HttpHandler = (req, res, rec) => {
  res.setHeader('content-type', 'application/json');
  res.setHeader('set-cookie', ['a=1; Path=/', 'b=2; Path=/']);
  res.end(
    JSON.stringify({
      method: req.method,
      url: req.url,
      host: req.headers.host,
      cookie: req.headers.cookie ?? null,
      te: req.headers['transfer-encoding'] ?? null,
      cl: req.headers['content-length'] ?? null,
      proto: req.headers['x-forwarded-proto'],
      connection: req.headers.connection ?? null,
      body: rec.body.toString(),
      trailers: req.trailers,
    }),
  );
};

test('Node http2 client over h2c: 50 concurrent streams on one connection, :authority to Host, cookie crumbs joined, bodies both framings', async (t) => {
  const b = await backend(t, echo);
  const d = await h2Service(t, [b.hostPort]);
  const c = h2Connect(t, `http://127.0.0.1:${d.address.port}`);
  const replies = await Promise.all(
    Array.from({ length: 50 }, (_, i) => h2Request(c, { ':path': `/s/${i}?q=${i}`, ':authority': `a${i}.example`, cookie: ['k=1', `n=${i}`] })),
  );
  replies.forEach((r, i) => {
    assert.equal(r.headers[':status'], 200);
    assert.deepEqual(r.headers['set-cookie'], ['a=1; Path=/', 'b=2; Path=/'], 'two Set-Cookie fields, kept apart');
    assert.equal(r.headers['connection'], undefined);
    const seen = JSON.parse(r.body.toString()) as Record<string, unknown>;
    assert.equal(seen['url'], `/s/${i}?q=${i}`);
    assert.equal(seen['host'], `a${i}.example`);
    assert.equal(seen['cookie'], `k=1; n=${i}`);
    assert.equal(seen['proto'], 'http');
  });
  const chunked = JSON.parse((await h2Request(c, { ':method': 'POST', ':path': '/up' }, 'x'.repeat(100_000))).body.toString()) as Record<string, unknown>;
  assert.equal(chunked['te'], 'chunked', 'no content-length: the body goes chunked');
  assert.equal((chunked['body'] as string).length, 100_000);
  const sized = JSON.parse((await h2Request(c, { ':method': 'PUT', ':path': '/up', 'content-length': '5' }, 'hello')).body.toString()) as Record<string, unknown>;
  assert.equal(sized['cl'], '5');
  assert.equal(sized['body'], 'hello');
});

test('trailers both ways, 100-continue, HEAD, 204 and 304 framing', async (t) => {
  const b = await backend(t, (req, res, rec) => {
    if (req.url === '/trailers') {
      res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-sum' });
      res.write('part one, ');
      res.write('part two');
      res.addTrailers({ 'x-sum': String(rec.body.length) });
      res.end();
    } else if (req.url === '/204') {
      res.writeHead(204, { 'x-a': '1' });
      res.end();
    } else if (req.url === '/304') {
      res.writeHead(304, { etag: '"e"' });
      res.end();
    } else echo(req, res, rec);
  });
  const d = await h2Service(t, [b.hostPort]);
  const c = h2Connect(t, `http://127.0.0.1:${d.address.port}`);
  const tr = await h2Request(c, { ':method': 'POST', ':path': '/trailers' }, 'abc', { 'x-client-sum': '3' });
  assert.equal(tr.body.toString(), 'part one, part two');
  assert.equal(tr.trailers?.['x-sum'], '3', 'the reply trailer arrives as HTTP/2 trailers');
  const up = JSON.parse((await h2Request(c, { ':method': 'POST', ':path': '/echo' }, 'abc', { 'x-client-sum': '3' })).body.toString()) as { trailers: Record<string, string> };
  assert.deepEqual(up.trailers, { 'x-client-sum': '3' }, 'request trailers reach the backend as a chunked trailer section');
  const cont = await h2Request(c, { ':method': 'POST', ':path': '/echo', expect: '100-continue', 'content-length': '2' }, 'ok');
  assert.deepEqual(cont.informational, [100], 'the backend 100 Continue is relayed as an interim HEADERS');
  assert.equal(cont.headers[':status'], 200);
  const head = await h2Request(c, { ':method': 'HEAD', ':path': '/h' });
  assert.equal(head.headers[':status'], 200);
  assert.equal(head.body.length, 0);
  const nc = await h2Request(c, { ':path': '/204' });
  assert.equal(nc.headers[':status'], 204);
  assert.equal(nc.headers['x-a'], '1');
  assert.equal(nc.body.length, 0);
  const nm = await h2Request(c, { ':path': '/304' });
  assert.equal(nm.headers[':status'], 304);
  assert.equal(nm.body.length, 0);
});

test('a request the HTTP/1.1 path refuses gets the same status on its stream; the connection goes on', async (t) => {
  const b = await backend(t, echo);
  const d = await h2Service(t, [b.hostPort]);
  const c = h2Connect(t, `http://127.0.0.1:${d.address.port}`);
  assert.equal((await h2Request(c, { ':method': 'FOO', ':path': '/' })).headers[':status'], 501, 'unknown method');
  const many: OutgoingHttpHeaders = { ':path': '/' };
  for (let i = 0; i < 101; i++) many[`x-h${i}`] = '1';
  assert.equal((await h2Request(c, many)).headers[':status'], 431, 'more than maxHeaderCount fields');
  assert.equal((await h2Request(c, { ':path': '/', ':authority': 'x@evil.example' })).headers[':status'], 400, 'userinfo in the authority');
  assert.equal((await h2Request(c, { ':path': '/after' })).headers[':status'], 200, 'the other streams are not affected');
  // No backend: 503 with Retry-After, as on HTTP/1.1.
  await b.close();
  await d.waitForState('b0', 'down').catch(() => undefined);
  const none = await h2Request(c, { ':path': '/' });
  assert.equal(none.headers[':status'], 503);
  assert.equal(none.headers['retry-after'], '1');
});

test('curl --http2-prior-knowledge, and HTTP/1.1 clients on the same cleartext listener', async (t) => {
  const b = await backend(t, echo);
  const d = await h2Service(t, [b.hostPort]);
  const url = `http://127.0.0.1:${d.address.port}/c`;
  const h2 = await run('curl', ['-sS', '--http2-prior-knowledge', '-w', '\n%{http_version}', '-b', 'x=1', url]);
  assert.equal(h2.code, 0, h2.stderr);
  const [body, version] = h2.stdout.split('\n');
  assert.equal(version, '2');
  assert.equal((JSON.parse(body!) as { cookie: string }).cookie, 'x=1');
  const h1 = await run('curl', ['-sS', '--http1.1', '-w', '\n%{http_version}', url]);
  assert.equal(h1.code, 0, h1.stderr);
  assert.equal(h1.stdout.split('\n')[1], '1.1');
});

test('over TLS: ALPN h2 for curl --http2 and Node, http/1.1 still offered; the backend sees proto=https', async (t) => {
  const kit = makeCertKit();
  t.after(() => kit.remove());
  const pair = kit.leaf('srv', ['srv.test']);
  const b = await backend(t, echo);
  const d = await h2Service(t, [b.hostPort], { tls: { certificates: [pair] } });
  const port = d.address.port;
  const args = ['-sS', '--cacert', kit.ca.cert, '--resolve', `srv.test:${port}:127.0.0.1`, '-w', '\n%{http_version}'];
  const h2 = await run('curl', [...args, '--http2', `https://srv.test:${port}/tls`]);
  assert.equal(h2.code, 0, h2.stderr);
  const [body, version] = h2.stdout.split('\n');
  assert.equal(version, '2', 'ALPN chose h2');
  assert.equal((JSON.parse(body!) as { proto: string }).proto, 'https');
  const h1 = await run('curl', [...args, '--http1.1', `https://srv.test:${port}/tls`]);
  assert.equal(h1.code, 0, h1.stderr);
  assert.equal(h1.stdout.split('\n')[1], '1.1', 'a client offering only http/1.1 is served HTTP/1.1');
  const c = h2Connect(t, `https://srv.test:${port}`, { ca: (await import('node:fs')).readFileSync(kit.ca.cert), servername: 'srv.test', host: '127.0.0.1' } as http2.SecureClientSessionOptions);
  const r = await h2Request(c, { ':path': '/node' });
  assert.equal(r.headers[':status'], 200);
});

test('h2load: 4 connections x 10 streams, every request succeeds', async (t) => {
  const b = await backend(t, (_req, res) => {
    res.end('x'.repeat(1024));
  });
  const d = await h2Service(t, [b.hostPort]);
  const r = await run('h2load', ['-n', '400', '-c', '4', '-m', '10', `http://127.0.0.1:${d.address.port}/`]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /requests: 400 total, 400 started, 400 done, 400 succeeded, 0 failed, 0 errored/);
  assert.match(r.stdout, /status codes: 400 2xx/);
});

test('64 concurrent 128 KiB replies on one connection arrive byte for byte (queued reply writes never point into the shared read buffer)', async (t) => {
  const origin = await startChaosOrigin({ port: 0 });
  t.after(() => origin.close());
  const d = await h2Service(t, [`127.0.0.1:${origin.port}`]);
  const c = h2Connect(t, `http://127.0.0.1:${d.address.port}`);
  const path = '/det/16?size=131072';
  const want = createHash('sha256').update(prngBytes(16, 131072)).digest('hex');
  for (let round = 0; round < 3; round++) {
    const replies = await Promise.all(Array.from({ length: 64 }, () => h2Request(c, { ':path': path })));
    for (const r of replies) assert.equal(createHash('sha256').update(r.body).digest('hex'), want);
  }
});

test('cookie sessions per stream: a stream without the cookie opens a session, later streams with it follow the pin', async (t) => {
  const mk = async (id: string): Promise<HttpBackend> =>
    backend(t, (req, res) => {
      if (!req.headers.cookie) res.setHeader('set-cookie', `sid=${id}-1; Path=/`);
      res.end(id);
    });
  const b0 = await mk('b0');
  const b1 = await mk('b1');
  const d = await h2Service(t, [b0.hostPort, b1.hostPort], { sessions: { cookie: 'sid' } });
  const c = h2Connect(t, `http://127.0.0.1:${d.address.port}`);
  const first = await h2Request(c, { ':path': '/' });
  const owner = first.body.toString();
  const cookie = String((first.headers['set-cookie'] as string[])[0]).split(';')[0]!;
  const later = await Promise.all(Array.from({ length: 10 }, () => h2Request(c, { ':path': '/', cookie })));
  assert.deepEqual(
    later.map((r) => r.body.toString()),
    Array.from({ length: 10 }, () => owner),
  );
});

test('limits.requestsPerSecond counts every stream of the connection: past it, 429 with Retry-After on the stream', async (t) => {
  const b = await backend(t, echo);
  const d = await h2Service(t, [b.hostPort], { limits: { requestsPerSecond: 3 } });
  const c = h2Connect(t, `http://127.0.0.1:${d.address.port}`);
  const statuses: number[] = [];
  for (let i = 0; i < 6; i++) statuses.push(Number((await h2Request(c, { ':path': `/${i}` })).headers[':status']));
  assert.deepEqual(statuses.slice(0, 3), [200, 200, 200]);
  assert.ok(statuses.slice(3).every((s) => s === 429), JSON.stringify(statuses));
});

test('a reply complete before its request body: the stream gets the reply, then RST_STREAM NO_ERROR stops the upload', async (t) => {
  const b = await startHttpBackend(
    (_req, res) => {
      res.writeHead(413, { 'content-type': 'text/plain' });
      res.end('too large');
    },
    { readBody: false },
  );
  t.after(() => b.close());
  const d = await h2Service(t, [b.hostPort]);
  const c = h2Connect(t, `http://127.0.0.1:${d.address.port}`);
  const s = c.request({ ':method': 'POST', ':path': '/upload' });
  s.on('error', () => {});
  let status = 0;
  const parts: Buffer[] = [];
  s.on('response', (h) => {
    status = Number(h[':status']);
  });
  s.on('data', (x: Buffer) => parts.push(x));
  const ended = new Promise<void>((resolve) => s.on('end', () => resolve()));
  // 8 MiB offered, far more than the stream window: without the reset the upload would hang.
  const chunk = Buffer.alloc(64 * 1024, 97);
  for (let i = 0; i < 128; i++) s.write(chunk);
  s.end();
  await ended;
  assert.equal(status, 413);
  assert.equal(Buffer.concat(parts).toString(), 'too large');
  // node's client marks the stream closed on RST_STREAM NO_ERROR, but with writes still queued it
  // never emits 'close' (curl and browsers stop uploading): poll the flag.
  for (let i = 0; i < 200 && !s.closed; i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(s.closed, 'the server reset the stream to stop the upload');
  assert.equal(s.rstCode, 0, 'with NO_ERROR');
  s.destroy();
  assert.equal((await h2Request(c, { ':path': '/after' })).headers[':status'], 413, 'the connection goes on');
});

test('cleartext: a connection that sends nothing, or half the preface, is closed after headerTimeoutMs', async (t) => {
  const b = await backend(t, echo);
  const d = await h2Service(t, [b.hostPort], {}, { headerTimeoutMs: 300 });
  const { connect } = await import('node:net');
  const closedAfter = (payload: string): Promise<number> =>
    new Promise((resolve) => {
      const t0 = Date.now();
      const s = connect(d.address.port, '127.0.0.1', () => {
        if (payload !== '') s.write(payload);
      });
      s.on('error', () => {});
      s.on('close', () => resolve(Date.now() - t0));
      s.resume();
    });
  const [silent, half] = await Promise.all([closedAfter(''), closedAfter('PRI * HTTP/2.0\r\n')]);
  assert.ok(silent < 5000 && half < 5000, `closed (${silent} ms, ${half} ms)`);
});
