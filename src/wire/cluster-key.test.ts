import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ClusterKeyError } from '../core/errors.js';
import { loadClusterKey } from './cluster-key.js';

const HEX64 = '00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff';
const FILE_KEY = Buffer.from(Array.from({ length: 32 }, (_, i) => 0xa0 + i));

function tempDir(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'holdfast-key-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function keyFile(dir: string, name: string, bytes: Buffer, mode: number): string {
  const path = join(dir, name);
  writeFileSync(path, bytes, { mode: 0o600 });
  chmodSync(path, mode); // explicit: the umask must not decide the test
  return path;
}

/** Asserts a ClusterKeyError whose message contains every fragment. */
function assertKeyError(fn: () => unknown, ...fragments: string[]): ClusterKeyError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof ClusterKeyError, `expected ClusterKeyError, got ${String(caught)}`);
  assert.equal(caught.code, 'HF_ERR_CLUSTER_KEY');
  for (const f of fragments) assert.ok(caught.message.includes(f), `message ${JSON.stringify(caught.message)} lacks ${JSON.stringify(f)}`);
  return caught;
}

test('HOLDFAST_CLUSTER_KEY (hex) wins over keyFile, which is then not even opened', () => {
  const key = loadClusterKey({ keyFile: '/nonexistent/holdfast.key' }, { HOLDFAST_CLUSTER_KEY: HEX64 });
  assert.equal(key.length, 32);
  assert.equal(key.toString('hex'), HEX64);
  // Upper case and surrounding whitespace (a pasted value) are fine; longer keys too.
  assert.equal(loadClusterKey({}, { HOLDFAST_CLUSTER_KEY: ` ${HEX64.toUpperCase()}\n` }).toString('hex'), HEX64);
  assert.equal(loadClusterKey({}, { HOLDFAST_CLUSTER_KEY: HEX64 + 'abcd' }).length, 34);
});

test('HOLDFAST_CLUSTER_KEY too short, odd or not hex: error, without echoing the value', () => {
  const e = assertKeyError(() => loadClusterKey({}, { HOLDFAST_CLUSTER_KEY: HEX64.slice(0, 62) }), 'HOLDFAST_CLUSTER_KEY', '64', '62');
  assert.ok(!e.message.includes(HEX64.slice(0, 62)));
  assertKeyError(() => loadClusterKey({}, { HOLDFAST_CLUSTER_KEY: HEX64 + 'a' }), 'even');
  assertKeyError(() => loadClusterKey({}, { HOLDFAST_CLUSTER_KEY: HEX64.slice(0, 63) + 'g' }), 'hex');
});

test('keyFile: raw bytes of an owner-only file', (t) => {
  const dir = tempDir(t);
  const path = keyFile(dir, 'key', FILE_KEY, 0o600);
  assert.deepEqual(loadClusterKey({ keyFile: path }, {}), FILE_KEY);
  assert.deepEqual(loadClusterKey({ keyFile: keyFile(dir, 'key-ro', FILE_KEY, 0o400) }, {}), FILE_KEY);
  // An empty HOLDFAST_CLUSTER_KEY counts as unset.
  assert.deepEqual(loadClusterKey({ keyFile: path }, { HOLDFAST_CLUSTER_KEY: '' }), FILE_KEY);
  // Bytes are raw: a trailing newline is part of the key.
  const withNewline = Buffer.concat([FILE_KEY, Buffer.from('\n')]);
  assert.deepEqual(loadClusterKey({ keyFile: keyFile(dir, 'key-nl', withNewline, 0o600) }, {}), withNewline);
});

test('keyFile shorter than 32 bytes: error with the size found', (t) => {
  const path = keyFile(tempDir(t), 'short', FILE_KEY.subarray(0, 31), 0o600);
  const e = assertKeyError(() => loadClusterKey({ keyFile: path }, {}), path, 'at least 32 bytes', 'found 31');
  assert.equal(e.path, path);
  assertKeyError(() => loadClusterKey({ keyFile: keyFile(tempDir(t), 'empty', Buffer.alloc(0), 0o600) }, {}), 'found 0');
});

test('keyFile readable by group or others (0644): refused with the mode and the fix', (t) => {
  const dir = tempDir(t);
  const path = keyFile(dir, 'open', FILE_KEY, 0o644);
  const e = assertKeyError(() => loadClusterKey({ keyFile: path }, {}), path, '0644', 'too open', `chmod 600 ${path}`);
  assert.equal(e.path, path);
  for (const mode of [0o640, 0o604, 0o660, 0o620, 0o602]) {
    const p = keyFile(dir, `open-${mode.toString(8)}`, FILE_KEY, mode);
    assertKeyError(() => loadClusterKey({ keyFile: p }, {}), `0${mode.toString(8)}`);
  }
});

test('missing keyFile: error naming the path, cause kept', () => {
  const path = '/nonexistent/dir/holdfast.key';
  const e = assertKeyError(() => loadClusterKey({ keyFile: path }, {}), path, 'no such file');
  assert.equal(e.path, path);
  assert.equal((e.cause as NodeJS.ErrnoException).code, 'ENOENT');
});

test('keyFile that is a directory or far too large: error', (t) => {
  const dir = tempDir(t);
  assertKeyError(() => loadClusterKey({ keyFile: dir }, {}), dir, 'regular file');
  const big = keyFile(dir, 'big', Buffer.alloc(5000, 1), 0o600);
  assertKeyError(() => loadClusterKey({ keyFile: big }, {}), big, 'at most 4096 bytes');
});

test('no key at all: error saying both ways to give one', () => {
  assertKeyError(() => loadClusterKey({}, {}), 'HOLDFAST_CLUSTER_KEY', 'cluster.keyFile');
});
