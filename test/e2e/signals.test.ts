/**
 * @module Signals an operator sends (issue 21): SIGHUP, the conventional "reload", must not kill a
 * `holdfast dispatcher` or a `holdfast agent` (its default action would, at once, with no log line
 * and no drain). The dispatcher reloads its (unchanged) file live, the agent logs and ignores it: the
 * processes keep running and the dispatcher keeps serving on the connections it already had and on
 * new ones (reload.test.ts tests a reload that changes things). SIGTERM drains (issue 18): the
 * listener closes, requests in flight finish, exit 0. SIGUSR1 reopens `logging.file` after logrotate
 * renamed it; a full log disk drops (and counts) lines, never requests.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startProcess, type Proc } from '../../bench/lib/procs.js';
import { freePort } from '../helpers/scripted-backend.js';
import {
  freeUdpPort,
  get,
  metricValue,
  newCluster,
  ROOT,
  run,
  START_TIMEOUT_MS,
  startAgent,
  startBackend,
  startDispatcher,
} from '../helpers/cluster-procs.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
/** Long enough for a signal to be delivered and a process killed by it to be reaped. */
const SETTLE_MS = 300;

test('SIGHUP: the dispatcher reloads, the agent logs it and ignores it, both keep running; an open keep-alive connection keeps working', async (t) => {
  const c = newCluster(t);
  const port = await freePort();
  const monitor = `127.0.0.1:${await freeUdpPort()}`;
  await startBackend(t, c, { id: 'b1', port });
  const d = await startDispatcher(
    t,
    c,
    `version: 1
logging: { level: info, format: json }
monitor: { listen: '${monitor}' }
services:
  - name: web
    protocol: http
    listen: '127.0.0.1:0'
    backends:
      - { id: b1, address: '127.0.0.1:${port}', agent: 1 }
`,
  );
  const a = await startAgent(t, c, { id: 1, dispatchers: [monitor], heartbeatIntervalMs: 50, watchdog: '{ type: none }' });
  const url = `http://${d.services['web']!}/`;
  assert.equal((await get(url)).status, 200);

  // A keep-alive connection opened before the signal.
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => agent.destroy());
  const viaKeepAlive = (): Promise<{ status: number; port: number }> =>
    new Promise((resolve, reject) => {
      const req = http.get(url, { agent }, (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, port: req.socket?.localPort ?? -1 }));
      });
      req.on('error', reject);
    });
  const before = await viaKeepAlive();

  for (let i = 0; i < 3; i++) {
    d.proc.child.kill('SIGHUP');
    a.proc.child.kill('SIGHUP');
    await sleep(SETTLE_MS / 3);
  }
  await sleep(SETTLE_MS);

  assert.equal(d.proc.child.exitCode, null, `dispatcher exited on SIGHUP:\n${d.proc.output()}`);
  assert.equal(d.proc.child.signalCode, null, 'dispatcher killed by SIGHUP');
  assert.equal(a.proc.child.exitCode, null, `agent exited on SIGHUP:\n${a.proc.output()}`);
  assert.equal(a.proc.child.signalCode, null, 'agent killed by SIGHUP');
  assert.match(d.proc.output(), /SIGHUP received: reloading the configuration/);
  assert.match(d.proc.output(), /configuration reloaded/);
  assert.match(a.proc.output(), /SIGHUP received: reload is not supported yet/);

  const after = await viaKeepAlive();
  assert.deepEqual([after.status, after.port], [200, before.port], 'the same keep-alive connection still serves');
  assert.equal((await get(url)).status, 200, 'new connections are served');
  // The agent still announces: the backend stays up.
  assert.equal((await d.backend('web', 'b1')).state, 'up');
});

// ---------------------------------------------------------------------------------------------
// SIGTERM drains; SIGUSR1 reopens the log file; a full disk never stops forwarding (issue 18)

/** A backend in the test process that holds each request until `release()`; counts what it got. */
async function holdingBackend(t: TestContext): Promise<{ port: number; held: number; arrived: Promise<void>; release(): void }> {
  const pending: http.ServerResponse[] = [];
  let onArrive!: () => void;
  const arrived = new Promise<void>((r) => (onArrive = r));
  let hold = true;
  const server = http.createServer((req, res) => {
    req.resume();
    if (!hold) return void res.end('late');
    pending.push(res);
    onArrive();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  return {
    port: (server.address() as AddressInfo).port,
    get held() {
      return pending.length;
    },
    arrived,
    release() {
      hold = false;
      for (const res of pending.splice(0)) res.end('finished after SIGTERM');
    },
  };
}

/** Runs `holdfast dispatcher` on `yaml` until its HTTP port `port` accepts (for logs that go to a file, not stdout). */
async function startDispatcherOnPort(t: TestContext, dir: string, yaml: string, port: number): Promise<Proc> {
  const file = join(dir, `dispatcher-${port}.yaml`);
  writeFileSync(file, yaml);
  const proc = await startProcess({
    name: 'dispatcher',
    command: process.execPath,
    args: [join(ROOT, 'bin', 'holdfast.js'), 'dispatcher', '--config', file],
    readyPort: { host: '127.0.0.1', port },
    readyTimeoutMs: START_TIMEOUT_MS,
  });
  t.after(() => proc.stop());
  return proc;
}

function connectOutcome(port: number): Promise<'connected' | string> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve('connected');
    });
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
  });
}

async function waitFor(what: string, check: () => boolean, timeoutMs = 5_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

test('SIGTERM: a request in flight completes, new connections are refused, the dispatcher exits 0 within its drain timeout', async (t) => {
  const c = newCluster(t);
  const backend = await holdingBackend(t);
  const port = await freePort();
  const d = await startDispatcherOnPort(
    t,
    c.dir,
    `version: 1
logging: { level: info, format: json }
admin: { enabled: false }
services:
  - name: web
    protocol: http
    listen: '127.0.0.1:${port}'
    backends:
      - { id: b1, address: '127.0.0.1:${backend.port}' }
`,
    port,
  );
  const inFlight = new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/slow', agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (s: string) => (body += s));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
  });
  await backend.arrived;
  const termAt = Date.now();
  d.child.kill('SIGTERM');
  // The listener closes first: a new connection is refused while the request is still held.
  let refused = '';
  for (let i = 0; i < 100 && refused !== 'ECONNREFUSED'; i++) {
    refused = await connectOutcome(port);
    if (refused !== 'ECONNREFUSED') await sleep(20);
  }
  assert.equal(refused, 'ECONNREFUSED', `new connections after SIGTERM:\n${d.output()}`);
  assert.equal(d.child.exitCode, null, 'the dispatcher waits for the request in flight');
  assert.equal(backend.held, 1);
  backend.release();
  assert.deepEqual(await inFlight, { status: 200, body: 'finished after SIGTERM' });
  const exit = await d.exited;
  assert.deepEqual([exit.code, exit.signal], [0, null], d.output());
  // dispatcher.drainTimeoutMs (5 s by default) is the drain timeout; the held request was released well before it.
  assert.ok(Date.now() - termAt < 5_000 + START_TIMEOUT_MS, 'exited within the drain timeout');
  assert.match(d.output(), /holdfast dispatcher shutting down/);
});

test('SIGTERM: a request held past dispatcher.drainTimeoutMs is cut and the dispatcher still exits 0', async (t) => {
  const c = newCluster(t);
  const backend = await holdingBackend(t);
  const port = await freePort();
  const d = await startDispatcherOnPort(
    t,
    c.dir,
    `version: 1
logging: { level: info, format: json }
admin: { enabled: false }
dispatcher: { drainTimeoutMs: 300 }
services:
  - name: web
    protocol: http
    listen: '127.0.0.1:${port}'
    backends:
      - { id: b1, address: '127.0.0.1:${backend.port}' }
`,
    port,
  );
  const inFlight = new Promise<string>((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/forever', agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(`status ${res.statusCode ?? 0}`));
      res.on('error', () => resolve('cut'));
    });
    req.on('error', () => resolve('cut'));
  });
  await backend.arrived;
  const termAt = Date.now();
  d.child.kill('SIGTERM');
  const exit = await d.exited;
  assert.deepEqual([exit.code, exit.signal], [0, null], d.output());
  assert.match(await inFlight, /^(cut|status 50\d)$/);
  // The configured 300 ms, not the 5 s default (the backend never answers).
  assert.ok(Date.now() - termAt < 4_000, `exited ${Date.now() - termAt} ms after SIGTERM`);
});

test('SIGUSR1 reopens logging.file: after a logrotate-style rename, new lines land in the new file', async (t) => {
  const c = newCluster(t);
  const port = await freePort();
  const backendPort = await freePort();
  await startBackend(t, c, { id: 'b1', port: backendPort });
  const log = join(c.dir, 'holdfast.log');
  const d = await startDispatcherOnPort(
    t,
    c.dir,
    `version: 1
logging: { level: info, format: json, file: '${log}' }
admin: { enabled: false }
services:
  - name: web
    protocol: http
    listen: '127.0.0.1:${port}'
    backends:
      - { id: b1, address: '127.0.0.1:${backendPort}' }
`,
    port,
  );
  await waitFor('the listening line in the log file', () => existsSync(log) && readFileSync(log, 'utf8').includes('holdfast dispatcher listening'));
  assert.equal(d.output().trim(), '', 'nothing on stdout when logging.file is set');
  renameSync(log, `${log}.1`); // what logrotate does before its postrotate `kill -USR1`
  d.child.kill('SIGUSR1');
  await waitFor('the reopened file', () => existsSync(log) && readFileSync(log, 'utf8').includes('log file'));
  d.child.kill('SIGHUP'); // one more line, logged after the reopen
  await waitFor('the SIGHUP line in the new file', () => readFileSync(log, 'utf8').includes('SIGHUP received'));
  const rotated = readFileSync(`${log}.1`, 'utf8');
  assert.match(rotated, /holdfast dispatcher listening/);
  assert.doesNotMatch(rotated, /SIGHUP received/, 'no line after the reopen went to the rotated file');
  assert.equal((await get(`http://127.0.0.1:${port}/`)).status, 200);
  assert.equal(d.child.exitCode, null);
});

test('disk full: logging to a full filesystem never stops forwarding; dropped lines are counted; lines land again once there is room', async (t) => {
  const c = newCluster(t);
  // Its own directory, not under c.dir: removing c.dir must not meet a mount point.
  const logDir = mkdtempSync(join(tmpdir(), 'holdfast-full-logs-'));
  // A 64 KiB tmpfs filled up by the test: root only. Elsewhere /dev/full stands in (always full).
  let log = '/dev/full';
  let filler: string | null = null;
  if (process.getuid?.() !== 0 || (await run('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'holdfast-test-logs', logDir])).code !== 0) {
    rmSync(logDir, { recursive: true, force: true });
  } else {
    t.after(async () => {
      await run('umount', ['-l', logDir]);
      rmSync(logDir, { recursive: true, force: true });
    });
    log = join(logDir, 'holdfast.log');
    filler = join(logDir, 'filler');
    writeFileSync(log, '');
    try {
      writeFileSync(filler, Buffer.alloc(128 * 1024));
    } catch (err) {
      assert.equal((err as NodeJS.ErrnoException).code, 'ENOSPC');
    }
  }
  const port = await freePort();
  const adminPort = await freePort();
  const backendPort = await freePort();
  await startBackend(t, c, { id: 'b1', port: backendPort });
  const d = await startDispatcherOnPort(
    t,
    c.dir,
    `version: 1
logging: { level: debug, format: json, file: '${log}' }
admin: { listen: '127.0.0.1:${adminPort}' }
services:
  - name: web
    protocol: http
    listen: '127.0.0.1:${port}'
    backends:
      - { id: b1, address: '127.0.0.1:${backendPort}' }
`,
    port,
  );
  // Each malformed request is a debug line; each good one must be served.
  const raw = (bytes: string): Promise<string> =>
    new Promise((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port }, () => s.write(bytes));
      let got = '';
      s.setEncoding('latin1');
      s.on('data', (x: string) => (got += x));
      s.on('close', () => resolve(got));
      s.on('error', () => resolve(got));
    });
  let served = 0;
  for (let i = 0; i < 50; i++) {
    assert.match(await raw('GET / HTTP/1.1\r\nHost x\r\n\r\n'), /^HTTP\/1\.1 400 /);
    if ((await get(`http://127.0.0.1:${port}/`)).status === 200) served++;
  }
  assert.equal(served, 50, 'every request served while the log disk is full');
  const metrics = (await get(`http://127.0.0.1:${adminPort}/metrics`)).body;
  const dropped = metricValue(metrics, 'holdfast_log_dropped_lines_total', { reason: 'ENOSPC' });
  assert.ok(dropped >= 50, `dropped lines counted: ${dropped}\n${metrics.split('\n').filter((l) => l.includes('log_dropped')).join('\n')}`);
  assert.equal(d.child.exitCode, null);
  if (filler !== null) {
    rmSync(filler);
    d.child.kill('SIGHUP');
    await waitFor('a line once the disk has room', () => readFileSync(log, 'utf8').includes('SIGHUP received'));
  }
});
