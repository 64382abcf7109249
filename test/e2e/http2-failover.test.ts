/**
 * @module Per-stream transparent failover over HTTP/2 (issue 19): an origin process SIGKILLed while
 * several streams of one HTTP/2 connection are in flight on it — a held reply, a released one resumed
 * by verified replay, a ranged /static object, a POST with an Idempotency-Key — and every stream
 * completes with the exact bytes; streams on the surviving origin are not disturbed; a stream whose
 * reply cannot be resumed is reset alone (RST_STREAM), the connection's other streams completing.
 * The origins are the chaos benchmark's (bench/chaos-origin-server.ts): deterministic, paced replies.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import diagnostics_channel from 'node:diagnostics_channel';
import http from 'node:http';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { FailoverEvent } from '../../src/core/diagnostics.js';
import { h2Connect, h2Request, h2Service } from '../helpers/h2-client.js';

const ORIGIN = fileURLToPath(new URL('../../bench/chaos-origin-server.js', import.meta.url));
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

interface Origin {
  readonly child: ChildProcess;
  readonly port: number;
}

async function startOrigin(t: TestContext): Promise<Origin> {
  const child = spawn(process.execPath, [ORIGIN, '--port', '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const line = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', resolve);
    child.once('exit', () => reject(new Error('origin exited before listening')));
  });
  const m = /^listening (\d+)$/.exec(line);
  assert.ok(m, line);
  return { child, port: Number(m[1]) };
}

/** The reply a (surviving) origin gives over plain HTTP/1.1, for comparison. */
function direct(port: number, path: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
        const parts: Buffer[] = [];
        res.on('data', (d: Buffer) => parts.push(d));
        res.on('end', () => resolve(Buffer.concat(parts)));
      })
      .on('error', reject);
  });
}

test('SIGKILL of an origin with several streams of one HTTP/2 connection in flight on it: every stream completes, byte for byte', async (t) => {
  const o0 = await startOrigin(t);
  const o1 = await startOrigin(t);
  const d = await h2Service(t, [`127.0.0.1:${o0.port}`, `127.0.0.1:${o1.port}`], { health: { probe: { intervalMs: 10_000 } } });
  const events: FailoverEvent[] = [];
  const onFailover = (m: unknown): void => {
    events.push(m as FailoverEvent);
  };
  diagnostics_channel.subscribe('holdfast:failover', onFailover);
  t.after(() => diagnostics_channel.unsubscribe('holdfast:failover', onFailover));
  const c = h2Connect(t, `http://127.0.0.1:${d.address.port}`);
  const echoBody = randomBytes(200_000);
  // Round robin spreads the streams over both origins. Paced replies take 15–350 ms once their
  // head is out: origin 0 is killed as soon as the first large reply has started.
  let killed = false;
  const kill = (): void => {
    if (killed) return;
    killed = true;
    o0.child.kill('SIGKILL');
  };
  const paths = ['/static/1', '/static/2', '/static/3', '/static/4', '/det/5?size=1000000', '/det/6?size=1000000', '/det/7?size=32768', '/det/8?size=32768'];
  const pending = paths.map((p, i) => h2Request(c, { ':path': p }, undefined, undefined, i < 4 ? kill : undefined));
  const echo = h2Request(c, { ':method': 'POST', ':path': '/echo', 'idempotency-key': 'k1', 'content-length': String(echoBody.length) }, echoBody);
  const replies = await Promise.all(pending);
  const echoed = await echo;
  for (let i = 0; i < paths.length; i++) {
    assert.equal(replies[i]!.headers[':status'], 200, paths[i]);
    assert.equal(sha(replies[i]!.body), sha(await direct(o1.port, paths[i]!)), `${paths[i]}: the same bytes as the origin serves`);
  }
  assert.equal(echoed.headers[':status'], 200);
  assert.equal(sha(echoed.body), sha(echoBody), 'the POST with an Idempotency-Key was replayed whole');
  const recovered = events.filter((e) => e.result === 'ok');
  assert.ok(recovered.length >= 1, `at least one stream failed over: ${JSON.stringify(events)}`);
  assert.equal(events.filter((e) => e.result === 'failed').length, 0, JSON.stringify(events));
  // The connection is still good for more streams.
  assert.equal((await h2Request(c, { ':path': '/det/9?size=100' })).headers[':status'], 200);
});

test('a stream whose reply cannot be resumed (non-deterministic, released) is reset alone; its sibling streams complete', async (t) => {
  const o0 = await startOrigin(t);
  const o1 = await startOrigin(t);
  const d = await h2Service(t, [`127.0.0.1:${o0.port}`, `127.0.0.1:${o1.port}`], { health: { probe: { intervalMs: 10_000 } } });
  const c = h2Connect(t, `http://127.0.0.1:${d.address.port}`);
  const origins = [o0, o1];
  // Warm both origins' body caches and connections first.
  await Promise.all([h2Request(c, { ':path': '/det/11?size=1000000' }), h2Request(c, { ':path': '/det/11?size=1000000' })]);
  // Stream 1: 4 MB of random bytes, paced over ~300 ms — larger than holdReplyBytes and different on
  // every replay, so it cannot be resumed. Once its head is out, two more streams start (one per
  // origin) and the origin serving stream 1 is killed.
  let siblings: Promise<unknown>[] = [];
  let survivor = o1;
  const rand = h2Request(c, { ':path': '/rand?size=4000000' }, undefined, undefined, () => {
    const victim = d.backend('b0').active > 0 ? 0 : 1;
    survivor = origins[1 - victim]!;
    siblings = [h2Request(c, { ':path': '/det/11?size=1000000' }), h2Request(c, { ':path': '/det/12?size=16384' })];
    setTimeout(() => {
      origins[victim]!.child.kill('SIGKILL');
    }, 20);
  }).then(
    () => 'complete',
    (err: Error) => err.message,
  );
  assert.match(await rand, /reset with code 2/, 'RST_STREAM INTERNAL_ERROR on that stream');
  const [s, h] = (await Promise.all(siblings)) as Awaited<ReturnType<typeof h2Request>>[];
  assert.equal(sha(s!.body), sha(await direct(survivor.port, '/det/11?size=1000000')));
  assert.equal(sha(h!.body), sha(await direct(survivor.port, '/det/12?size=16384')));
  assert.equal((await h2Request(c, { ':path': '/det/13?size=10' })).headers[':status'], 200, 'the connection goes on');
});
