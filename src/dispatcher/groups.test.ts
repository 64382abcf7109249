/**
 * The groups' election ↔ takeover wiring (groups.ts): a master whose VIP takeover fails must not
 * stay master serving nothing; it resigns so that a backup takes over, and alone it becomes master
 * again later and retries. Real election transport and real listeners on a loopback VIP; the
 * election's timers run on a FakeClock.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { FakeClock } from '../core/clock.js';
import type { Config } from '../config/schema.js';
import { groupSchema } from '../replication/replication-schema.js';
import { masterDownMs } from '../replication/election.js';
import type { ElectionStateEvent } from '../core/diagnostics.js';
import type { ReplicatedService } from '../replication/state-replicator.js';
import { startGroups, type VipBind } from './groups.js';

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

async function freePort(host: string): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, host, resolve));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

test('a master whose VIP bind fails (EACCES, not retried) resigns to backup, and takes the VIP once the bind succeeds', async (t) => {
  const vip = '127.0.0.77';
  const port = await freePort(vip);
  const listen = await freePort('127.0.0.1');
  const peer = await freePort('127.0.0.1');
  const intervalMs = 20;
  const priority = 100;
  const group = groupSchema.parse({
    name: 'g-fail',
    id: 77,
    vip,
    priority,
    advertIntervalMs: intervalMs,
    listen: `127.0.0.1:${listen}`,
    peers: [`127.0.0.1:${peer}`],
    services: ['svc'],
    replicateState: false,
  });
  const config = { dispatcher: { id: 1 }, groups: [group] } as unknown as Config;
  let failures = 1;
  let binds = 0;
  const servers: net.Server[] = [];
  const bind: VipBind = async (address) => {
    binds++;
    if (failures > 0) {
      failures--;
      throw Object.assign(new Error(`listen EACCES: permission denied ${address}:${port}`), { code: 'EACCES' });
    }
    const s = net.createServer((c) => c.end('hi'));
    servers.push(s);
    await new Promise<void>((resolve, reject) => s.once('error', reject).listen(port, address, resolve));
    return () => new Promise<void>((resolve) => s.close(() => resolve()));
  };
  const events: Pick<ElectionStateEvent, 'type' | 'reason'>[] = [];
  const onEvent = (m: unknown): void => {
    const e = m as ElectionStateEvent;
    if (e.group === 'g-fail') events.push({ type: e.type, reason: e.reason });
  };
  subscribe('holdfast:election:state', onEvent);
  t.after(() => unsubscribe('holdfast:election:state', onEvent));
  const clock = new FakeClock(1_000_000);
  const groups = await startGroups(config, () => ({ binds: [bind], state: {} as ReplicatedService }), Buffer.alloc(32, 7), clock);
  t.after(async () => {
    const closing = groups.close();
    let done = false;
    void closing.finally(() => (done = true));
    while (!done) {
      clock.advance(5);
      await tick();
    }
    for (const s of servers) s.close();
  });

  // Alone in the group: master after one Master_Down_Interval (RFC 5798 §6.1: 3 × 20 + 156 × 20 / 256 ms).
  const downMs = masterDownMs(priority, intervalMs);
  assert.equal(downMs, 60 + (156 * 20) / 256);
  clock.advance(Math.ceil(downMs));
  for (let i = 0; i < 5; i++) await tick();
  assert.equal(binds, 1);
  assert.deepEqual(events, [
    { type: 'backup', reason: 'startup' },
    { type: 'master', reason: 'no-master' },
    { type: 'backup', reason: 'resigned' },
  ]);
  assert.equal(groups.status()[0]!.state, 'backup');
  assert.equal(groups.status()[0]!.vipHeld, false);

  // Nobody else took over: after another Master_Down_Interval it is master again, and this time the bind works.
  clock.advance(Math.ceil(downMs));
  for (let i = 0; i < 5; i++) await tick();
  assert.equal(binds, 2);
  assert.equal(events.at(-1)?.type, 'master');
  assert.equal(groups.status()[0]!.state, 'master');
  assert.equal(groups.status()[0]!.vipHeld, true);
  const reply = await new Promise<string>((resolve, reject) => {
    const c = net.connect(port, vip);
    let got = '';
    c.on('data', (d) => (got += d)).on('end', () => resolve(got)).on('error', reject);
  });
  assert.equal(reply, 'hi');
});
