import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { FakeClock } from '../core/clock.js';
import { HanetInterfaceError } from '../core/errors.js';
import { parseAgentConfig } from '../config/load.js';
import { FakeHostSystem } from './host-system.fake.js';
import { startHanet } from './hanet.js';

function config(dir: string) {
  const c = parseAgentConfig(`agent: { id: 1, dispatchers: ["127.0.0.1:7600"] }
watchdog: { type: none }
hanet:
  address: 10.0.0.21/24
  interfaces:
    - { name: pub0, role: public, speedMbps: 1000 }
    - { name: priv0, role: private, speedMbps: 1000 }
  listen: 127.0.0.1:0
  siblings: [{ id: 2, address: "127.0.0.1:9", serviceAddress: 10.0.0.22, via: priv0, localAddress: 10.99.0.1 }]
  stateFile: ${join(dir, 'state.json')}
`);
  return c.hanet!;
}

test('a configuration naming a missing interface is HF_ERR_HANET_INTERFACE at start, before any change', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'hf-hanet-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const sys = new FakeHostSystem(['pub0']);
  await assert.rejects(
    startHanet(config(dir), { host: 1, key: randomBytes(32), clock: new FakeClock(), sys }),
    (err: unknown) => err instanceof HanetInterfaceError && err.code === 'HF_ERR_HANET_INTERFACE' && /priv0: no such interface/.test(err.message),
  );
  assert.deepEqual(sys.ipLog, []);
});

test('start: the service address on the best GOOD interface, its rule and routes; close undoes them', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'hf-hanet-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const sys = new FakeHostSystem(['pub0', 'priv0']);
  const h = await startHanet(config(dir), { host: 1, key: randomBytes(32), clock: new FakeClock(), sys });
  assert.equal(h.status().active, 'pub0');
  assert.deepEqual(sys.ipLog, [
    'rule add from 10.0.0.21 lookup 218 priority 2180',
    'addr replace 10.0.0.21/32 dev pub0',
    'route flush table 218',
    'route replace 10.0.0.0/24 dev pub0 src 10.0.0.21 proto 218 table 218',
  ]);
  assert.deepEqual(sys.garps, ['pub0 10.0.0.21 x3']);
  assert.equal(h.viaSibling, false);
  sys.ipLog.length = 0;
  await h.close();
  assert.deepEqual(sys.ipLog, ['route flush table 218', 'addr del 10.0.0.21/32 dev pub0', 'rule del from 10.0.0.21 lookup 218 priority 2180']);
});
