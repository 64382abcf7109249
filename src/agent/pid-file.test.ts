import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { claimPidFile, isHoldfastAgent, processAlive, readPidFile, releasePidFile } from './pid-file.js';

function tempDir(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'holdfast-pid-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('readPidFile: a positive integer, surrounding whitespace allowed; null otherwise', (t) => {
  const dir = tempDir(t);
  const f = join(dir, 'a.pid');
  for (const [text, pid] of [['123\n', 123], [' 42 ', 42], ['0', null], ['-5', null], ['12abc', null], ['', null]] as const) {
    writeFileSync(f, text);
    assert.equal(readPidFile(f), pid, JSON.stringify(text));
  }
  assert.equal(readPidFile(join(dir, 'missing.pid')), null);
});

test('processAlive: this process yes; an exited one no', async () => {
  assert.equal(processAlive(process.pid), true);
  const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' });
  await new Promise((r) => child.once('exit', r));
  assert.equal(processAlive(child.pid!), false);
});

test('processAlive: a zombie (exited, not reaped) is not alive', { skip: process.platform !== 'linux' }, async () => {
  // A shell whose child exits while the shell sleeps without waiting for it: the child stays a zombie.
  const sh = spawn('sh', ['-c', 'sleep 0 & echo $!; exec sleep 5'], { stdio: ['ignore', 'pipe', 'ignore'] });
  try {
    const zombie = Number((await new Promise<Buffer>((r) => sh.stdout.once('data', r))).toString().trim());
    const until = Date.now() + 3000;
    while (processAlive(zombie) && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    assert.equal(processAlive(zombie), false);
    // kill(0) alone would still call it alive.
    assert.doesNotThrow(() => process.kill(zombie, 0));
  } finally {
    sh.kill('SIGKILL');
  }
});

test('isHoldfastAgent reads the command line; claimPidFile refuses a file a live agent holds', { skip: process.platform !== 'linux' }, async (t) => {
  assert.equal(isHoldfastAgent(process.pid), false, 'the test runner');
  const dir = tempDir(t);
  const script = join(dir, 'holdfast.js');
  writeFileSync(script, 'setTimeout(() => {}, 60000)');
  const child = spawn(process.execPath, [script, 'agent', '--config', 'x.yaml'], { stdio: 'ignore' });
  t.after(() => child.kill('SIGKILL'));
  await new Promise((r) => child.once('spawn', r));
  // The command line is visible once exec has happened; poll briefly.
  const until = Date.now() + 3000;
  while (isHoldfastAgent(child.pid!) !== true && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
  assert.equal(isHoldfastAgent(child.pid!), true);
  assert.equal(isHoldfastAgent(2 ** 22 + 1), null, 'no such process');

  const f = join(dir, 'agent.pid');
  writeFileSync(f, `${child.pid!}\n`);
  assert.deepEqual(claimPidFile(f), { ok: false, pid: child.pid! });
  assert.equal(readPidFile(f), child.pid!, 'left alone');
});

test('claimPidFile writes the pid and takes over a stale file; release removes only its own', (t) => {
  const dir = tempDir(t);
  const f = join(dir, 'agent.pid');
  assert.deepEqual(claimPidFile(f, 1234567), { ok: true });
  assert.equal(readFileSync(f, 'utf8'), '1234567\n');
  // 1234567 is not running (pid_max is at most 2^22): stale, taken over.
  assert.deepEqual(claimPidFile(f), { ok: true });
  assert.equal(readPidFile(f), process.pid);
  // A live process that is not a holdfast agent (this test runner) does not block either.
  assert.deepEqual(claimPidFile(f, 1234567), { ok: true });
  releasePidFile(f, 7654321);
  assert.ok(existsSync(f), 'not ours: kept');
  releasePidFile(f, 1234567);
  assert.ok(!existsSync(f));
  releasePidFile(f, 1234567); // already gone: no error
});
