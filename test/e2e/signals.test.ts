/**
 * @module Signals an operator sends (issue 21): SIGHUP, the conventional "reload", must not kill a
 * `holdfast dispatcher` or a `holdfast agent` (its default action would, at once, with no log line
 * and no drain). The dispatcher reloads its (unchanged) file live, the agent logs and ignores it: the
 * processes keep running and the dispatcher keeps serving on the connections it already had and on
 * new ones (reload.test.ts tests a reload that changes things).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { freePort } from '../helpers/scripted-backend.js';
import { freeUdpPort, get, newCluster, startAgent, startBackend, startDispatcher } from '../helpers/cluster-procs.js';

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
