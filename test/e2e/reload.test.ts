/**
 * @module Live reload of a real `holdfast dispatcher` process (issue 14): SIGHUP reloads its
 * --config file, `holdfast reload` asks it to through the admin API with the bearer token from the
 * file's admin.tokenFile, and a bad file changes nothing either way (its issues name their paths).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort } from '../helpers/scripted-backend.js';
import { get, newCluster, ROOT, startBackend, startDispatcher } from '../helpers/cluster-procs.js';

const TOKEN = 'reload-test-token-0123456789';
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const childEnv = { ...process.env, ...env };
    if (env['HOLDFAST_ADMIN_TOKEN'] === undefined) delete childEnv['HOLDFAST_ADMIN_TOKEN'];
    execFile(process.execPath, [join(ROOT, 'bin', 'holdfast.js'), ...args], { env: childEnv, timeout: 20_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

test('SIGHUP and `holdfast reload` on a real dispatcher: backends swapped live, a bad file changes nothing', { timeout: 60_000 }, async (t) => {
  const c = newCluster(t);
  const [p1, p2, adminPort] = [await freePort(), await freePort(), await freePort()];
  await startBackend(t, c, { id: 'b1', port: p1 });
  await startBackend(t, c, { id: 'b2', port: p2 });
  const tokenFile = join(c.dir, 'admin-token');
  writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
  const file = join(c.dir, 'dispatcher.yaml');
  const yaml = (backends: string, listen = "'127.0.0.1:0'") => `version: 1
logging: { level: info, format: json }
admin: { listen: '127.0.0.1:${adminPort}', tokenFile: '${tokenFile}' }
services:
  - name: web
    protocol: http
    listen: ${listen}
    health: { probe: { type: tcp, intervalMs: 100 } }
    backends:
${backends}
`;
  const d = await startDispatcher(t, c, yaml(`      - { id: b1, address: '127.0.0.1:${p1}' }`));
  const url = `http://${d.services['web']!}/`;
  assert.equal((await get(url)).body, 'b1');
  const ids = async (): Promise<string[]> => {
    const res = await fetch(`http://127.0.0.1:${adminPort}/api/v1/services/web`, { headers: { authorization: `Bearer ${TOKEN}` } });
    return ((await res.json()) as { backends: { id: string }[] }).backends.map((b) => b.id);
  };
  const logged = async (re: RegExp, after: number): Promise<void> => {
    for (let i = 0; i < 200 && !re.test(d.proc.output().slice(after)); i++) await sleep(25);
    assert.match(d.proc.output().slice(after), re);
  };

  // SIGHUP: b1 removed, b2 added.
  writeFileSync(file, yaml(`      - { id: b2, address: '127.0.0.1:${p2}' }`));
  let mark = d.proc.output().length;
  d.proc.child.kill('SIGHUP');
  await logged(/"msg":"configuration reloaded"/, mark);
  assert.match(d.proc.output().slice(mark), /"added":\["b2"\],"removed":\["b1"\]/);
  assert.deepEqual(await ids(), ['b2']);
  for (let i = 0; i < 4; i++) assert.equal((await get(url)).body, 'b2');

  // SIGHUP with a bad file: refused, logged with its paths, nothing changed.
  writeFileSync(file, yaml(`      - { id: b1, address: 'nowhere' }`, '8080'));
  mark = d.proc.output().length;
  d.proc.child.kill('SIGHUP');
  await logged(/reload refused: the new configuration is invalid; nothing changed/, mark);
  assert.match(d.proc.output().slice(mark), /services\[0\]\.listen: expected host:port/);
  assert.match(d.proc.output().slice(mark), /services\[0\]\.backends\[0\]\.address/);
  assert.deepEqual(await ids(), ['b2']);
  assert.equal((await get(url)).body, 'b2');

  // `holdfast reload` with the same bad file: every issue with its path, exit 1, nothing sent.
  const bad = await cli(['reload', '--config', file]);
  assert.equal(bad.code, 1, bad.stderr);
  assert.match(bad.stderr, /services\[0\]\.listen: expected host:port, received 8080/);
  assert.match(bad.stderr, /services\[0\]\.backends\[0\]\.address: expected host:port, received "nowhere"/);

  // `holdfast reload` with a good file: through the admin API, the token from admin.tokenFile.
  writeFileSync(file, yaml(`      - { id: b1, address: '127.0.0.1:${p1}', weight: 2 }\n      - { id: b2, address: '127.0.0.1:${p2}' }`));
  const wrong = await cli(['reload', '--config', file], { HOLDFAST_ADMIN_TOKEN: 'not-the-token-0123456789' });
  assert.equal(wrong.code, 1);
  assert.match(wrong.stderr, /answered 403/);
  assert.deepEqual(await ids(), ['b2']);
  const ok = await cli(['reload', '--config', file]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /^web: added b1$/m);
  assert.deepEqual(await ids(), ['b2', 'b1']);
  const seen = new Set<string>();
  for (let i = 0; i < 6; i++) seen.add((await get(url)).body);
  assert.deepEqual(seen, new Set(['b1', 'b2']));

  // Nothing left to change; what cannot change live is printed.
  writeFileSync(file, yaml(`      - { id: b1, address: '127.0.0.1:${p1}', weight: 2 }\n      - { id: b2, address: '127.0.0.1:${p2}' }`).replace('logging: { level: info', 'logging: { level: debug'));
  const same = await cli(['reload', '--config', file]);
  assert.equal(same.code, 0, same.stderr);
  assert.match(same.stdout, /nothing to change live/);
  assert.match(same.stdout, /needs a restart: logging: logging changes only with a restart/);
  assert.equal(d.proc.child.exitCode, null);
});
