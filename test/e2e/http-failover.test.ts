/**
 * @module End-to-end tests of FAILOVER-SPEC.md (issue 4, client-transparent failover): replay before
 * the reply head, a request body interrupted mid-upload, which methods may be replayed, hold, range
 * resume, verified replay and their fall-throughs, chunked resumption, a backend dying twice under one
 * request, every bound of the request log and of hold, the detector declaring a busy backend down,
 * failover disabled, and the failover metrics and events.
 *
 * Backends are child processes (test/fixtures/failover-backend.mjs) that a Fleet directs request by
 * request: a test decides, once it sees which backend a request reached, whether that backend
 * answers, hangs, closes, resets or SIGKILLs itself, and after which reply byte. Roles therefore do
 * not depend on the balancer's order: "the first request to arrive anywhere dies" is the same script
 * whichever backend it reaches. Their objects are deterministic functions of (seed, offset)
 * (`objectBytes`, the same function as in the fixture), so every byte a client must receive is known
 * and compared by SHA-256.
 */
import { objectBytes } from '../helpers/object-bytes.js';
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import diagnostics_channel from 'node:diagnostics_channel';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { connect, IncompleteMessageError, type Address, type RawConnection, type RawResponse } from '../helpers/raw-client.js';
import { startTestDispatcher, type TestDispatcher, type TestDispatcherOptions } from '../helpers/dispatcher.js';

const KB = 1024;
const MB = 1024 * 1024;

/** The fixture is plain JS and is not compiled: reach it in the source tree from dist/test/e2e. */
const FIXTURE = fileURLToPath(new URL('../../../test/fixtures/failover-backend.mjs', import.meta.url));

/** Keeps a dead backend down for the whole test (probes every 10 s). */
const SLOW_PROBE: TestDispatcherOptions['health'] = { probe: { intervalMs: 10_000 } };

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');


// ---------------------------------------------------------------------------------------------
// Directed child backends

interface HeadEvent {
  ev: 'head';
  req: string;
  backend: string;
  method: string;
  target: string;
  rawHead: string;
  headers: Record<string, string>;
}

interface FleetEvent {
  ev: string;
  req?: string;
  backend: string;
  [k: string]: unknown;
}

interface Reply {
  status?: number;
  reason?: string;
  headers?: [string, string][];
  seed?: number;
  size?: number;
  etag?: string;
  ranges?: boolean;
  framing?: 'length' | 'chunked';
  chunkSize?: number;
  /** Body = "<request body length> <sha256 hex>". */
  echo?: boolean;
  dieAfter?: number;
  pauseAfter?: number;
}

type Action =
  | { do: 'serve'; reply: Reply }
  | { do: 'die'; afterBodyBytes?: number }
  | { do: 'close' }
  | { do: 'reset' }
  | { do: 'hang' };

/** Decides what a backend does with a request: `nth` counts requests over the whole fleet, from 0. */
type Director = (head: HeadEvent, nth: number) => Action;

const serve = (reply: Reply = {}): Action => ({ do: 'serve', reply });
const ECHO = serve({ echo: true });
const echoBody = (b: Buffer): string => `${b.length} ${sha(b)}`;

interface Child {
  readonly name: string;
  readonly proc: ChildProcess;
  readonly port: number;
}

class Fleet {
  readonly events: FleetEvent[] = [];
  readonly children: Child[] = [];
  private nth = 0;
  private readonly waiters = new Set<() => void>();
  directorError: unknown = null;

  constructor(private readonly director: Director) {}

  get hostPorts(): string[] {
    return this.children.map((c) => `127.0.0.1:${c.port}`);
  }

  child(name: string): Child {
    const c = this.children.find((x) => x.name === name);
    if (!c) throw new Error(`no backend ${name}`);
    return c;
  }

  heads(backend?: string): HeadEvent[] {
    return this.events.filter((e): e is FleetEvent & HeadEvent => e.ev === 'head' && (backend === undefined || e.backend === backend));
  }

  event(ev: string, req: string): FleetEvent | undefined {
    return this.events.find((e) => e.ev === ev && e.req === req);
  }

  /** @internal */
  onEvent(child: Child, e: FleetEvent): void {
    this.events.push(e);
    if (e.ev === 'head') {
      let action: Action;
      try {
        action = this.director(e as unknown as HeadEvent, this.nth++);
      } catch (err) {
        this.directorError = err;
        action = { do: 'reset' };
      }
      this.send(child.name, { req: e.req, ...action });
    }
    for (const w of [...this.waiters]) w();
  }

  send(name: string, cmd: object): void {
    const c = this.child(name);
    if (c.proc.exitCode === null && c.proc.signalCode === null) c.proc.stdin!.write(JSON.stringify(cmd) + '\n');
  }

  async waitFor(pred: (e: FleetEvent) => boolean, what: string, timeoutMs = 5_000): Promise<FleetEvent> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.events.find(pred);
      if (hit) return hit;
      const left = until - Date.now();
      if (left <= 0) throw new Error(`backends did not report ${what} within ${timeoutMs} ms; events: ${this.summary()}`);
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(timer);
          this.waiters.delete(done);
          resolve();
        };
        const timer = setTimeout(done, Math.min(left, 100));
        this.waiters.add(done);
      });
    }
  }

  /** SIGKILL a backend and wait for it to be gone. */
  kill(name: string): Promise<void> {
    const { proc } = this.child(name);
    return new Promise((resolve) => {
      if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
      proc.once('exit', () => resolve());
      proc.kill('SIGKILL');
    });
  }

  /** A compact history for assertion messages. */
  summary(): string {
    return JSON.stringify(
      this.events.map((e) => {
        const { rawHead: _r, headers, ...rest } = e as FleetEvent & { rawHead?: string; headers?: Record<string, string> };
        return headers ? { ...rest, range: headers['range'], ifRange: headers['if-range'] } : rest;
      }),
    );
  }
}

/** Starts `n` directed backends named b0..b(n-1), the dispatcher's backend ids in the same order. */
async function startFleet(t: TestContext, n: number, director: Director): Promise<Fleet> {
  const fleet = new Fleet(director);
  const start = (name: string): Promise<Child> =>
    new Promise((resolve, reject) => {
      const proc = spawn(process.execPath, [FIXTURE, name], { stdio: ['pipe', 'pipe', 'inherit'] });
      proc.stdin!.on('error', () => {}); // EPIPE once it was killed
      t.after(() => {
        if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
      });
      let child: Child | null = null;
      const timer = setTimeout(() => reject(new Error(`backend ${name} did not start`)), 10_000);
      proc.once('exit', () => {
        if (!child) reject(new Error(`backend ${name} exited before listening`));
      });
      createInterface({ input: proc.stdout! }).on('line', (line) => {
        const msg = JSON.parse(line) as { port?: number } & FleetEvent;
        if (child === null && typeof msg.port === 'number') {
          clearTimeout(timer);
          child = { name, proc, port: msg.port };
          resolve(child);
          return;
        }
        if (child) fleet.onEvent(child, { ...msg, backend: name });
      });
    });
  fleet.children.push(...(await Promise.all(Array.from({ length: n }, (_, i) => start(`b${i}`)))));
  t.after(() => assert.equal(fleet.directorError, null, `the director threw: ${String(fleet.directorError)}`));
  return fleet;
}

// ---------------------------------------------------------------------------------------------
// Dispatcher side: events, metrics, clients

interface FailoverEvent {
  service: string;
  backend: string | null;
  to: string | null;
  strategy: string;
  result: string;
  bytesSent: number;
  recoveryMs: number;
}

/** Every holdfast:failover event published while the test runs. */
function failoverEvents(t: TestContext): FailoverEvent[] {
  const ch = diagnostics_channel.channel('holdfast:failover');
  const list: FailoverEvent[] = [];
  const fn = (m: unknown): void => {
    list.push(m as FailoverEvent);
  };
  ch.subscribe(fn);
  t.after(() => ch.unsubscribe(fn));
  return list;
}

/** Waits (events may be published when the reply completes) for an event with these fields. */
async function expectEvent(events: FailoverEvent[], want: Partial<FailoverEvent>, timeoutMs = 2_000): Promise<FailoverEvent> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const hit = events.find((e) => Object.entries(want).every(([k, v]) => e[k as keyof FailoverEvent] === v));
    if (hit) return hit;
    if (Date.now() > until) assert.fail(`no holdfast:failover event matching ${JSON.stringify(want)}; events: ${JSON.stringify(events)}`);
    await sleep(20);
  }
}

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

async function scrape(d: TestDispatcher): Promise<Sample[]> {
  const addr = d.dispatcher.adminAddress;
  assert.ok(addr, 'the admin server runs');
  const c = await connect(addr);
  try {
    c.write('GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n');
    const r = await c.readResponse();
    assert.equal(r.status, 200);
    const out: Sample[] = [];
    for (const line of r.body.toString('utf8').split('\n')) {
      const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)/.exec(line);
      if (!m) continue;
      const labels: Record<string, string> = {};
      for (const l of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
      out.push({ name: m[1]!, labels, value: Number(m[3]) });
    }
    return out;
  } finally {
    c.destroy();
  }
}

/** Sum of the samples of `name` whose labels include `labels`. */
function metric(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  return samples
    .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    .reduce((a, s) => a + s.value, 0);
}

function failoverSeries(samples: Sample[]): string {
  return JSON.stringify(samples.filter((s) => s.name.startsWith('holdfast_failover') || s.name.startsWith('holdfast_request_log')));
}

async function open(t: TestContext, addr: Address): Promise<RawConnection> {
  const c = await connect(addr);
  t.after(() => c.destroy());
  return c;
}

const get = (path: string, extra = ''): string => `GET ${path} HTTP/1.1\r\nHost: test\r\n${extra}\r\n`;

/** The response was the only thing the client got: nothing follows it and the connection is open. */
async function assertNothingMore(c: RawConnection): Promise<void> {
  await sleep(50);
  assert.equal(c.buffered, 0, 'bytes arrived after the response');
  assert.equal(c.isEnded, false, 'the client connection stays open after a recovered exchange');
}

function assertBody(r: RawResponse, want: Buffer, what: string): void {
  assert.equal(r.body.length, want.length, `${what}: body length`);
  assert.equal(sha(r.body), sha(want), `${what}: body bytes differ (SHA-256)`);
}

/**
 * A truncated response: the connection ended (FIN or reset) before the body was complete. The bytes
 * that did arrive must be a prefix of `expected` (the client never saw bytes of another reply).
 */
async function assertAborted(c: RawConnection, expected: Buffer, opts: { timeoutMs?: number } = {}): Promise<IncompleteMessageError> {
  const got: Buffer[] = [];
  let caught: unknown;
  try {
    const r = await c.readResponse({ timeoutMs: opts.timeoutMs ?? 8_000, sink: (b) => got.push(Buffer.from(b)) });
    assert.fail(`expected an aborted response, got a complete ${r.status} with ${r.bodyLength} body bytes`);
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof IncompleteMessageError, `expected a truncated response, got ${String(caught)}`);
  assert.ok(caught.received < expected.length, `received ${caught.received} of ${expected.length}`);
  const prefix = Buffer.concat(got);
  assert.equal(sha(prefix), sha(expected.subarray(0, prefix.length)), `the ${prefix.length} bytes received are the first reply's`);
  await c.closed;
  return caught;
}

/** Lines of a request head without the given fields (lower-case names). */
function headLinesWithout(rawHead: string, names: string[]): string[] {
  return rawHead
    .split('\r\n')
    .filter((l) => !names.includes(l.slice(0, Math.max(0, l.indexOf(':'))).toLowerCase()));
}

// ---------------------------------------------------------------------------------------------
// Replay before the reply head

for (const how of ['reset', 'close', 'die'] as const) {
  test(`replay before the reply head: the backend ${how === 'die' ? 'is SIGKILLed' : how + 's'} after reading a PUT → the other's reply, once`, async (t) => {
    const body = objectBytes(7, 0, 20_000);
    const fleet = await startFleet(t, 2, (_h, nth) => (nth === 0 ? { do: how } : ECHO));
    const events = failoverEvents(t);
    const d = await startTestDispatcher(t, { backends: fleet.hostPorts, health: SLOW_PROBE, admin: true });
    const c = await open(t, d.address);
    c.write(
      `PUT /obj?x=1 HTTP/1.1\r\nHost: test\r\nX-Custom: a, b\r\nContent-Type: application/octet-stream\r\n` +
        `Content-Length: ${body.length}\r\n\r\n`,
    );
    c.write(body);
    const r = await c.readResponse();
    assert.equal(r.status, 200, `${r.status} ${r.body.toString()}; backends: ${fleet.summary()}`);
    assert.equal(r.body.toString(), echoBody(body), 'the reply is the second backend echoing the whole body');
    await assertNothingMore(c);

    const heads = fleet.heads();
    assert.equal(heads.length, 2, `one request per backend: ${fleet.summary()}`);
    const [first, second] = heads as [HeadEvent, HeadEvent];
    assert.notEqual(first.backend, second.backend, 'the replay went to the other backend');
    assert.equal(r.get('x-served-by'), second.backend);
    assert.equal(second.rawHead, first.rawHead, 'the replayed head is the head the failed backend got');
    assert.deepEqual(
      { length: fleet.event('body', second.req)?.['length'], sha: fleet.event('body', second.req)?.['sha'] },
      { length: body.length, sha: sha(body) },
      'the second backend got the whole body byte-exact',
    );
    const failed = d.backend(first.backend);
    assert.equal(failed.state, 'down', `the failed backend: ${JSON.stringify(failed)}`);
    if (how === 'reset') assert.equal(failed.reason, 'reset');
    if (how === 'close') assert.equal(failed.reason, 'closed');
    if (how === 'die') assert.ok(['reset', 'closed'].includes(failed.reason), `reason ${failed.reason}`);

    const ev = await expectEvent(events, { strategy: 'replay', result: 'ok' });
    assert.equal(ev.service, 'web');
    assert.equal(ev.backend, first.backend);
    assert.equal(ev.to, second.backend);
    assert.equal(ev.bytesSent, 0);
    const m = await scrape(d);
    assert.equal(metric(m, 'holdfast_failover_total', { service: 'web', strategy: 'replay', result: 'ok' }), 1, failoverSeries(m));

    // The keep-alive connection carries on normally.
    c.write(get('/after'));
    const r2 = await c.readResponse();
    assert.equal(r2.status, 200);
    assert.equal(r2.get('x-served-by'), second.backend);
  });
}

test('a request body interrupted mid-upload: the 4 MB PUT reaches the second backend whole while the client keeps streaming', async (t) => {
  const SIZE = 4 * MB;
  const PIECE = 64 * KB;
  const body = randomBytes(SIZE);
  const fleet = await startFleet(t, 2, (_h, nth) => (nth === 0 ? { do: 'die', afterBodyBytes: 1 * MB } : ECHO));
  const events = failoverEvents(t);
  const d = await startTestDispatcher(t, {
    backends: fleet.hostPorts,
    health: SLOW_PROBE,
    admin: true,
    failover: { maxRequestLogBytes: 8 * MB },
  });
  const c = await open(t, d.address);
  let written = 0;
  let writtenAtDeath = -1;
  const death = fleet.waitFor((e) => e.ev === 'dying', 'the first backend dying', 15_000).then((e) => {
    writtenAtDeath = written;
    return e;
  });
  let writeError: unknown = null;
  try {
    await c.writeAsync(`PUT /upload HTTP/1.1\r\nHost: test\r\nContent-Length: ${SIZE}\r\n\r\n`);
    for (let off = 0; off < SIZE; off += PIECE) {
      await c.writeAsync(body.subarray(off, off + PIECE));
      written += PIECE;
      if ((off / PIECE) % 4 === 3) await sleep(10);
    }
  } catch (err) {
    writeError = err; // the proxy gave up on the upload: the response below says how
  }
  const dying = await death;
  const r = await c.readResponse({ timeoutMs: 15_000 });
  assert.equal(r.status, 200, `${r.status} ${r.body.toString()}; backends: ${fleet.summary()}`);
  assert.equal(writeError, null, 'the client could send its whole body');
  assert.ok(Number(dying['bodyBytes']) >= 1 * MB && Number(dying['bodyBytes']) < SIZE, `the first backend read ${String(dying['bodyBytes'])} bytes`);
  assert.ok(writtenAtDeath >= 0 && writtenAtDeath < SIZE, `the client had written ${writtenAtDeath} of ${SIZE} bytes when the backend died`);
  assert.equal(r.body.toString(), echoBody(body), 'the second backend received the whole body byte-exact');
  const heads = fleet.heads();
  assert.equal(heads.length, 2, fleet.summary());
  assert.notEqual(heads[0]!.backend, heads[1]!.backend);
  assert.equal(heads[1]!.rawHead, heads[0]!.rawHead);
  assert.equal(d.backend(heads[0]!.backend).state, 'down');
  await expectEvent(events, { strategy: 'replay', result: 'ok', backend: heads[0]!.backend, to: heads[1]!.backend });
  await assertNothingMore(c);
});

// ---------------------------------------------------------------------------------------------
// Which requests may be replayed

const METHOD_CASES: ReadonlyArray<{ name: string; method: string; extra: string; replayUnsafe?: boolean; replayed: boolean }> = [
  { name: 'POST without Idempotency-Key: 502, counted as refused', method: 'POST', extra: '', replayed: false },
  { name: 'PATCH without Idempotency-Key: 502, counted as refused', method: 'PATCH', extra: '', replayed: false },
  { name: 'POST with Idempotency-Key: replayed', method: 'POST', extra: 'Idempotency-Key: 8e1f-42\r\n', replayed: true },
  { name: 'POST with replayUnsafe: true: replayed', method: 'POST', extra: '', replayUnsafe: true, replayed: true },
  { name: 'DELETE with a body: replayed', method: 'DELETE', extra: '', replayed: true },
];

for (const k of METHOD_CASES) {
  test(`replayable methods: ${k.name}`, async (t) => {
    const body = objectBytes(3, 0, 3000);
    const fleet = await startFleet(t, 2, (_h, nth) => (nth === 0 ? { do: 'reset' } : ECHO));
    const events = failoverEvents(t);
    const d = await startTestDispatcher(t, {
      backends: fleet.hostPorts,
      health: SLOW_PROBE,
      admin: true,
      ...(k.replayUnsafe ? { failover: { replayUnsafe: true } } : {}),
    });
    const c = await open(t, d.address);
    c.write(`${k.method} /thing HTTP/1.1\r\nHost: test\r\n${k.extra}Content-Length: ${body.length}\r\n\r\n`);
    c.write(body);
    const r = await c.readResponse();
    const m = await scrape(d);
    if (!k.replayed) {
      assert.equal(r.status, 502, `${r.status} ${r.body.toString()}`);
      assert.ok((r.get('connection') ?? '').toLowerCase().includes('close'), `Connection: ${r.get('connection')}`);
      assert.equal(fleet.heads().length, 1, `nothing was replayed: ${fleet.summary()}`);
      assert.equal(metric(m, 'holdfast_failover_total', { service: 'web', strategy: 'none', result: 'refused' }), 1, failoverSeries(m));
      await expectEvent(events, { strategy: 'none', result: 'refused', backend: fleet.heads()[0]!.backend, to: null });
    } else {
      assert.equal(r.status, 200, `${r.status} ${r.body.toString()}; ${fleet.summary()}`);
      assert.equal(r.body.toString(), echoBody(body));
      const heads = fleet.heads();
      assert.equal(heads.length, 2, fleet.summary());
      assert.equal(heads[1]!.rawHead, heads[0]!.rawHead);
      assert.equal(heads[1]!.method, k.method);
      assert.equal(metric(m, 'holdfast_failover_total', { service: 'web', strategy: 'none', result: 'refused' }), 0, failoverSeries(m));
      assert.equal(metric(m, 'holdfast_failover_total', { service: 'web', strategy: 'replay', result: 'ok' }), 1, failoverSeries(m));
      await assertNothingMore(c);
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Hold

for (const framing of ['length', 'chunked'] as const) {
  test(`hold: a 10 KB ${framing === 'length' ? 'Content-Length' : 'chunked'} reply whose backend dies after 5 KB → the other backend's whole reply, never a partial one`, async (t) => {
    const SIZE = 10 * KB;
    // Different seeds: the two backends' bytes differ, so only a clean replay gives the client a
    // consistent body (a splice of the first 5 KB would show).
    const fleet = await startFleet(t, 2, (_h, nth) =>
      nth === 0
        ? serve({ seed: 11, size: SIZE, framing, chunkSize: 1000, dieAfter: 5 * KB })
        : serve({ seed: 22, size: SIZE, framing, chunkSize: 1000 }),
    );
    const events = failoverEvents(t);
    const d = await startTestDispatcher(t, { backends: fleet.hostPorts, health: SLOW_PROBE, admin: true });
    const c = await open(t, d.address);
    c.write(get('/small'));
    const r = await c.readResponse();
    assert.equal(r.status, 200);
    const heads = fleet.heads();
    assert.equal(heads.length, 2, fleet.summary());
    assert.equal(r.get('x-served-by'), heads[1]!.backend, 'the head is the second backend’s');
    assertBody(r, objectBytes(22, 0, SIZE), 'held reply');
    assert.equal(r.chunked, framing === 'chunked');
    // Exactly one clean response on the wire: its head and its body, nothing else.
    assert.equal(c.bytesIn, r.rawHead.length + r.rawBody.length, 'the client received exactly one response');
    assert.equal(r.rawHead.indexOf('HTTP/1.1', 1), -1);
    await assertNothingMore(c);
    assert.equal(d.backend(heads[0]!.backend).state, 'down');
    const ev = await expectEvent(events, { strategy: 'hold', result: 'ok' });
    assert.equal(ev.backend, heads[0]!.backend);
    assert.equal(ev.to, heads[1]!.backend);
    assert.equal(ev.bytesSent, 0, 'the client had nothing');
    const m = await scrape(d);
    assert.equal(metric(m, 'holdfast_failover_total', { service: 'web', strategy: 'hold', result: 'ok' }), 1, failoverSeries(m));
  });
}

// ---------------------------------------------------------------------------------------------
// Range resume and its fall-through to verified replay

const OBJ_SIZE = 1 * MB;

test('range resume: a 1 MB object with a strong ETag, backend killed after ~300 KB → one 200 with all bytes; Range/If-Range sent', async (t) => {
  const obj = objectBytes(5, 0, OBJ_SIZE);
  const fleet = await startFleet(t, 2, (_h, nth) =>
    serve({ seed: 5, size: OBJ_SIZE, etag: 'v1-5', ranges: true, ...(nth === 0 ? { dieAfter: 300 * KB } : {}) }),
  );
  const events = failoverEvents(t);
  const d = await startTestDispatcher(t, { backends: fleet.hostPorts, health: SLOW_PROBE, admin: true });
  const c = await open(t, d.address);
  c.write(get('/static/object.bin'));
  const r = await c.readResponse({ timeoutMs: 10_000 });
  assert.equal(r.status, 200);
  assert.equal(r.get('content-length'), String(OBJ_SIZE));
  assertBody(r, obj, 'range-resumed object');
  await assertNothingMore(c);

  const heads = fleet.heads();
  assert.equal(heads.length, 2, fleet.summary());
  const [first, second] = heads as [HeadEvent, HeadEvent];
  assert.notEqual(first.backend, second.backend);
  assert.equal(r.get('x-served-by'), first.backend, 'the client keeps the first backend’s head');
  const m = /^bytes=(\d+)-$/.exec(second.headers['range'] ?? '');
  assert.ok(m, `the resume carries Range: bytes=k- (got ${second.headers['range']})`);
  const k = Number(m[1]);
  assert.ok(k > 0 && k <= 300 * KB, `k = ${k}: the bytes the client had when the backend died`);
  assert.equal(second.headers['if-range'], '"v1-5"');
  assert.equal(second.method, 'GET');
  assert.deepEqual(headLinesWithout(second.rawHead, ['range', 'if-range']), headLinesWithout(first.rawHead, []), 'otherwise the same head');
  assert.equal(fleet.event('sent', second.req)?.['status'], 206, 'the second backend answered 206');
  assert.equal(d.backend(first.backend).state, 'down');

  const ev = await expectEvent(events, { strategy: 'range', result: 'ok' });
  assert.equal(ev.backend, first.backend);
  assert.equal(ev.to, second.backend);
  assert.equal(ev.bytesSent, k, 'bytesSent is the k of the Range header');
  assert.ok(ev.recoveryMs >= 0 && ev.recoveryMs < 5_000, `recoveryMs ${ev.recoveryMs}`);
  const s = await scrape(d);
  assert.equal(metric(s, 'holdfast_failover_total', { service: 'web', strategy: 'range', result: 'ok' }), 1, failoverSeries(s));
  assert.ok(metric(s, 'holdfast_failover_recovery_seconds_count', { service: 'web' }) >= 1, failoverSeries(s));
});

test('range fall-through: the second backend has another ETag (200) and the same bytes → verified replay completes byte-exact', async (t) => {
  const obj = objectBytes(5, 0, OBJ_SIZE);
  const fleet = await startFleet(t, 2, (_h, nth) =>
    nth === 0
      ? serve({ seed: 5, size: OBJ_SIZE, etag: 'etag-A', ranges: true, dieAfter: 300 * KB })
      : serve({ seed: 5, size: OBJ_SIZE, etag: 'etag-B', ranges: true }),
  );
  const events = failoverEvents(t);
  const d = await startTestDispatcher(t, { backends: fleet.hostPorts, health: SLOW_PROBE, admin: true });
  const c = await open(t, d.address);
  c.write(get('/static/changed.bin'));
  const r = await c.readResponse({ timeoutMs: 10_000 });
  assert.equal(r.status, 200);
  assertBody(r, obj, 'verified after a failed range resume');
  await assertNothingMore(c);
  const heads = fleet.heads();
  const first = heads[0]!;
  const later = heads.slice(1);
  assert.ok(later.length >= 1 && later.length <= 2, `the second backend saw the range request (and maybe a plain replay): ${fleet.summary()}`);
  assert.ok(later.every((h) => h.backend !== first.backend));
  assert.match(later[0]!.headers['range'] ?? '', /^bytes=\d+-$/, 'range resume was tried first');
  assert.equal(later[0]!.headers['if-range'], '"etag-A"');
  assert.equal(fleet.event('sent', later[0]!.req)?.['status'], 200, 'If-Range did not match: 200');
  await expectEvent(events, { strategy: 'verified', result: 'ok' });
  const s = await scrape(d);
  assert.equal(metric(s, 'holdfast_failover_total', { service: 'web', strategy: 'verified', result: 'ok' }), 1, failoverSeries(s));
});

test('range fall-through: another ETag and different bytes → verified replay fails → the client connection is aborted, counted', async (t) => {
  const fleet = await startFleet(t, 2, (_h, nth) =>
    nth === 0
      ? serve({ seed: 5, size: OBJ_SIZE, etag: 'etag-A', ranges: true, dieAfter: 300 * KB })
      : serve({ seed: 6, size: OBJ_SIZE, etag: 'etag-B', ranges: true }),
  );
  const events = failoverEvents(t);
  const d = await startTestDispatcher(t, { backends: fleet.hostPorts, health: SLOW_PROBE, admin: true });
  const c = await open(t, d.address);
  c.write(get('/static/random.bin'));
  const err = await assertAborted(c, objectBytes(5, 0, OBJ_SIZE));
  assert.equal(err.status, 200);
  const ev = await expectEvent(events, { result: 'failed' });
  assert.equal(ev.to, null);
  const s = await scrape(d);
  assert.ok(metric(s, 'holdfast_failover_total', { service: 'web', result: 'failed' }) >= 1, failoverSeries(s));
  assert.equal(metric(s, 'holdfast_failover_total', { service: 'web', result: 'ok' }), 0, failoverSeries(s));
});

// ---------------------------------------------------------------------------------------------
// Verified replay

test('verified replay: a deterministic 1 MB Content-Length reply without validators, killed mid-body → completes byte-exact', async (t) => {
  const obj = objectBytes(9, 0, OBJ_SIZE);
  const fleet = await startFleet(t, 2, (_h, nth) => serve({ seed: 9, size: OBJ_SIZE, ...(nth === 0 ? { dieAfter: 300 * KB } : {}) }));
  const events = failoverEvents(t);
  const d = await startTestDispatcher(t, { backends: fleet.hostPorts, health: SLOW_PROBE, admin: true });
  const c = await open(t, d.address);
  c.write(get('/dynamic/stable'));
  const r = await c.readResponse({ timeoutMs: 10_000 });
  assert.equal(r.status, 200);
  assertBody(r, obj, 'verified replay');
  await assertNothingMore(c);
  const heads = fleet.heads();
  assert.equal(heads.length, 2, fleet.summary());
  assert.equal(heads[1]!.headers['range'], undefined, 'no validators: no range request');
  assert.equal(heads[1]!.rawHead, heads[0]!.rawHead, 'a plain replay of the same request');
  const ev = await expectEvent(events, { strategy: 'verified', result: 'ok' });
  assert.ok(ev.bytesSent > 0 && ev.bytesSent <= 300 * KB, `bytesSent ${ev.bytesSent}`);
  assert.equal(ev.backend, heads[0]!.backend);
  assert.equal(ev.to, heads[1]!.backend);
  const m = await scrape(d);
  assert.equal(metric(m, 'holdfast_failover_total', { service: 'web', strategy: 'verified', result: 'ok' }), 1, failoverSeries(m));
});

for (const cut of [{ name: 'inside chunk data', at: 300_000 + 4321 }, { name: 'on a chunk boundary', at: 300_000 }]) {
  test(`chunked reply larger than holdReplyBytes cut ${cut.name} → completed, byte-exact, valid chunked framing`, async (t) => {
    const obj = objectBytes(13, 0, OBJ_SIZE);
    const fleet = await startFleet(t, 2, (_h, nth) =>
      serve({ seed: 13, size: OBJ_SIZE, framing: 'chunked', chunkSize: 10_000, ...(nth === 0 ? { dieAfter: cut.at } : {}) }),
    );
    const events = failoverEvents(t);
    const d = await startTestDispatcher(t, { backends: fleet.hostPorts, health: SLOW_PROBE, admin: true });
    const c = await open(t, d.address);
    c.write(get('/dynamic/chunked'));
    // The raw client rejects any framing error (size line, CRLF after data, last chunk).
    const r = await c.readResponse({ timeoutMs: 10_000 });
    assert.equal(r.status, 200);
    assert.ok(r.chunked, 'still chunked to the client');
    assertBody(r, obj, 'resumed chunked reply');
    await assertNothingMore(c);
    assert.equal(fleet.heads().length, 2, fleet.summary());
    const ev = await expectEvent(events, { result: 'ok' });
    assert.ok(['verified', 'range'].includes(ev.strategy), `strategy ${ev.strategy}`);
    assert.ok(ev.bytesSent > 64 * KB, `bytesSent ${ev.bytesSent}: past the hold bound`);
  });
}

// ---------------------------------------------------------------------------------------------
// A backend that dies twice in a row under the same request

test('dies twice before the reply head: the third backend completes the request', async (t) => {
  const fleet = await startFleet(t, 3, (_h, nth) => (nth < 2 ? { do: 'die' } : ECHO));
  const events = failoverEvents(t);
  const d = await startTestDispatcher(t, { backends: fleet.hostPorts, health: SLOW_PROBE, admin: true });
  const c = await open(t, d.address);
  c.write(get('/twice'));
  const r = await c.readResponse({ timeoutMs: 8_000 });
  assert.equal(r.status, 200, `${r.status}; ${fleet.summary()}`);
  const heads = fleet.heads();
  assert.equal(heads.length, 3, fleet.summary());
  assert.equal(new Set(heads.map((h) => h.backend)).size, 3, 'three different backends');
  assert.equal(r.get('x-served-by'), heads[2]!.backend);
  assert.equal(d.backend(heads[0]!.backend).state, 'down');
  assert.equal(d.backend(heads[1]!.backend).state, 'down');
  await expectEvent(events, { strategy: 'replay', result: 'ok', to: heads[2]!.backend });
  await assertNothingMore(c);
});

test('dies twice before the reply head with maxAttempts: 2 → 502, the third backend never sees it', async (t) => {
  const fleet = await startFleet(t, 3, (_h, nth) => (nth < 2 ? { do: 'die' } : ECHO));
  const d = await startTestDispatcher(t, { backends: fleet.hostPorts, health: SLOW_PROBE, failover: { maxAttempts: 2 } });
  const c = await open(t, d.address);
  c.write(get('/twice'));
  const r = await c.readResponse({ timeoutMs: 8_000 });
  assert.equal(r.status, 502, `${r.status}; ${fleet.summary()}`);
  assert.equal(fleet.heads().length, 2, fleet.summary());
});

test('dies twice mid-body: the third backend completes the reply byte-exact', async (t) => {
  const obj = objectBytes(21, 0, OBJ_SIZE);
  const fleet = await startFleet(t, 3, (_h, nth) =>
    serve({ seed: 21, size: OBJ_SIZE, ...(nth === 0 ? { dieAfter: 200 * KB } : nth === 1 ? { dieAfter: 600 * KB } : {}) }),
  );
  const events = failoverEvents(t);
  const d = await startTestDispatcher(t, { backends: fleet.hostPorts, health: SLOW_PROBE, admin: true });
  const c = await open(t, d.address);
  c.write(get('/twice-mid-body'));
  const r = await c.readResponse({ timeoutMs: 10_000 });
  assert.equal(r.status, 200);
  assertBody(r, obj, 'after two failures');
  await assertNothingMore(c);
  const heads = fleet.heads();
  assert.equal(heads.length, 3, fleet.summary());
  assert.equal(new Set(heads.map((h) => h.backend)).size, 3);
  const ok = events.filter((e) => e.result === 'ok');
  assert.equal(ok.length, 2, `two recoveries: ${JSON.stringify(events)}`);
  assert.ok(ok[1]!.bytesSent > ok[0]!.bytesSent, `the second recovery started later in the body: ${JSON.stringify(ok)}`);
});

test('dies mid-body, then the next backend dies before sending a byte, with maxAttempts: 2 → the client connection is aborted', async (t) => {
  const fleet = await startFleet(t, 3, (_h, nth) => (nth === 0 ? serve({ seed: 21, size: OBJ_SIZE, dieAfter: 200 * KB }) : nth === 1 ? { do: 'die' } : serve({ seed: 21, size: OBJ_SIZE })));
  const d = await startTestDispatcher(t, { backends: fleet.hostPorts, health: SLOW_PROBE, failover: { maxAttempts: 2 } });
  const c = await open(t, d.address);
  c.write(get('/twice-mid-body'));
  const err = await assertAborted(c, objectBytes(21, 0, OBJ_SIZE));
  assert.equal(err.status, 200);
  assert.equal(fleet.heads().length, 2, fleet.summary());
});

// Found by bench/http2's chaos arm at 8–16 streams per connection: 4 MiB replies that took 5–10 s
// on a loaded machine outlived three kills, each resumed and making progress, and were cut because
// the budget counted every failover of the exchange. maxAttempts bounds the backends that fail in a
// row without giving the client a new byte (a request that kills backends), not unrelated deaths.
test('dies three times mid-body, each backend adding bytes before it dies: the fourth completes it within maxAttempts: 3', async (t) => {
  const obj = objectBytes(22, 0, OBJ_SIZE);
  const fleet = await startFleet(t, 4, (_h, nth) => serve({ seed: 22, size: OBJ_SIZE, ...(nth < 3 ? { dieAfter: (nth + 1) * 200 * KB } : {}) }));
  const events = failoverEvents(t);
  const d = await startTestDispatcher(t, { backends: fleet.hostPorts, health: SLOW_PROBE, admin: true, failover: { maxAttempts: 3 } });
  const c = await open(t, d.address);
  c.write(get('/thrice-mid-body'));
  const r = await c.readResponse({ timeoutMs: 10_000 });
  assert.equal(r.status, 200);
  assertBody(r, obj, 'after three failures');
  await assertNothingMore(c);
  assert.equal(fleet.heads().length, 4, fleet.summary());
  assert.equal(events.filter((e) => e.result === 'ok').length, 3, JSON.stringify(events));
});

test('dies mid-body, then twice more at the same byte (verified replays that add nothing), with maxAttempts: 3 → aborted', async (t) => {
  const fleet = await startFleet(t, 4, (_h, nth) => serve({ seed: 23, size: OBJ_SIZE, ...(nth < 3 ? { dieAfter: 200 * KB } : {}) }));
  const d = await startTestDispatcher(t, { backends: fleet.hostPorts, health: SLOW_PROBE, failover: { maxAttempts: 3 } });
  const c = await open(t, d.address);
  c.write(get('/same-byte'));
  const err = await assertAborted(c, objectBytes(23, 0, OBJ_SIZE));
  assert.equal(err.status, 200);
  assert.equal(fleet.heads().length, 3, fleet.summary());
});

test('dies three times before any reply byte with maxAttempts: 3 → 502, the fourth backend never sees it', async (t) => {
  const fleet = await startFleet(t, 4, (_h, nth) => (nth < 3 ? { do: 'die' } : ECHO));
  const d = await startTestDispatcher(t, { backends: fleet.hostPorts, health: SLOW_PROBE, failover: { maxAttempts: 3 } });
  const c = await open(t, d.address);
  c.write(get('/thrice'));
  const r = await c.readResponse({ timeoutMs: 8_000 });
  assert.equal(r.status, 502, `${r.status}; ${fleet.summary()}`);
  assert.equal(fleet.heads().length, 3, fleet.summary());
});

// ---------------------------------------------------------------------------------------------
// Bounds

test('maxRequestLogBytes: a PUT over the bound is not replayed (502, overflow counted); one under it is', async (t) => {
  const big = objectBytes(31, 0, 100 * KB);
  const small = objectBytes(32, 0, 10 * KB);
  const seen = new Set<string>();
  const fleet = await startFleet(t, 3, (h) => {
    const firstTime = !seen.has(h.target);
    seen.add(h.target);
    return firstTime ? { do: 'reset' } : ECHO;
  });
  const events = failoverEvents(t);
  const d = await startTestDispatcher(t, {
    backends: fleet.hostPorts,
    health: SLOW_PROBE,
    admin: true,
    failover: { maxRequestLogBytes: 64 * KB },
  });
  const c1 = await open(t, d.address);
  c1.write(`PUT /big HTTP/1.1\r\nHost: test\r\nContent-Length: ${big.length}\r\n\r\n`);
  c1.write(big);
  const r1 = await c1.readResponse();
  assert.equal(r1.status, 502, `${r1.status} ${r1.body.toString()}`);
  assert.equal(fleet.heads().filter((h) => h.target === '/big').length, 1, 'not replayed');
  let m = await scrape(d);
  assert.equal(metric(m, 'holdfast_request_log_overflow_total', { service: 'web' }), 1, failoverSeries(m));
  await expectEvent(events, { result: 'not-logged' });

  const c2 = await open(t, d.address);
  c2.write(`PUT /small HTTP/1.1\r\nHost: test\r\nContent-Length: ${small.length}\r\n\r\n`);
  c2.write(small);
  const r2 = await c2.readResponse();
  assert.equal(r2.status, 200, `${r2.status}; ${fleet.summary()}`);
  assert.equal(r2.body.toString(), echoBody(small));
  m = await scrape(d);
  assert.equal(metric(m, 'holdfast_request_log_overflow_total', { service: 'web' }), 1, failoverSeries(m));
});

test('maxTotalLogBytes: of three concurrent 100 KB PUTs under a 256 KB total, the third is not recoverable', async (t) => {
  const bodies = [0, 1, 2].map((i) => objectBytes(40 + i, 0, 100 * KB));
  // The first three requests hang wherever they land; everything later is answered.
  const fleet = await startFleet(t, 4, (_h, nth) => (nth < 3 ? { do: 'hang' } : ECHO));
  const d = await startTestDispatcher(t, {
    backends: fleet.hostPorts,
    health: SLOW_PROBE,
    admin: true,
    failover: { maxTotalLogBytes: 256 * KB },
  });
  const conns: RawConnection[] = [];
  for (let i = 0; i < 3; i++) {
    const c = await open(t, d.address);
    conns.push(c);
    c.write(`PUT /t${i} HTTP/1.1\r\nHost: test\r\nContent-Length: ${bodies[i]!.length}\r\n\r\n`);
    c.write(bodies[i]!);
    // Sequential arrival: t0 and t1 fit in the total, t2 is the one that crosses it.
    await fleet.waitFor((e) => e.ev === 'body' && fleet.heads().some((h) => h.req === e.req && h.target === `/t${i}`), `the body of /t${i}`);
  }
  const holders = [...new Set(fleet.heads().map((h) => h.backend))];
  assert.ok(holders.length < 4, 'one backend is left to replay on');
  await Promise.all(holders.map((b) => fleet.kill(b)));
  const replies = await Promise.all(conns.map((c) => c.readResponse({ timeoutMs: 8_000 })));
  assert.equal(replies[0]!.status, 200, `/t0: ${replies[0]!.status}; ${fleet.summary()}`);
  assert.equal(replies[0]!.body.toString(), echoBody(bodies[0]!));
  assert.equal(replies[1]!.status, 200, `/t1: ${replies[1]!.status}`);
  assert.equal(replies[1]!.body.toString(), echoBody(bodies[1]!));
  assert.equal(replies[2]!.status, 502, `/t2 was past the total: ${replies[2]!.status}`);
  const m = await scrape(d);
  assert.equal(metric(m, 'holdfast_request_log_overflow_total', { service: 'web' }), 1, failoverSeries(m));
  assert.equal(fleet.heads().filter((h) => h.target === '/t2').length, 1, '/t2 was not replayed');
});

test('holdReplyBytes: a reply at the bound is held until complete; one byte over is streamed (bytes before the backend finishes)', async (t) => {
  const HOLD = 16 * KB;
  const cases: Record<string, Reply> = {
    '/cl-at-bound': { seed: 51, size: HOLD, pauseAfter: 8 * KB },
    '/cl-over-bound': { seed: 52, size: HOLD + 1, pauseAfter: 8 * KB },
    '/chunked-under-bound': { seed: 53, size: 40 * KB, framing: 'chunked', chunkSize: 2 * KB, pauseAfter: 8 * KB },
    '/chunked-past-bound': { seed: 54, size: 40 * KB, framing: 'chunked', chunkSize: 2 * KB, pauseAfter: 24 * KB },
  };
  const fleet = await startFleet(t, 2, (h) => serve(cases[h.target] ?? {}));
  const d = await startTestDispatcher(t, { backends: fleet.hostPorts, health: SLOW_PROBE, failover: { holdReplyBytes: HOLD } });
  for (const [path, reply] of Object.entries(cases)) {
    const held = path === '/cl-at-bound' || path === '/chunked-under-bound';
    const c = await open(t, d.address);
    c.write(get(path));
    const paused = await fleet.waitFor(
      (e) => e.ev === 'paused' && fleet.heads().some((h) => h.req === e.req && h.target === path),
      `${path} paused`,
    );
    if (held) {
      await sleep(300);
      assert.equal(c.bytesIn, 0, `${path}: held, the client has nothing while the backend is paused`);
    } else {
      const until = Date.now() + 3_000;
      while (c.bytesIn === 0 && Date.now() < until) await sleep(10);
      assert.ok(c.bytesIn > 0, `${path}: streamed, the client has bytes before the backend finishes`);
    }
    fleet.send(paused.backend, { req: paused.req, do: 'continue' });
    const r = await c.readResponse();
    assert.equal(r.status, 200, path);
    assertBody(r, objectBytes(reply.seed!, 0, reply.size!), path);
    c.destroy();
  }
});

// ---------------------------------------------------------------------------------------------
// The health monitor declares a busy backend down

test('detector path (pull, http hellos): a backend frozen with SIGSTOP mid-exchange is failed over though its TCP connection is open', async (t) => {
  let slow = true;
  const fleet = await startFleet(t, 2, (h) => {
    if (h.target === '/slow' && slow) {
      slow = false;
      return { do: 'hang' };
    }
    return serve({ seed: 61, size: 4 * KB });
  });
  const events = failoverEvents(t);
  const d = await startTestDispatcher(t, {
    backends: fleet.hostPorts,
    http: { responseTimeoutMs: 30_000 },
    health: { detector: { type: 'pull', intervalMs: 50, n: 3 }, probe: { type: 'http', path: '/health', intervalMs: 10_000 } },
  });
  await d.waitForState('b0', 'up');
  await d.waitForState('b1', 'up');
  const c = await open(t, d.address);
  c.write(get('/slow'));
  const head = (await fleet.waitFor((e) => e.ev === 'head', 'the /slow request')) as unknown as HeadEvent;
  const frozen = head.backend;
  const t0 = Date.now();
  fleet.child(frozen).proc.kill('SIGSTOP');
  const r = await c.readResponse({ timeoutMs: 5_000 });
  const elapsed = Date.now() - t0;
  assert.equal(r.status, 200);
  assert.notEqual(r.get('x-served-by'), frozen);
  assertBody(r, objectBytes(61, 0, 4 * KB), 'replayed after the detector');
  assert.ok(elapsed < 3_000, `failed over ${elapsed} ms after the freeze (responseTimeoutMs is 30 s)`);
  assert.equal(d.backend(frozen).state, 'down');
  await expectEvent(events, { strategy: 'replay', result: 'ok', backend: frozen });
});

test('detector path (passive): once a refused connect marks a backend down, its exchange in flight on another connection is failed over', async (t) => {
  let slow = true;
  const fleet = await startFleet(t, 2, (h) => {
    if (h.target === '/slow' && slow) {
      slow = false;
      return { do: 'hang' };
    }
    return serve({ seed: 62, size: 2 * KB });
  });
  const events = failoverEvents(t);
  const d = await startTestDispatcher(t, { backends: fleet.hostPorts, http: { responseTimeoutMs: 30_000 }, health: SLOW_PROBE });
  const c = await open(t, d.address);
  c.write(get('/slow'));
  const head = (await fleet.waitFor((e) => e.ev === 'head', 'the /slow request')) as unknown as HeadEvent;
  const busy = head.backend;
  fleet.send(busy, { do: 'unlisten' });
  await sleep(50);
  // New requests find `busy` refusing connections (each still gets a normal reply).
  for (let i = 0; i < 6 && d.backend(busy).state !== 'down'; i++) {
    const c2 = await open(t, d.address);
    c2.write(get(`/ping${i}`));
    const r2 = await c2.readResponse();
    assert.equal(r2.status, 200, `/ping${i}`);
    c2.destroy();
  }
  assert.equal(d.backend(busy).state, 'down', 'a refused connect marked it down');
  const t0 = Date.now();
  const r = await c.readResponse({ timeoutMs: 5_000 });
  assert.equal(r.status, 200);
  assert.notEqual(r.get('x-served-by'), busy);
  assertBody(r, objectBytes(62, 0, 2 * KB), 'replayed after the backend went down');
  assert.ok(Date.now() - t0 < 3_000, 'failed over promptly, not at responseTimeoutMs');
  await expectEvent(events, { strategy: 'replay', result: 'ok', backend: busy });
  await fleet.waitFor((e) => e.ev === 'conn-closed' && e.backend === busy, 'the proxy closing its connection to the down backend');
});

test('no reply within responseTimeoutMs: replayed on another backend; the slow one is not reported down', async (t) => {
  const fleet = await startFleet(t, 2, (_h, nth) => (nth === 0 ? { do: 'hang' } : serve({ seed: 63, size: 3 * KB })));
  const events = failoverEvents(t);
  const d = await startTestDispatcher(t, { backends: fleet.hostPorts, http: { responseTimeoutMs: 300 }, health: SLOW_PROBE });
  const c = await open(t, d.address);
  c.write(get('/sluggish'));
  const r = await c.readResponse({ timeoutMs: 5_000 });
  assert.equal(r.status, 200, `${r.status}; ${fleet.summary()}`);
  assertBody(r, objectBytes(63, 0, 3 * KB), 'replayed after a response timeout');
  const heads = fleet.heads();
  assert.equal(heads.length, 2, fleet.summary());
  assert.equal(r.get('x-served-by'), heads[1]!.backend);
  assert.notEqual(d.backend(heads[0]!.backend).state, 'down', 'a response timeout does not mark the backend down');
  await expectEvent(events, { strategy: 'replay', result: 'ok', backend: heads[0]!.backend });
});

// ---------------------------------------------------------------------------------------------
// Failover disabled

test('failover disabled: a backend reset before the head → 502, nothing replayed', async (t) => {
  const fleet = await startFleet(t, 2, (_h, nth) => (nth === 0 ? { do: 'reset' } : ECHO));
  const events = failoverEvents(t);
  const d = await startTestDispatcher(t, { backends: fleet.hostPorts, health: SLOW_PROBE, failover: { enabled: false } });
  const c = await open(t, d.address);
  c.write(get('/no-failover'));
  const r = await c.readResponse();
  assert.equal(r.status, 502);
  assert.equal(fleet.heads().length, 1, fleet.summary());
  assert.equal(d.backend(fleet.heads()[0]!.backend).state, 'down');
  assert.deepEqual(events.filter((e) => e.result === 'ok'), []);
});

test('failover disabled: a backend killed mid-body → the client connection is cut', async (t) => {
  const fleet = await startFleet(t, 2, (_h, nth) => serve({ seed: 9, size: OBJ_SIZE, ...(nth === 0 ? { dieAfter: 300 * KB } : {}) }));
  const d = await startTestDispatcher(t, { backends: fleet.hostPorts, health: SLOW_PROBE, failover: { enabled: false } });
  const c = await open(t, d.address);
  c.write(get('/no-failover'));
  const err = await assertAborted(c, objectBytes(9, 0, OBJ_SIZE));
  assert.equal(err.status, 200);
  assert.equal(fleet.heads().length, 1, fleet.summary());
});

test('failover disabled: small replies are not held (the client has bytes before the backend finishes)', async (t) => {
  const fleet = await startFleet(t, 1, () => serve({ seed: 71, size: 10 * KB, pauseAfter: 5 * KB }));
  const d = await startTestDispatcher(t, { backends: fleet.hostPorts, health: SLOW_PROBE, failover: { enabled: false } });
  const c = await open(t, d.address);
  c.write(get('/streamed'));
  const paused = await fleet.waitFor((e) => e.ev === 'paused', 'the reply pausing');
  const until = Date.now() + 3_000;
  while (c.bytesIn === 0 && Date.now() < until) await sleep(10);
  assert.ok(c.bytesIn > 0, 'not held when failover is disabled');
  fleet.send(paused.backend, { req: paused.req, do: 'continue' });
  const r = await c.readResponse();
  assertBody(r, objectBytes(71, 0, 10 * KB), 'streamed reply');
});
