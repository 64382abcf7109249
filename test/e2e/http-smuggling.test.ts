/**
 * @module End-to-end tests of every refusal line of HTTP-SPEC.md ("Refusals"): each malformed or
 * ambiguous request gets its status (400, 505, 431, 408) in the exact refusal shape, the client
 * connection is closed after it, and for head-level refusals the backend receives not one byte. Every
 * payload carries a second, smuggled request behind the bad one: it must never reach the backend.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { connect, wrapSocket, type RawConnection, type RawResponse } from '../helpers/raw-client.js';
import { okResponse, receivedText, serveRequests, startRawBackend, type RawBackend } from '../helpers/scripted-backend.js';
import { startTestDispatcher, type TestDispatcherOptions } from '../helpers/dispatcher.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Appended to refused payloads: if this ever reaches the backend, a request was smuggled. */
const SMUGGLED = 'GET /smuggled HTTP/1.1\r\nHost: test\r\n\r\n';
/** How long to keep watching the backend after a refusal for late bytes. */
const SETTLE_MS = 100;

interface Setup {
  backend: RawBackend;
  client: RawConnection;
  address: { host: string; port: number };
}

async function setup(t: TestContext, http?: TestDispatcherOptions['http']): Promise<Setup> {
  const backend = await startRawBackend((s) => serveRequests(s, (req) => okResponse(`ok ${req.target} ${req.body.length}`)));
  t.after(() => backend.close());
  const d = await startTestDispatcher(t, { backends: [backend.hostPort], ...(http ? { http } : {}) });
  const client = await connect(d.address);
  t.after(() => client.destroy());
  return { backend, client, address: d.address };
}

/** The refusal shape: status line, Connection: close, text/plain, a short body with its Content-Length. */
function assertRefusal(r: RawResponse, status: number): void {
  assert.equal(r.status, status, `expected ${status}, got ${r.status} ${r.reason}; head: ${JSON.stringify(r.rawHead)}`);
  assert.equal(r.version, 'HTTP/1.1');
  assert.ok(r.reason.length > 0, 'status line has a reason phrase');
  assert.ok(
    (r.get('connection') ?? '').toLowerCase().split(',').map((s) => s.trim()).includes('close'),
    `refusal carries Connection: close (got ${r.get('connection')})`,
  );
  assert.match(r.get('content-type') ?? '', /^text\/plain/);
  assert.equal(r.get('content-length'), String(r.body.length), 'refusal has a Content-Length');
  assert.ok(r.body.length > 0 && r.body.length < 1024, `a short body (got ${r.body.length} bytes)`);
}

/** Reads the refusal, then requires the connection to close with nothing after the refusal. */
async function expectRefusalAndClose(c: RawConnection, status: number): Promise<RawResponse> {
  const r = await c.readResponse({ timeoutMs: 3_000 });
  assertRefusal(r, status);
  const rest = await c.readUntilClose({ timeoutMs: 3_000 });
  assert.equal(rest.data.length, 0, `bytes after the refusal (a second response?): ${JSON.stringify(rest.data.toString('latin1'))}`);
  return r;
}

async function assertBackendSawNothing(b: RawBackend): Promise<void> {
  await sleep(SETTLE_MS);
  assert.equal(b.bytesReceived, 0, `backend received ${b.bytesReceived} bytes: ${JSON.stringify(receivedText(b))}`);
}

async function assertNotSmuggled(b: RawBackend): Promise<void> {
  await sleep(SETTLE_MS);
  assert.ok(!receivedText(b).includes('/smuggled'), `smuggled request reached the backend: ${JSON.stringify(receivedText(b))}`);
}

/** A head-level refusal: status, close, and the backend got nothing at all. */
async function refusedAtHead(t: TestContext, payload: string, status: number, http?: TestDispatcherOptions['http']): Promise<void> {
  const { backend, client } = await setup(t, http);
  client.write(payload);
  await expectRefusalAndClose(client, status);
  await assertBackendSawNothing(backend);
}

// ---------------------------------------------------------------------------------------------
// Controls: the same setup lets valid requests through (so each refusal test can fail).

test('control: a valid request passes, and the backend sees it', async (t) => {
  const { backend, client } = await setup(t);
  client.write('GET /fine HTTP/1.1\r\nHost: test\r\n\r\n');
  const r = await client.readResponse();
  assert.equal(r.status, 200);
  assert.equal(r.body.toString(), 'ok /fine 0');
  assert.ok(backend.bytesReceived > 0);
});

test('control: HTTP/1.0 without Host is accepted', async (t) => {
  const { client } = await setup(t);
  client.write('GET /old HTTP/1.0\r\n\r\n');
  const r = await client.readResponse();
  assert.equal(r.status, 200);
});

test('control: a chunk size with an extension (;ext) is accepted', async (t) => {
  const { backend, client } = await setup(t);
  client.write('POST /ext HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n5;name=value\r\nhello\r\n0\r\n\r\n');
  const r = await client.readResponse();
  assert.equal(r.status, 200);
  assert.equal(r.body.toString(), 'ok /ext 5');
  assert.ok(receivedText(backend).includes('hello'));
});

test('control: a tab inside a header value is not a control character', async (t) => {
  const { client } = await setup(t);
  client.write('GET /tab HTTP/1.1\r\nHost: test\r\nX-Tab: a\tb\r\n\r\n');
  assert.equal((await client.readResponse()).status, 200);
});

// ---------------------------------------------------------------------------------------------
// 400 at the head

test('400: malformed request line (no HTTP version)', async (t) => {
  await refusedAtHead(t, 'GET /nover\r\nHost: test\r\n\r\n' + SMUGGLED, 400);
});

test('400: malformed request line (extra token after the version)', async (t) => {
  await refusedAtHead(t, 'GET / HTTP/1.1 extra\r\nHost: test\r\n\r\n' + SMUGGLED, 400);
});

test('400: header line without ":"', async (t) => {
  await refusedAtHead(t, 'GET / HTTP/1.1\r\nHost: test\r\nNoColonHere\r\n\r\n' + SMUGGLED, 400);
});

test('400: whitespace between header name and ":" (Transfer-Encoding : chunked)', async (t) => {
  await refusedAtHead(
    t,
    'POST / HTTP/1.1\r\nHost: test\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n' + SMUGGLED,
    400,
  );
});

test('400: obs-fold (a header line starting with SP)', async (t) => {
  await refusedAtHead(t, 'GET / HTTP/1.1\r\nHost: test\r\nX-Folded: a\r\n b\r\n\r\n' + SMUGGLED, 400);
});

test('400: obs-fold (a header line starting with HTAB)', async (t) => {
  await refusedAtHead(t, 'GET / HTTP/1.1\r\nHost: test\r\nX-Folded: a\r\n\tb\r\n\r\n' + SMUGGLED, 400);
});

test('400: a bare CR line ending', async (t) => {
  await refusedAtHead(t, 'GET / HTTP/1.1\r\nHost: test\rX-Other: y\r\n\r\n' + SMUGGLED, 400);
});

test('400: a bare LF line ending in a header', async (t) => {
  await refusedAtHead(t, 'GET / HTTP/1.1\r\nHost: test\nX-Other: y\r\n\r\n' + SMUGGLED, 400);
});

test('400: bare LF line endings throughout', async (t) => {
  await refusedAtHead(t, 'GET / HTTP/1.1\nHost: test\n\n' + SMUGGLED, 400);
});

test('400: Content-Length together with Transfer-Encoding (CL.TE smuggling)', async (t) => {
  await refusedAtHead(
    t,
    'POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n' + SMUGGLED,
    400,
  );
});

test('400: Transfer-Encoding together with Content-Length (TE.CL order)', async (t) => {
  await refusedAtHead(
    t,
    'POST / HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n5c\r\n' + SMUGGLED + '\r\n0\r\n\r\n',
    400,
  );
});

test('400: two Content-Length lines with equal values', async (t) => {
  await refusedAtHead(t, 'POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc' + SMUGGLED, 400);
});

test('400: two Content-Length lines with different values', async (t) => {
  await refusedAtHead(t, 'POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 3\r\nContent-Length: 40\r\n\r\nabc' + SMUGGLED, 400);
});

test('400: Content-Length as a comma list', async (t) => {
  await refusedAtHead(t, 'POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 3, 3\r\n\r\nabc' + SMUGGLED, 400);
});

test('400: Content-Length not all digits (+3)', async (t) => {
  await refusedAtHead(t, 'POST / HTTP/1.1\r\nHost: test\r\nContent-Length: +3\r\n\r\nabc' + SMUGGLED, 400);
});

test('400: Content-Length not all digits (0x3)', async (t) => {
  await refusedAtHead(t, 'POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 0x3\r\n\r\nabc' + SMUGGLED, 400);
});

test('400: Content-Length over 2^53-1', async (t) => {
  await refusedAtHead(t, 'POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 9007199254740992\r\n\r\nabc' + SMUGGLED, 400);
});

test('400: Transfer-Encoding whose last coding is not chunked (chunked, gzip)', async (t) => {
  await refusedAtHead(t, 'POST / HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n' + SMUGGLED, 400);
});

test('400: Transfer-Encoding other than exactly chunked (gzip, chunked)', async (t) => {
  await refusedAtHead(t, 'POST / HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n' + SMUGGLED, 400);
});

test('400: Transfer-Encoding other than chunked (identity)', async (t) => {
  await refusedAtHead(t, 'POST / HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: identity\r\n\r\n' + SMUGGLED, 400);
});

test('400: chunked listed twice in one Transfer-Encoding line', async (t) => {
  await refusedAtHead(t, 'POST / HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n' + SMUGGLED, 400);
});

test('400: chunked listed twice over two Transfer-Encoding lines', async (t) => {
  await refusedAtHead(
    t,
    'POST / HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n' + SMUGGLED,
    400,
  );
});

test('400: missing Host on HTTP/1.1', async (t) => {
  await refusedAtHead(t, 'GET / HTTP/1.1\r\nX-Not-Host: test\r\n\r\n' + SMUGGLED, 400);
});

test('400: a control character (NUL) in a header value', async (t) => {
  await refusedAtHead(t, 'GET / HTTP/1.1\r\nHost: test\r\nX-Ctl: a\x00b\r\n\r\n' + SMUGGLED, 400);
});

test('400: a control character (ESC) in a header value', async (t) => {
  await refusedAtHead(t, 'GET / HTTP/1.1\r\nHost: test\r\nX-Ctl: a\x1bb\r\n\r\n' + SMUGGLED, 400);
});

test('400: a control character (DEL) in a header value', async (t) => {
  await refusedAtHead(t, 'GET / HTTP/1.1\r\nHost: test\r\nX-Ctl: a\x7fb\r\n\r\n' + SMUGGLED, 400);
});

// ---------------------------------------------------------------------------------------------
// 400 in a chunked body (the head may already have been forwarded)

/**
 * A bad chunk after a good head: the client gets 400 (the backend has not answered), the client
 * connection closes, and the smuggled request never reaches the backend. If the head was forwarded,
 * the backend connection is destroyed.
 */
async function refusedInBody(t: TestContext, body: string): Promise<void> {
  const { backend, client } = await setup(t);
  client.write('POST /body HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n' + body + SMUGGLED);
  await expectRefusalAndClose(client, 400);
  await assertNotSmuggled(backend);
  if (backend.bytesReceived > 0) {
    const until = Date.now() + 2_000;
    while (backend.sockets.size > 0 && Date.now() < until) await sleep(20);
    assert.equal(backend.sockets.size, 0, 'the backend connection that got the head is destroyed');
  }
}

test('400: a chunk size line that is not hex', async (t) => {
  await refusedInBody(t, 'zz\r\nhello\r\n0\r\n\r\n');
});

test('400: a chunk size line that is not hex (hex then garbage, no ";")', async (t) => {
  await refusedInBody(t, '5 x\r\nhello\r\n0\r\n\r\n');
});

test('400: an empty chunk size line', async (t) => {
  await refusedInBody(t, '\r\nhello\r\n0\r\n\r\n');
});

test('400: a chunk size longer than 16 hex digits', async (t) => {
  await refusedInBody(t, '00000000000000005\r\nhello\r\n0\r\n\r\n');
});

test('400: a chunk not followed by CRLF', async (t) => {
  await refusedInBody(t, '5\r\nhelloXX\r\n0\r\n\r\n');
});

test('bad chunk after the backend already answered: the client connection is closed, no 400', async (t) => {
  let backendGotHead = false;
  const backend = await startRawBackend(async (s) => {
    const conn = wrapSocket(s, 'backend');
    if (!(await conn.readRequestHead())) return; // a tcp probe
    backendGotHead = true;
    s.write(okResponse('early')); // answers before the request body is complete
  });
  t.after(() => backend.close());
  const d = await startTestDispatcher(t, { backends: [backend.hostPort] });
  const client = await connect(d.address);
  t.after(() => client.destroy());
  client.write('POST /early HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n');
  const r = await client.readResponse({ timeoutMs: 3_000 });
  assert.equal(r.status, 200);
  assert.equal(r.body.toString(), 'early');
  assert.ok(backendGotHead);
  client.write('zz\r\n' + SMUGGLED);
  const rest = await client.readUntilClose({ timeoutMs: 3_000 });
  assert.equal(rest.data.length, 0, `after a response was sent the client is closed, not answered: ${JSON.stringify(rest.data.toString('latin1'))}`);
  await assertNotSmuggled(backend);
});

test('control: a 16-hex-digit chunk size is accepted', async (t) => {
  const { client } = await setup(t);
  client.write('POST /long HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n0000000000000005\r\nhello\r\n0\r\n\r\n');
  const r = await client.readResponse();
  assert.equal(r.status, 200);
  assert.equal(r.body.toString(), 'ok /long 5');
});

// ---------------------------------------------------------------------------------------------
// 505

test('505: HTTP/2.0 request line', async (t) => {
  await refusedAtHead(t, 'GET / HTTP/2.0\r\nHost: test\r\n\r\n' + SMUGGLED, 505);
});

test('505: HTTP/1.2 request line', async (t) => {
  await refusedAtHead(t, 'GET / HTTP/1.2\r\nHost: test\r\n\r\n' + SMUGGLED, 505);
});

// ---------------------------------------------------------------------------------------------
// 431

const MAX_HEADER_BYTES = 2048;

/** A request head of exactly `size` bytes (request line + headers + CRLFCRLF). */
function headOfSize(size: number): string {
  const start = 'GET /big HTTP/1.1\r\nHost: test\r\nX-Pad: ';
  const end = '\r\n\r\n';
  const pad = size - start.length - end.length;
  assert.ok(pad > 0);
  const head = start + 'p'.repeat(pad) + end;
  assert.equal(head.length, size);
  return head;
}

test('431: a request head one byte over http.maxHeaderBytes', async (t) => {
  await refusedAtHead(t, headOfSize(MAX_HEADER_BYTES + 1) + SMUGGLED, 431, { maxHeaderBytes: MAX_HEADER_BYTES });
});

test('431: a request head growing past http.maxHeaderBytes without ever ending', async (t) => {
  const { backend, client } = await setup(t, { maxHeaderBytes: MAX_HEADER_BYTES, headerTimeoutMs: 10_000 });
  client.write('GET /endless HTTP/1.1\r\nHost: test\r\n');
  for (let i = 0; i < 40; i++) client.write(`X-Line-${i}: ${'v'.repeat(90)}\r\n`);
  await expectRefusalAndClose(client, 431);
  await assertBackendSawNothing(backend);
});

test('431 control: a request head one byte under http.maxHeaderBytes is accepted', async (t) => {
  const { backend, client } = await setup(t, { maxHeaderBytes: MAX_HEADER_BYTES });
  client.write(headOfSize(MAX_HEADER_BYTES - 1));
  const r = await client.readResponse();
  assert.equal(r.status, 200);
  assert.equal(r.body.toString(), 'ok /big 0');
  assert.ok(backend.bytesReceived >= MAX_HEADER_BYTES - 1);
});

// ---------------------------------------------------------------------------------------------
// 408 and idle close

const HEADER_TIMEOUT_MS = 200;
const IDLE_TIMEOUT_MS = 600;

test('408: a started head not completed within http.headerTimeoutMs', async (t) => {
  const { backend, client } = await setup(t, { headerTimeoutMs: HEADER_TIMEOUT_MS, idleTimeoutMs: 10_000 });
  const t0 = Date.now();
  client.write('GET /slow HTTP/1.1\r\nHost: te');
  await expectRefusalAndClose(client, 408);
  const elapsed = Date.now() - t0;
  assert.ok(elapsed >= HEADER_TIMEOUT_MS * 0.8, `408 after ${elapsed} ms, before headerTimeoutMs ${HEADER_TIMEOUT_MS}`);
  assert.ok(elapsed < 3_000, `408 after ${elapsed} ms`);
  await assertBackendSawNothing(backend);
});

test('408: a head trickled byte by byte is timed out as a whole (not per byte)', async (t) => {
  const { backend, client } = await setup(t, { headerTimeoutMs: HEADER_TIMEOUT_MS, idleTimeoutMs: 10_000 });
  const head = 'GET /trickle HTTP/1.1\r\nHost: test\r\nX-Slow: ' + 'x'.repeat(100) + '\r\n\r\n';
  let i = 0;
  const timer = setInterval(() => {
    if (i < head.length && !client.isEnded) client.write(head[i++]!);
  }, 20);
  t.after(() => clearInterval(timer));
  const t0 = Date.now();
  const r = await client.readResponse({ timeoutMs: 3_000 });
  clearInterval(timer);
  assertRefusal(r, 408);
  assert.ok(Date.now() - t0 < 2_000, 'refused long before the trickled head would complete');
  await client.readUntilClose({ timeoutMs: 3_000 });
  await assertBackendSawNothing(backend);
});

test('idle: a connection that sent nothing is closed silently after idleTimeoutMs (no 408)', async (t) => {
  const { client } = await setup(t, { headerTimeoutMs: HEADER_TIMEOUT_MS, idleTimeoutMs: IDLE_TIMEOUT_MS });
  const t0 = Date.now();
  const rest = await client.readUntilClose({ timeoutMs: 5_000 });
  const elapsed = Date.now() - t0;
  assert.equal(rest.data.length, 0, `an idle connection got bytes: ${JSON.stringify(rest.data.toString('latin1'))}`);
  assert.ok(elapsed >= IDLE_TIMEOUT_MS * 0.8, `closed after ${elapsed} ms; idleTimeoutMs is ${IDLE_TIMEOUT_MS} (headerTimeoutMs ${HEADER_TIMEOUT_MS})`);
});

test('idle: a keep-alive connection idle after a response is closed silently after idleTimeoutMs', async (t) => {
  const { client } = await setup(t, { headerTimeoutMs: HEADER_TIMEOUT_MS, idleTimeoutMs: IDLE_TIMEOUT_MS });
  client.write('GET /once HTTP/1.1\r\nHost: test\r\n\r\n');
  assert.equal((await client.readResponse()).status, 200);
  const t0 = Date.now();
  const rest = await client.readUntilClose({ timeoutMs: 5_000 });
  const elapsed = Date.now() - t0;
  assert.equal(rest.data.length, 0, `an idle connection got bytes: ${JSON.stringify(rest.data.toString('latin1'))}`);
  assert.ok(elapsed >= IDLE_TIMEOUT_MS * 0.8, `closed after ${elapsed} ms; idleTimeoutMs is ${IDLE_TIMEOUT_MS}`);
});
