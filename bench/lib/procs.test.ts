import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { MissingPeerError, freePort, makeTempDir, removeTempDir, requirePeers, runProcess, startProcess, which } from './procs.js';

const node = process.execPath;

test('startProcess resolves on the ready line and stop() ends the process', async () => {
  const p = await startProcess({
    name: 'echoer',
    command: node,
    args: ['-e', 'console.log("booting"); console.log("listening 4242"); setInterval(() => {}, 1000);'],
    readyLine: /^listening (\d+)$/,
  });
  assert.equal(p.readyMatch?.[1], '4242');
  assert.match(p.output(), /booting/);
  await p.stop();
  const exit = await p.exited;
  assert.equal(exit.signal, 'SIGTERM');
});

test('startProcess waits for a port to accept', async (t) => {
  const port = await freePort();
  const p = await startProcess({
    name: 'late-listener',
    command: node,
    args: ['-e', `setTimeout(() => require('net').createServer().listen(${port}, '127.0.0.1'), 200);`],
    readyPort: { host: '127.0.0.1', port },
  });
  t.after(() => p.stop());
  await new Promise<void>((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => {
      s.destroy();
      resolve();
    });
    s.once('error', reject);
  });
});

test('startProcess rejects with the output when the program exits before it is ready', async () => {
  await assert.rejects(
    startProcess({
      name: 'crasher',
      command: node,
      args: ['-e', 'console.error("bad config: line 3"); process.exit(3);'],
      readyLine: /^listening/,
    }),
    (err: Error) => /crasher .*exited before it was ready \(code 3/.test(err.message) && /bad config: line 3/.test(err.message),
  );
});

test('startProcess kills a program that is not ready in time', async () => {
  const started = Date.now();
  await assert.rejects(
    startProcess({
      name: 'sleeper',
      command: node,
      args: ['-e', 'setInterval(() => {}, 1000);'],
      readyLine: /^never$/,
      readyTimeoutMs: 300,
    }),
    /sleeper .*not ready after 300 ms/,
  );
  // Generous: only checks the timeout was used, not the default 10 s.
  assert.ok(Date.now() - started < 5000);
});

test('startProcess reports a program that cannot be started', async () => {
  await assert.rejects(
    startProcess({ name: 'ghost', command: '/nonexistent/ghost', args: [], readyLine: /x/ }),
    /ghost .*could not start: .*ENOENT/,
  );
});

test('runProcess collects output and exit code', async () => {
  const r = await runProcess(node, ['-e', 'process.stdout.write("out"); process.stderr.write("err"); process.exit(7);'], 5000);
  assert.deepEqual([r.code, r.stdout, r.stderr], [7, 'out', 'err']);
});

test('which and requirePeers find programs on PATH and name missing packages', () => {
  assert.equal(which(node), node);
  assert.equal(which('surely-not-a-program-xyz'), null);
  const dir = makeTempDir('procs-test');
  const tool = path.join(dir, 'tool');
  writeFileSync(tool, '#!/bin/sh\n', { mode: 0o755 });
  assert.equal(which(tool), tool);
  assert.throws(
    () => requirePeers({ 'surely-not-a-program-xyz': 'xyz-pkg', sh: 'dash' }),
    (err: unknown) => err instanceof MissingPeerError && err.packages.join() === 'xyz-pkg',
  );
  removeTempDir(dir);
  assert.equal(existsSync(dir), false);
});
