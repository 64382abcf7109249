import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as errors from './errors.js';

const root = new URL('../../../', import.meta.url);

test('every error code is documented in the README', () => {
  const source = readFileSync(new URL('src/core/errors.ts', root), 'utf8');
  const codes = [...source.matchAll(/readonly code = '(HF_ERR_[A-Z_]+)'/g)].map((m) => m[1]!);
  assert.ok(codes.length >= 5, `found ${codes.length} codes`);
  assert.equal(new Set(codes).size, codes.length, 'codes are unique');
  const readme = readFileSync(new URL('README.md', root), 'utf8');
  const missing = codes.filter((c) => !readme.includes(`\`${c}\``));
  assert.deepEqual(missing, [], 'codes missing from README.md');
});

test('errors carry their code, name and cause', () => {
  const cause = new Error('EADDRINUSE');
  const e = new errors.ListenError('127.0.0.1:80', { cause });
  assert.equal(e.code, 'HF_ERR_LISTEN');
  assert.equal(e.name, 'ListenError');
  assert.equal(e.cause, cause);
  assert.ok(e instanceof errors.HoldfastError);
  const c = new errors.ConfigInvalidError(['a: x', 'b: y']);
  assert.equal(c.message, 'invalid configuration:\n  a: x\n  b: y');
});
