import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { FakeClock } from '../core/clock.js';
import type { WatchdogConfig } from '../config/agent-schema.js';
import { probeFor, Watchdog, type WatchdogProbe, type WatchdogVerdict } from './watchdog.js';

/** Lets pending promise callbacks run (probe results, the watchdog's bookkeeping). */
const settle = () => new Promise<void>((r) => setImmediate(r));

/** A probe whose answers the test scripts: each call takes the next answer ('hang' never settles). */
function scripted(answers: (boolean | 'hang' | 'throw')[]) {
  const calls: number[] = [];
  const probe: WatchdogProbe = (timeoutMs) => {
    calls.push(timeoutMs);
    const next = answers.shift() ?? true;
    if (next === 'hang') return new Promise<boolean>(() => {});
    if (next === 'throw') return Promise.reject(new Error('boom'));
    return Promise.resolve(next);
  };
  return { probe, calls };
}

function watch(answers: (boolean | 'hang' | 'throw')[], failures = 1, periodMs = 100, timeoutMs = 50) {
  const clock = new FakeClock();
  const { probe, calls } = scripted(answers);
  const verdicts: [WatchdogVerdict, number, string | null][] = [];
  const wd = new Watchdog(probe, {
    periodMs,
    timeoutMs,
    failures,
    clock,
    onVerdict: (v, d) => verdicts.push([v, d.failures, d.reason]),
  });
  /** Advance one period and let its check finish. */
  const period = async () => {
    clock.advance(periodMs);
    await settle();
  };
  return { clock, wd, calls, verdicts, period };
}

test('the first check runs at start; before any success the application is unhealthy', async () => {
  const { wd, calls, verdicts, period } = watch([false, false, true]);
  assert.equal(await wd.start(), 'unhealthy');
  assert.deepEqual(calls, [50], 'the probe gets the timeout');
  assert.deepEqual(verdicts, [], 'unhealthy from the start is no transition');
  await period();
  assert.equal(wd.verdict, 'unhealthy');
  await period();
  assert.equal(wd.verdict, 'healthy');
  assert.deepEqual(verdicts, [['healthy', 0, null]]);
  assert.equal(wd.completed, 3);
  wd.close();
});

test('failures consecutive failed checks turn a healthy application unhealthy; one success heals it', async () => {
  const { wd, verdicts, period } = watch([true, false, false, true, false, false, false, true], 3);
  assert.equal(await wd.start(), 'healthy');
  await period(); // false (1)
  await period(); // false (2)
  assert.equal(wd.verdict, 'healthy', 'two failures are not three');
  await period(); // true: the count starts over
  await period(); // false (1)
  await period(); // false (2)
  await period(); // false (3)
  assert.equal(wd.verdict, 'unhealthy');
  await period(); // true
  assert.equal(wd.verdict, 'healthy');
  assert.deepEqual(verdicts, [
    ['healthy', 0, null],
    ['unhealthy', 3, 'failed'],
    ['healthy', 0, null],
  ]);
  wd.close();
});

test('a check that does not answer within timeoutMs has failed; a probe that throws has failed', async () => {
  const { clock, wd, verdicts } = watch([true, 'hang', true, 'throw'], 1, 100, 30);
  await wd.start();
  clock.advance(100); // the hanging check starts
  await settle();
  assert.equal(wd.verdict, 'healthy');
  clock.advance(29);
  await settle();
  assert.equal(wd.verdict, 'healthy', 'not yet timed out');
  clock.advance(1);
  await settle();
  assert.equal(wd.verdict, 'unhealthy');
  clock.advance(70);
  await settle();
  assert.equal(wd.verdict, 'healthy');
  clock.advance(100);
  await settle();
  assert.equal(wd.verdict, 'unhealthy');
  assert.deepEqual(verdicts, [
    ['healthy', 0, null],
    ['unhealthy', 1, 'timeout'],
    ['healthy', 0, null],
    ['unhealthy', 1, 'failed'],
  ]);
  wd.close();
});

test('a check still running when the period comes round is not doubled', async () => {
  // Timeout longer than the period (the config forbids it; the watchdog must still cope).
  const { clock, wd, calls } = watch([true, 'hang'], 1, 10, 35);
  await wd.start();
  clock.advance(10);
  await settle();
  clock.advance(10);
  clock.advance(10);
  await settle();
  assert.equal(calls.length, 2, 'the hanging check blocks the next two periods');
  clock.advance(15); // 40: skipped again; 45 = 10 + 35: timed out
  await settle();
  assert.equal(calls.length, 2);
  clock.advance(5); // 50: a new check
  await settle();
  assert.equal(calls.length, 3);
  wd.close();
});

test('after close, no more checks and no more verdicts', async () => {
  const { clock, wd, calls, verdicts } = watch([true, false]);
  await wd.start();
  wd.close();
  clock.advance(1000);
  await settle();
  assert.equal(calls.length, 1);
  assert.equal(wd.verdict, 'healthy');
  assert.equal(verdicts.length, 1);
});

const base = { periodMs: 1000, timeoutMs: 500, failures: 1 };

test('http probe: 2xx and 3xx are healthy, 5xx and a refused connection are not', async (t) => {
  let status = 200;
  const server = http.createServer((req, res) => {
    res.statusCode = req.url === '/health?deep=1' ? status : 404;
    res.end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => server.close());
  const port = (server.address() as AddressInfo).port;
  const probe = probeFor({ ...base, type: 'http', url: `http://127.0.0.1:${port}/health?deep=1` } as WatchdogConfig)!;
  assert.equal(await probe(500), true);
  status = 302;
  assert.equal(await probe(500), true);
  status = 503;
  assert.equal(await probe(500), false);
  const other = probeFor({ ...base, type: 'http', url: `http://127.0.0.1:${port}/` } as WatchdogConfig)!;
  assert.equal(await other(500), false, '404');
  server.close();
  await new Promise((r) => server.once('close', r));
  assert.equal(await probe(500), false, 'refused');
});

test('tcp probe: an accepted connection is healthy', async (t) => {
  const server = net.createServer((s) => s.destroy());
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => server.close());
  const port = (server.address() as AddressInfo).port;
  const probe = probeFor({ ...base, type: 'tcp', address: `127.0.0.1:${port}` } as WatchdogConfig)!;
  assert.equal(await probe(500), true);
  server.close();
  await new Promise((r) => server.once('close', r));
  assert.equal(await probe(500), false);
});

test('pid probe: a live process, then a dead one; a pid file is read at every check', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'holdfast-watchdog-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
  t.after(() => child.kill('SIGKILL'));
  await new Promise((r) => child.once('spawn', r));
  const pid = child.pid!;
  const byPid = probeFor({ ...base, type: 'pid', pid } as WatchdogConfig)!;
  const pidFile = join(dir, 'app.pid');
  writeFileSync(pidFile, `${pid}\n`);
  const byFile = probeFor({ ...base, type: 'pid', pidFile } as WatchdogConfig)!;
  assert.equal(await byPid(500), true);
  assert.equal(await byFile(500), true);
  writeFileSync(pidFile, `${process.pid}\n`); // the application restarted under another pid
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));
  assert.equal(await byPid(500), false);
  assert.equal(await byFile(500), true, 'follows the pid file');
  writeFileSync(pidFile, 'garbage');
  assert.equal(await byFile(500), false);
  rmSync(pidFile);
  assert.equal(await byFile(500), false);
});

test('type none has no probe', () => {
  assert.equal(probeFor({ ...base, type: 'none' } as WatchdogConfig), null);
});
