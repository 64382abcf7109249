import { test } from 'node:test';
import assert from 'node:assert/strict';
import diagnostics_channel from 'node:diagnostics_channel';
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { channels } from '../core/diagnostics.js';
import { LogFile } from './log-file.js';
import { createLogOutput } from './log.js';

function tempDir(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'holdfast-log-file-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('LogFile appends lines; after a logrotate-style rename, reopen() sends new lines to a new file at the path', (t) => {
  const path = join(tempDir(t), 'holdfast.log');
  const f = new LogFile(path);
  t.after(() => f.close());
  assert.equal(f.write('one\n'), true);
  renameSync(path, `${path}.1`);
  assert.equal(f.write('two\n'), true, 'before the reopen, lines go on to the renamed file');
  assert.equal(f.reopen(), null);
  assert.equal(f.write('three\n'), true);
  assert.equal(readFileSync(`${path}.1`, 'utf8'), 'one\ntwo\n');
  assert.equal(readFileSync(path, 'utf8'), 'three\n');
  assert.equal(f.dropped, 0);
});

test('LogFile on a full device (/dev/full): every line is dropped and counted on holdfast:log:drop, nothing throws', (t) => {
  if (!existsSync('/dev/full')) return t.skip('no /dev/full on this machine');
  const seen: string[] = [];
  const onDrop = (m: unknown): void => void seen.push((m as { reason: string }).reason);
  diagnostics_channel.subscribe(channels.logDrop.name, onDrop);
  t.after(() => diagnostics_channel.unsubscribe(channels.logDrop.name, onDrop));
  const f = new LogFile('/dev/full');
  t.after(() => f.close());
  for (let i = 0; i < 100; i++) assert.equal(f.write(`line ${i}\n`), false);
  assert.equal(f.dropped, 100);
  assert.equal(f.lastError, 'ENOSPC');
  assert.deepEqual(new Set(seen), new Set(['ENOSPC']));
  assert.equal(seen.length, 100);
});

test('LogFile: a reopen that fails (directory gone) keeps the old file and says why; a closed file drops lines', (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'sub-holdfast.log');
  const f = new LogFile(path);
  rmSync(path);
  rmSync(dir, { recursive: true, force: true });
  assert.equal(f.reopen(), 'ENOENT');
  assert.equal(f.write('still written to the unlinked file\n'), true);
  f.close();
  assert.equal(f.write('after close\n'), false);
  assert.equal(f.dropped, 1);
});

test('createLogOutput with logging.file: pino writes JSON lines to the file; pretty format too', (t) => {
  const dir = tempDir(t);
  const json = createLogOutput({ level: 'info', format: 'json', file: join(dir, 'j.log') });
  json.logger.info({ a: 1 }, 'hello');
  json.file!.close();
  const line = JSON.parse(readFileSync(join(dir, 'j.log'), 'utf8').trim()) as { msg: string; a: number };
  assert.deepEqual([line.msg, line.a], ['hello', 1]);
  const pretty = createLogOutput({ level: 'info', format: 'pretty', file: join(dir, 'p.log') });
  pretty.logger.info('pretty hello');
  pretty.file!.close();
  assert.match(readFileSync(join(dir, 'p.log'), 'utf8'), /INFO.*pretty hello/);
  assert.throws(() => createLogOutput({ level: 'info', format: 'json', file: join(dir, 'no', 'such', 'dir.log') }), { code: 'ENOENT' });
});
