/**
 * @module Request-smuggling regressions (issue 21) on raw sockets, against a backend that frames
 * requests with Node's own llhttp (node:http, strict mode): for each vector the backend must see
 * exactly the requests the client framed, each carrying the X-Forwarded-For that holdfast adds (a
 * request without it was smuggled past our head writer), and every refused vector must leave the
 * backend with nothing. The replies must not cross: each client request gets its own reply.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type RawResponse } from '../helpers/raw-client.js';
import { receivedText, serveRequests, startHttpBackend, startRawBackend, type HttpBackend } from '../helpers/scripted-backend.js';
import { startTestDispatcher } from '../helpers/dispatcher.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
/** How long to keep watching the backend for late (smuggled) requests after the last reply. */
const SETTLE_MS = 150;
const SMUGGLED = 'GET /smug HTTP/1.1\r\nHost: x\r\n\r\n';

async function llhttpBackend(t: TestContext): Promise<HttpBackend> {
  const b = await startHttpBackend((req, res, rec) => {
    res.setHeader('content-type', 'text/plain');
    res.end(`${req.method} ${req.url} ${rec.body.length} host=${req.headers.host ?? ''}`);
  });
  t.after(() => b.close());
  return b;
}

/** What the backend must have received: method, url, body length, Host. */
type Seen = readonly [method: string, url: string, bodyLength: number, host: string];

function seen(b: HttpBackend): Seen[] {
  return b.requests.map((r) => [r.method, r.url, r.body.length, String(r.headers.host ?? '')] as const);
}

async function run(t: TestContext, payload: string, replies: number): Promise<{ backend: HttpBackend; responses: RawResponse[]; rest: Buffer }> {
  const backend = await llhttpBackend(t);
  const d = await startTestDispatcher(t, { backends: [backend.hostPort] });
  const client = await connect(d.address);
  t.after(() => client.destroy());
  client.write(payload);
  const responses: RawResponse[] = [];
  for (let i = 0; i < replies; i++) responses.push(await client.readResponse({ timeoutMs: 3_000 }));
  await sleep(SETTLE_MS);
  const rest = await client.readAvailable(1 << 20, { timeoutMs: 50 }).catch(() => Buffer.alloc(0));
  return { backend, responses, rest };
}

function assertForwarded(b: HttpBackend): void {
  for (const r of b.requests) {
    assert.ok(r.headers['x-forwarded-for'], `${r.method} ${r.url} reached the backend without X-Forwarded-For: smuggled`);
  }
}

// ---------------------------------------------------------------------------------------------
// Accepted vectors: the backend frames exactly what the client framed.

const accepted: Array<{ name: string; payload: string; expect: Seen[] }> = [
  {
    name: 'Connection: Content-Length does not strip the body framing',
    payload: `POST / HTTP/1.1\r\nHost: x\r\nConnection: Content-Length\r\nContent-Length: ${SMUGGLED.length}\r\n\r\n${SMUGGLED}`,
    expect: [['POST', '/', SMUGGLED.length, 'x']],
  },
  {
    name: 'Connection: keep-alive, Content-Length on a GET with a body',
    payload: `GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Content-Length\r\nContent-Length: ${SMUGGLED.length}\r\n\r\n${SMUGGLED}`,
    expect: [['GET', '/', SMUGGLED.length, 'x']],
  },
  {
    name: 'Connection: Host keeps Host',
    payload: 'GET /h HTTP/1.1\r\nHost: named\r\nConnection: Host\r\n\r\n',
    expect: [['GET', '/h', 0, 'named']],
  },
  {
    name: 'an absolute-form target replaces a different Host',
    payload: 'GET http://real.example/abs HTTP/1.1\r\nHost: other.example\r\n\r\n',
    expect: [['GET', 'http://real.example/abs', 0, 'real.example']],
  },
  {
    name: 'a chunk extension is framed as llhttp frames it',
    payload: 'POST /ext HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n0\r\n\r\n',
    expect: [['POST', '/ext', 5, 'x']],
  },
];

for (const v of accepted) {
  test(`desync: ${v.name}`, async (t) => {
    const { backend, responses, rest } = await run(t, v.payload, v.expect.length);
    assert.deepEqual(seen(backend), v.expect);
    assertForwarded(backend);
    for (const [i, r] of responses.entries()) {
      assert.equal(r.status, 200);
      const [method, url, len, host] = v.expect[i]!;
      assert.equal(r.body.toString(), `${method} ${url} ${len} host=${host}`, 'each request gets its own reply');
    }
    assert.equal(rest.length, 0, `unexpected bytes after the replies: ${JSON.stringify(rest.toString('latin1'))}`);
  });
}

test('desync: Connection: Transfer-Encoding keeps the chunked framing; the pipelined reply does not cross', async (t) => {
  const payload =
    'POST /c HTTP/1.1\r\nHost: x\r\nConnection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n' +
    'GET /next HTTP/1.1\r\nHost: x\r\n\r\n';
  const { backend, responses } = await run(t, payload, 2);
  assert.deepEqual(seen(backend), [
    ['POST', '/c', 5, 'x'],
    ['GET', '/next', 0, 'x'],
  ]);
  assertForwarded(backend);
  assert.deepEqual(
    responses.map((r) => [r.status, r.body.toString()]),
    [
      [200, 'POST /c 5 host=x'],
      [200, 'GET /next 0 host=x'],
    ],
  );
});

// ---------------------------------------------------------------------------------------------
// Refused vectors: a status of our own, then close; the backend sees nothing at all.

const refused: Array<{ name: string; payload: string; status: number }> = [
  { name: 'Transfer-Encoding on HTTP/1.0', payload: `POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${SMUGGLED}`, status: 400 },
  { name: 'userinfo in Host', payload: `GET / HTTP/1.1\r\nHost: x@evil.example\r\n\r\n${SMUGGLED}`, status: 400 },
  { name: 'userinfo in an absolute-form target', payload: `GET http://u@evil.example/ HTTP/1.1\r\nHost: x\r\n\r\n${SMUGGLED}`, status: 400 },
  {
    name: 'more header fields than http.maxHeaderCount',
    payload: `GET / HTTP/1.1\r\nHost: x\r\n${Array.from({ length: 1000 }, (_, i) => `A${i}: b\r\n`).join('')}\r\n${SMUGGLED}`,
    status: 431,
  },
  { name: 'CL.TE', payload: `POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${SMUGGLED}`, status: 400 },
  { name: 'TE.CL (TE first)', payload: `POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n${SMUGGLED}`, status: 400 },
  { name: 'TE obfuscated: xchunked', payload: `POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n${SMUGGLED}`, status: 400 },
  { name: 'TE obfuscated: space before the colon', payload: `POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n${SMUGGLED}`, status: 400 },
  { name: 'TE obfuscated: chunked, identity', payload: `POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n${SMUGGLED}`, status: 400 },
  { name: 'duplicate Content-Length', payload: `POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n${SMUGGLED}`, status: 400 },
  { name: 'signed Content-Length', payload: `POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -0\r\n\r\n${SMUGGLED}`, status: 400 },
  { name: 'LF-only lines', payload: `GET / HTTP/1.1\nHost: x\n\n${SMUGGLED}`, status: 400 },
  { name: 'NUL in a value', payload: `GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n${SMUGGLED}`, status: 400 },
  { name: 'obs-fold', payload: `GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n${SMUGGLED}`, status: 400 },
];

for (const v of refused) {
  test(`desync refused (${v.status}): ${v.name}`, async (t) => {
    const backend = await llhttpBackend(t);
    const d = await startTestDispatcher(t, { backends: [backend.hostPort] });
    const client = await connect(d.address);
    t.after(() => client.destroy());
    client.write(v.payload);
    const r = await client.readResponse({ timeoutMs: 3_000 });
    assert.equal(r.status, v.status, `${r.status} ${r.reason}: ${r.body.toString()}`);
    const rest = await client.readUntilClose({ timeoutMs: 3_000 });
    assert.equal(rest.data.length, 0, 'nothing after the refusal');
    await sleep(SETTLE_MS);
    assert.deepEqual(seen(backend), [], 'the backend saw no request');
  });
}

// ---------------------------------------------------------------------------------------------
// Replies: a backend naming its framing in Connection still gets each reply framed.

test('desync: a reply that names Content-Length in Connection keeps its framing; pipelined replies stay in order', async (t) => {
  let n = 0;
  const backend = await startRawBackend((s) =>
    serveRequests(s, (req) => {
      n++;
      const body = `reply ${n} to ${req.target}`;
      return `HTTP/1.1 200 OK\r\nConnection: Content-Length\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
    }),
  );
  t.after(() => backend.close());
  const d = await startTestDispatcher(t, { backends: [backend.hostPort] });
  const client = await connect(d.address);
  t.after(() => client.destroy());
  client.write('GET /one HTTP/1.1\r\nHost: x\r\n\r\nGET /two HTTP/1.1\r\nHost: x\r\n\r\n');
  const a = await client.readResponse({ timeoutMs: 3_000 });
  const b = await client.readResponse({ timeoutMs: 3_000 });
  assert.equal(a.get('content-length'), String(a.body.length));
  assert.equal(a.get('connection'), undefined, 'the hop-by-hop Connection field is not passed on');
  assert.deepEqual([a.body.toString(), b.body.toString()], ['reply 1 to /one', 'reply 2 to /two']);
  assert.ok(!receivedText(backend).toLowerCase().includes('connection: content-length'));
});
