/**
 * @module End-to-end tests of HTTP-SPEC.md "Backend failures" and "Memory": refused, killed, reset,
 * silent and malformed backends, pooled connections closed under the proxy, probes bringing a backend
 * back, and the backpressure bound for a client or backend that does not read. Backends that must die
 * like a crashed server run as child processes (test/fixtures/slow-backend.mjs) and get SIGKILL.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import type net from 'node:net';
import { connect, IncompleteMessageError, wrapSocket, type Address, type RawConnection } from '../helpers/raw-client.js';
import {
  freePort,
  okResponse,
  serveRequests,
  startHttpBackend,
  startRawBackend,
  type HttpHandler,
} from '../helpers/scripted-backend.js';
import { startTestDispatcher, type TestDispatcherOptions } from '../helpers/dispatcher.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The fixture is plain JS and is not compiled: reach it in the source tree from dist/test/e2e. */
const SLOW_BACKEND = fileURLToPath(new URL('../../../test/fixtures/slow-backend.mjs', import.meta.url));

function get(path: string, extra = ''): string {
  return `GET ${path} HTTP/1.1\r\nHost: test\r\n${extra}\r\n`;
}

async function open(t: TestContext, addr: Address): Promise<RawConnection> {
  const c = await connect(addr);
  t.after(() => c.destroy());
  return c;
}

const echoUrl: HttpHandler = (req, res) => {
  const body = `${req.method} ${req.url}`;
  res.setHeader('content-length', Buffer.byteLength(body));
  res.end(body);
};

async function httpBackend(t: TestContext, handler: HttpHandler = echoUrl, port?: number) {
  const b = await startHttpBackend(handler, port === undefined ? {} : { port });
  t.after(() => b.close());
  return b;
}

async function rawBackend(t: TestContext, onConnection: Parameters<typeof startRawBackend>[0]) {
  const b = await startRawBackend(onConnection);
  t.after(() => b.close());
  return b;
}

/** One request on a fresh connection. */
async function request(addr: Address, raw: string, opts: { head?: boolean; timeoutMs?: number } = {}) {
  const c = await connect(addr);
  try {
    c.write(raw);
    return await c.readResponse(opts);
  } finally {
    c.destroy();
  }
}

interface Child {
  readonly proc: ChildProcess;
  readonly port: number;
  /** Resolves when the child prints `line`. */
  waitFor(line: string, timeoutMs?: number): Promise<void>;
}

/** Runs the fixture backend in `mode`; it is SIGKILLed when the test ends if still alive. */
async function startChild(t: TestContext, mode: 'hang' | 'slow-body'): Promise<Child> {
  const proc = spawn(process.execPath, [SLOW_BACKEND, mode], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
  });
  const lines: string[] = [];
  const waiters: Array<() => void> = [];
  createInterface({ input: proc.stdout! }).on('line', (l) => {
    lines.push(l);
    for (const w of waiters.splice(0)) w();
  });
  const waitFor = async (want: (l: string) => boolean, what: string, timeoutMs = 5_000): Promise<string> => {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const hit = lines.find(want);
      if (hit !== undefined) return hit;
      if (Date.now() > until) throw new Error(`child backend (${mode}) did not print ${what} within ${timeoutMs} ms; printed ${JSON.stringify(lines)}`);
      await Promise.race([new Promise<void>((r) => waiters.push(r)), sleep(50)]);
    }
  };
  const first = await waitFor((l) => l.startsWith('{'), 'its port');
  const port = (JSON.parse(first) as { port: number }).port;
  return {
    proc,
    port,
    waitFor: async (line, timeoutMs) => {
      await waitFor((l) => l === line, JSON.stringify(line), timeoutMs);
    },
  };
}

function killed(proc: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
    proc.once('exit', () => resolve());
    proc.kill('SIGKILL');
  });
}

/** Health settings that keep a dead backend down for the whole test (probes every 10 s). */
const SLOW_PROBE: TestDispatcherOptions['health'] = { probe: { intervalMs: 10_000 } };

// ---------------------------------------------------------------------------------------------
// Refused

test('refused backend: requests are served by the other backend; status() shows it down', async (t) => {
  const dead = await freePort();
  const live = await httpBackend(t);
  const d = await startTestDispatcher(t, { backends: [`127.0.0.1:${dead}`, live.hostPort], health: SLOW_PROBE });
  for (let i = 0; i < 4; i++) {
    const r = await request(d.address, get(`/r${i}`));
    assert.equal(r.status, 200, `request ${i}: ${r.status} ${r.body.toString()}`);
    assert.equal(r.body.toString(), `GET /r${i}`);
  }
  assert.equal(live.requests.length, 4, 'every request was served by the live backend');
  const b0 = d.backend('b0');
  assert.equal(b0.state, 'down', `b0: ${JSON.stringify(b0)}`);
  assert.notEqual(d.backend('b1').state, 'down');
});

test('refused backend: on one keep-alive client connection too', async (t) => {
  const dead = await freePort();
  const live = await httpBackend(t);
  const d = await startTestDispatcher(t, { backends: [`127.0.0.1:${dead}`, live.hostPort], health: SLOW_PROBE });
  const c = await open(t, d.address);
  for (let i = 0; i < 3; i++) {
    c.write(get(`/k${i}`));
    const r = await c.readResponse();
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), `GET /k${i}`);
  }
  assert.equal(d.backend('b0').state, 'down');
});

test('all backends down: 503 Service Unavailable with Retry-After: 1', async (t) => {
  const d = await startTestDispatcher(t, {
    backends: [`127.0.0.1:${await freePort()}`, `127.0.0.1:${await freePort()}`],
    health: SLOW_PROBE,
  });
  // Requests find out that both are refused (one request may try both, or one each).
  for (let i = 0; i < 3 && !(d.backend('b0').state === 'down' && d.backend('b1').state === 'down'); i++) {
    const r = await request(d.address, get(`/probe-by-request-${i}`));
    assert.ok(r.status === 503 || r.status === 502, `request ${i} while backends are refused: ${r.status}`);
  }
  await d.waitForState('b0', 'down');
  await d.waitForState('b1', 'down');
  const r = await request(d.address, get('/second'));
  assert.equal(r.status, 503);
  assert.equal(r.get('retry-after'), '1');
});

// ---------------------------------------------------------------------------------------------
// Backend killed (child process, SIGKILL)

test('backend killed after the request, before the response head: 502 and backend down', async (t) => {
  const child = await startChild(t, 'hang');
  const d = await startTestDispatcher(t, { backends: [`127.0.0.1:${child.port}`], health: SLOW_PROBE });
  const c = await open(t, d.address);
  c.write(get('/doomed'));
  await child.waitFor('request');
  await killed(child.proc);
  const r = await c.readResponse({ timeoutMs: 5_000 });
  assert.equal(r.status, 502);
  assert.ok((r.get('connection') ?? '').toLowerCase().includes('close'), `502 carries Connection: close (got ${r.get('connection')})`);
  const b0 = await d.waitForState('b0', 'down', 2_000);
  assert.ok(['reset', 'closed'].includes(b0.reason), `reason '${b0.reason}', expected 'reset' or 'closed'`);
});

test('backend killed mid-body: the client sees a truncated response, never a clean end', async (t) => {
  const child = await startChild(t, 'slow-body');
  const d = await startTestDispatcher(t, { backends: [`127.0.0.1:${child.port}`], health: SLOW_PROBE });
  const c = await open(t, d.address);
  c.write(get('/big'));
  await child.waitFor('body-started');
  await sleep(50); // let the first bytes reach the client
  await killed(child.proc);
  await assert.rejects(
    c.readResponse({ timeoutMs: 5_000 }),
    (err: unknown) => {
      assert.ok(err instanceof IncompleteMessageError, `expected a truncated response, got ${String(err)}`);
      assert.equal(err.status, 200, 'the head had been relayed');
      assert.ok(err.received < 1_000_000, `received ${err.received} of 1000000`);
      return true;
    },
    'a response cut by a dying backend must not end cleanly',
  );
  await c.closed;
});

// ---------------------------------------------------------------------------------------------
// Reset, timeout, malformed

test('backend resets after the request, before the head: 502, backend down (reset), no retry', async (t) => {
  const b = await rawBackend(t, async (s) => {
    if (!(await wrapSocket(s, 'backend').readRequestHead())) return; // a tcp probe
    s.resetAndDestroy();
  });
  const d = await startTestDispatcher(t, { backends: [b.hostPort], health: SLOW_PROBE });
  const r = await request(d.address, get('/reset'));
  assert.equal(r.status, 502);
  assert.ok((r.get('connection') ?? '').toLowerCase().includes('close'), `Connection: ${r.get('connection')}`);
  const b0 = await d.waitForState('b0', 'down', 2_000);
  assert.equal(b0.reason, 'reset');
  assert.equal(b.dataConnections, 1, 'a fresh (not pooled) connection is not retried');
});

test('backend closes (FIN) after the request, before the head: 502, backend down (closed)', async (t) => {
  const b = await rawBackend(t, async (s) => {
    if (!(await wrapSocket(s, 'backend').readRequestHead())) return; // a tcp probe
    s.end();
  });
  const d = await startTestDispatcher(t, { backends: [b.hostPort], health: SLOW_PROBE });
  const r = await request(d.address, get('/closed'));
  assert.equal(r.status, 502);
  const b0 = await d.waitForState('b0', 'down', 2_000);
  assert.equal(b0.reason, 'closed');
});

test('no response head within http.responseTimeoutMs: 504 and the backend connection is destroyed', async (t) => {
  let backendSocket: net.Socket | undefined;
  const b = await rawBackend(t, async (s) => {
    if (await wrapSocket(s, 'backend').readRequestHead()) backendSocket = s; // else a tcp probe
    // never answer
  });
  const d = await startTestDispatcher(t, { backends: [b.hostPort], http: { responseTimeoutMs: 300 }, health: SLOW_PROBE });
  const t0 = Date.now();
  const r = await request(d.address, get('/silent'), { timeoutMs: 5_000 });
  const elapsed = Date.now() - t0;
  assert.equal(r.status, 504);
  assert.ok(elapsed >= 250, `504 after ${elapsed} ms, before responseTimeoutMs`);
  assert.ok(backendSocket);
  const until = Date.now() + 2_000;
  while (!backendSocket.destroyed && b.sockets.size > 0 && Date.now() < until) await sleep(20);
  assert.equal(b.sockets.size, 0, 'the backend connection is destroyed after the 504');
});

test('a response timeout never fails over back to the backend that timed out', async (t) => {
  // Regression (review): a timeout does not mark the backend down, so the balancer offered it again
  // and a single silent backend was sent the request maxAttempts times before the 504.
  let heads = 0;
  const b = await rawBackend(t, async (s) => {
    if (await wrapSocket(s, 'backend').readRequestHead()) heads++; // else a tcp probe
    // never answer
  });
  const d = await startTestDispatcher(t, { backends: [b.hostPort], http: { responseTimeoutMs: 300 }, health: SLOW_PROBE });
  const t0 = Date.now();
  const r = await request(d.address, get('/silent'), { timeoutMs: 5_000 });
  const elapsed = Date.now() - t0;
  assert.equal(r.status, 504);
  assert.equal(heads, 1, 'the request reached the silent backend once');
  assert.ok(elapsed < 900, `504 after ${elapsed} ms: one timeout, not one per attempt`);
});

const MALFORMED: Array<[string, string]> = [
  ['bad status line (non-numeric code)', 'HTTP/1.1 abc OK\r\nContent-Length: 2\r\n\r\nok'],
  ['bad status line (not HTTP)', 'garbage\r\n\r\n'],
  ['Content-Length with Transfer-Encoding', 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n'],
  ['bad Content-Length', 'HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\nok'],
  ['two different Content-Length values', 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 5\r\n\r\nok'],
];

for (const [name, response] of MALFORMED) {
  test(`malformed response from the backend: ${name} → 502`, async (t) => {
    const b = await rawBackend(t, async (s) => {
      if (!(await wrapSocket(s, 'backend').readRequestHead())) return; // a tcp probe
      s.write(response);
    });
    const d = await startTestDispatcher(t, { backends: [b.hostPort], health: SLOW_PROBE });
    const c = await open(t, d.address);
    c.write(get('/m'));
    const r = await c.readResponse({ timeoutMs: 3_000 });
    assert.equal(r.status, 502, `got ${r.status}: ${r.body.toString('latin1')}`);
  });
}

// ---------------------------------------------------------------------------------------------
// Pooled connection closed by the backend

test('pooled connection closed by the backend while idle: the next GET still succeeds', async (t) => {
  let served = 0;
  const b = await rawBackend(t, async (s) => {
    const conn = wrapSocket(s, 'backend');
    const req = await conn.readRequest();
    if (!req) return; // a tcp probe
    const index = served++;
    // Answer keep-alive, then close the idle connection shortly after.
    s.write(okResponse(`conn${index} ${req.target}`));
    await sleep(50);
    s.end();
  });
  const d = await startTestDispatcher(t, { backends: [b.hostPort], health: SLOW_PROBE });
  const c = await open(t, d.address);
  c.write(get('/one'));
  assert.equal((await c.readResponse()).body.toString(), 'conn0 /one');
  await sleep(200);
  c.write(get('/two'));
  const r = await c.readResponse({ timeoutMs: 3_000 });
  assert.equal(r.status, 200);
  assert.equal(r.body.toString(), 'conn1 /two');
});

test('pooled connection closed by the backend as the next GET arrives: retried once on a fresh connection', async (t) => {
  let served = 0;
  const b = await rawBackend(t, async (s) => {
    const conn = wrapSocket(s, 'backend');
    const first = await conn.readRequest();
    if (!first) return; // a tcp probe
    const index = served++;
    s.write(okResponse(`conn${index} ${first.target}`));
    if (index === 0) {
      // The pooled connection dies the moment it is reused, before any response byte.
      await conn.readRequestHead({ timeoutMs: 30_000 });
      s.destroy();
      return;
    }
    await serveRequests(s, (req) => okResponse(`conn${index} ${req.target}`));
  });
  const d = await startTestDispatcher(t, { backends: [b.hostPort], health: SLOW_PROBE });
  const c = await open(t, d.address);
  c.write(get('/one'));
  assert.equal((await c.readResponse()).body.toString(), 'conn0 /one');
  c.write(get('/two'));
  const r = await c.readResponse({ timeoutMs: 3_000 });
  assert.equal(r.status, 200, `a bodiless GET on a reused connection is retried (got ${r.status})`);
  assert.equal(r.body.toString(), 'conn1 /two');
  assert.equal(b.dataConnections, 2);
});

test('pooled connection closed as a POST with a body arrives: 502, no retry', async (t) => {
  let served = 0;
  const b = await rawBackend(t, async (s) => {
    const conn = wrapSocket(s, 'backend');
    const first = await conn.readRequest();
    if (!first) return; // a tcp probe
    const index = served++;
    s.write(okResponse(`conn${index} ${first.target}`));
    if (index === 0) {
      await conn.readRequestHead({ timeoutMs: 30_000 });
      s.destroy();
      return;
    }
    await serveRequests(s, (req) => okResponse(`conn${index} ${req.target}`));
  });
  const d = await startTestDispatcher(t, { backends: [b.hostPort], health: SLOW_PROBE });
  const c = await open(t, d.address);
  c.write(get('/one'));
  assert.equal((await c.readResponse()).body.toString(), 'conn0 /one');
  c.write('POST /two HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\r\nhello');
  const r = await c.readResponse({ timeoutMs: 3_000 });
  assert.equal(r.status, 502);
  assert.equal(b.dataConnections, 1, 'a request with a body is not replayed');
});

// ---------------------------------------------------------------------------------------------
// Probes

test('tcp probe: a down backend returns to up once it listens again, and gets traffic', async (t) => {
  const port = await freePort();
  const live = await httpBackend(t);
  const d = await startTestDispatcher(t, {
    backends: [`127.0.0.1:${port}`, live.hostPort],
    health: { probe: { type: 'tcp', intervalMs: 50, timeoutMs: 200 } },
  });
  for (let i = 0; i < 2; i++) assert.equal((await request(d.address, get('/x'))).status, 200);
  await d.waitForState('b0', 'down', 2_000);
  const revived = await httpBackend(t, echoUrl, port);
  await d.waitForState('b0', 'up', 3_000);
  for (let i = 0; i < 4; i++) assert.equal((await request(d.address, get(`/after${i}`))).status, 200);
  assert.ok(revived.requests.some((r) => r.url?.startsWith('/after')), 'the revived backend is back in rotation');
});

test('http probe: GET <path> with a 2xx brings a down backend back up', async (t) => {
  const port = await freePort();
  const live = await httpBackend(t);
  const d = await startTestDispatcher(t, {
    backends: [`127.0.0.1:${port}`, live.hostPort],
    health: { probe: { type: 'http', path: '/healthz', intervalMs: 50, timeoutMs: 200 } },
  });
  for (let i = 0; i < 2; i++) assert.equal((await request(d.address, get('/x'))).status, 200);
  await d.waitForState('b0', 'down', 2_000);
  const revived = await httpBackend(t, echoUrl, port);
  await d.waitForState('b0', 'up', 3_000);
  assert.ok(
    revived.requests.some((r) => r.method === 'GET' && r.url === '/healthz'),
    `probe requests seen: ${JSON.stringify(revived.requests.map((r) => `${r.method} ${r.url}`))}`,
  );
});

// ---------------------------------------------------------------------------------------------
// Memory bound (backpressure)

const HUGE_BYTES = 200 * 1024 * 1024;
const PIECE_BYTES = 64 * 1024;
/** What may sit in kernel buffers and the proxy between the two ends; far below HUGE_BYTES. */
const BOUND_BYTES = 32 * 1024 * 1024;
const STALL_MS = 1_500;

/** Piece `i` of the huge body: a fixed random block stamped with its index (reordering shows). */
function piece(base: Buffer, i: number): Buffer {
  const p = Buffer.from(base);
  p.writeUInt32BE(i, 0);
  return p;
}

/**
 * Writes HUGE_BYTES to `socket` with backpressure, counting bytes whose write callback fired (handed
 * to the kernel). Returns the hash of everything written once done.
 */
function pumpHuge(socket: net.Socket, accepted: { bytes: number }, base: Buffer): Promise<string> {
  const hash = createHash('sha256');
  let i = 0;
  const pieces = HUGE_BYTES / PIECE_BYTES;
  return new Promise((resolve, reject) => {
    socket.once('error', reject);
    const pump = (): void => {
      while (i < pieces) {
        const p = piece(base, i++);
        hash.update(p);
        const ok = socket.write(p, (err) => {
          if (!err) accepted.bytes += p.length;
        });
        if (!ok) {
          socket.once('drain', pump);
          return;
        }
      }
      resolve(hash.digest('hex'));
    };
    pump();
  });
}

test('memory: a client that does not read a 200 MB response stalls the backend; then gets every byte', async (t) => {
  const base = Buffer.alloc(PIECE_BYTES, 0x5a);
  const accepted = { bytes: 0 };
  let sentHash: Promise<string> | undefined;
  const b = await rawBackend(t, async (s) => {
    if (!(await wrapSocket(s, 'backend').readRequestHead())) return; // a tcp probe
    s.write(`HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: ${HUGE_BYTES}\r\n\r\n`);
    sentHash = pumpHuge(s, accepted, base);
  });
  const d = await startTestDispatcher(t, { backends: [b.hostPort], http: { responseTimeoutMs: 30_000 } });
  const c = await open(t, d.address);
  c.pause();
  c.write(get('/huge'));
  await sleep(STALL_MS);
  const stalledAt = accepted.bytes;
  t.diagnostic(`backend bytes accepted while the client read nothing: ${(stalledAt / 1048576).toFixed(1)} MB`);
  assert.ok(stalledAt > 0, 'the backend started sending');
  assert.ok(
    stalledAt < BOUND_BYTES,
    `backend got ${(stalledAt / 1048576).toFixed(1)} MB accepted while the client read nothing (bound ${BOUND_BYTES / 1048576} MB)`,
  );
  const hash = createHash('sha256');
  c.resume();
  const r = await c.readResponse({ timeoutMs: 20_000, sink: (chunk) => hash.update(chunk) });
  assert.equal(r.status, 200);
  assert.equal(r.bodyLength, HUGE_BYTES);
  assert.ok(sentHash);
  assert.equal(hash.digest('hex'), await sentHash, 'every byte, in order');
});

test('memory: a 200 MB upload to a backend that does not read stalls the client; then every byte arrives', async (t) => {
  const base = Buffer.alloc(PIECE_BYTES, 0xa5);
  let backend: { socket: net.Socket; conn: RawConnection } | undefined;
  const b = await rawBackend(t, (s) => {
    const conn = wrapSocket(s, 'backend');
    // The first bytes tell the proxy's connection from a tcp probe; then read nothing until told.
    s.once('data', () => {
      s.pause();
      backend = { socket: s, conn };
    });
  });
  const d = await startTestDispatcher(t, { backends: [b.hostPort], http: { responseTimeoutMs: 30_000 } });
  const c = await open(t, d.address);
  c.write(`POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: ${HUGE_BYTES}\r\n\r\n`);
  const accepted = { bytes: 0 };
  const sentHash = pumpHuge(c.socket, accepted, base);
  await sleep(STALL_MS);
  const stalledAt = accepted.bytes;
  t.diagnostic(`client bytes accepted while the backend read nothing: ${(stalledAt / 1048576).toFixed(1)} MB`);
  assert.ok(stalledAt > 0, 'the client started sending');
  assert.ok(
    stalledAt < BOUND_BYTES,
    `client got ${(stalledAt / 1048576).toFixed(1)} MB accepted while the backend read nothing (bound ${BOUND_BYTES / 1048576} MB)`,
  );
  assert.ok(backend, 'the proxy connected to the backend');
  // Now the backend reads everything, hashes the body and answers with the hash.
  const { socket: backendSocket, conn: backendConn } = backend;
  backendSocket.resume();
  const head = await backendConn.readRequestHead({ timeoutMs: 10_000 });
  assert.ok(head);
  assert.equal(head.get('content-length'), String(HUGE_BYTES));
  const hash = createHash('sha256');
  let got = 0;
  while (got < HUGE_BYTES) {
    const part = await backendConn.readAvailable(HUGE_BYTES - got, { timeoutMs: 20_000 });
    if (part.length === 0) assert.fail(`the upload ended after ${got} of ${HUGE_BYTES} bytes`);
    hash.update(part);
    got += part.length;
  }
  const backendHash = hash.digest('hex');
  backendSocket.write(okResponse(backendHash));
  assert.equal(backendHash, await sentHash, 'every uploaded byte, in order');
  const r = await c.readResponse({ timeoutMs: 10_000 });
  assert.equal(r.status, 200);
  assert.equal(r.body.toString(), backendHash);
});
