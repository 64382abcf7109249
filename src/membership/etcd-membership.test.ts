/**
 * EtcdMembership against a real etcd on loopback (temporary data directory, free ports): join, leave,
 * lease expiry of a dispatcher that stopped talking, etcd restart and loss while running, etcd
 * unreachable at start (clear error, or the last-known view with a warning). Skipped, with the
 * reason, when etcd is not installed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import diagnostics_channel from 'node:diagnostics_channel';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Etcd3 } from 'etcd3';
import { readFileSync } from 'node:fs';
import { EtcdServer, etcdMissing } from '../../test/helpers/etcd.js';
import { makeCertKit } from '../../bench/lib/certs.js';
import { channels, type MembershipEvent } from '../core/diagnostics.js';
import { MembershipUnavailableError } from '../core/errors.js';
import { EtcdMembership, type EtcdMembershipOptions } from './etcd-membership.js';

const skip = etcdMissing() ?? false;

async function waitFor(what: string, cond: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

function options(etcd: EtcdServer | string, id: string, extra: Partial<EtcdMembershipOptions> = {}): EtcdMembershipOptions {
  const endpoint = typeof etcd === 'string' ? etcd : etcd.endpoint;
  return { endpoints: [endpoint], prefix: '/hf-test/', id, address: `10.0.0.${id.length}:5060`, leaseTtlS: 2, dialTimeoutMs: 1500, ...extra };
}

const ids = (m: EtcdMembership): string[] => m.view.dispatchers.map((d) => d.id);

test('etcd membership: join, leave, backends and shared config from the prefix', { skip }, async (t) => {
  const etcd = await EtcdServer.start();
  t.after(() => etcd.stop());
  const admin = new Etcd3({ hosts: `http://${etcd.endpoint}` });
  t.after(() => admin.close());
  await admin.put('/hf-test/config').value('services: []\n');
  await admin.put('/hf-test/backends/sip/b1').value('{}');
  const a = await EtcdMembership.start(options(etcd, 'd1'));
  t.after(() => a.close());
  assert.equal(a.state, 'connected');
  assert.deepEqual(ids(a), ['d1']);
  assert.equal(a.view.sharedConfig, 'services: []\n');
  assert.deepEqual([...a.view.backends.get('sip')!], ['b1']);
  const b = await EtcdMembership.start(options(etcd, 'd2'));
  await waitFor('d1 to see d2 join', () => ids(a).length === 2);
  assert.deepEqual(ids(b), ['d1', 'd2']);
  assert.equal(a.view.dispatchers[1]!.address, '10.0.0.2:5060');
  await admin.put('/hf-test/backends/sip/b2').value('{}');
  await waitFor('a backend join', () => a.view.backends.get('sip')?.size === 2);
  await admin.delete().key('/hf-test/backends/sip/b1');
  await waitFor('a backend leave', () => a.view.backends.get('sip')?.size === 1);
  await b.close(); // revokes its lease: gone at once, not after the TTL
  await waitFor('d1 to see d2 leave', () => ids(a).length === 1);
  assert.deepEqual(ids(a), ['d1']);
});

test('etcd membership: a dispatcher that stops talking to etcd leaves the others\' view when its lease expires', { skip }, async (t) => {
  const etcd = await EtcdServer.start();
  t.after(() => etcd.stop());
  const a = await EtcdMembership.start(options(etcd, 'd1'));
  t.after(() => a.close());
  const b = await EtcdMembership.start(options(etcd, 'd2'));
  await waitFor('both registered', () => ids(a).length === 2);
  b.destroy(); // as a partition or a SIGKILL: no revoke, no keepalive
  await waitFor('the lease of d2 to expire', () => ids(a).length === 1);
  assert.deepEqual(ids(a), ['d1']);
});

test('etcd membership: etcd lost while running keeps the last view, counts the loss, and re-registers after a restart', { skip }, async (t) => {
  const etcd = await EtcdServer.start();
  t.after(() => etcd.stop());
  const events: MembershipEvent[] = [];
  const fn = (e: unknown) => events.push(e as MembershipEvent);
  diagnostics_channel.subscribe(channels.membership.name, fn);
  t.after(() => diagnostics_channel.unsubscribe(channels.membership.name, fn));
  const a = await EtcdMembership.start(options(etcd, 'd1'));
  t.after(() => a.close());
  const b = await EtcdMembership.start(options(etcd, 'd2'));
  t.after(() => b.close());
  await waitFor('both registered', () => ids(a).length === 2);
  await etcd.kill();
  await waitFor('the loss to be noticed', () => a.state === 'disconnected' && a.lost >= 1);
  assert.deepEqual(ids(a), ['d1', 'd2'], 'the last view stays in force');
  assert.ok(events.some((e) => e.type === 'lost'));
  await etcd.resume();
  await waitFor('etcd to be back', () => a.state === 'connected' && b.state === 'connected', 30_000);
  // Both are registered again (their leases survived or were renewed): a newcomer sees both.
  const c = await EtcdMembership.start(options(etcd, 'd3'));
  t.after(() => c.close());
  await waitFor('d3 to see d1 and d2', () => ids(c).length === 3, 30_000);
  await waitFor('d1 to see d3', () => ids(a).length === 3, 30_000);
  assert.ok(events.some((e) => e.type === 'restored'));
});

test('etcd membership: unreachable at start is a clear error naming the endpoint', { skip }, async () => {
  const dead = '127.0.0.1:9'; // discard port: nothing answers gRPC there
  await assert.rejects(EtcdMembership.start(options(dead, 'd1', { dialTimeoutMs: 500 })), (err: unknown) => {
    assert.ok(err instanceof MembershipUnavailableError);
    assert.equal(err.code, 'HF_ERR_MEMBERSHIP_UNAVAILABLE');
    assert.match(err.message, /^cannot use etcd at 127\.0\.0\.1:9: .*no cluster\.etcd\.lastKnownFile/);
    return true;
  });
});

test('etcd membership: unreachable at start with a last-known view starts stale, then joins when etcd comes', { skip }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'hf-membership-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const lastKnownFile = join(dir, 'view.json');
  const etcd = await EtcdServer.start();
  t.after(() => etcd.stop());
  const first = await EtcdMembership.start(options(etcd, 'd1', { lastKnownFile }));
  const admin = new Etcd3({ hosts: `http://${etcd.endpoint}` });
  t.after(() => admin.close());
  await admin.put('/hf-test/backends/web/w1').value('{}');
  await waitFor('the view to be saved', () => first.view.backends.has('web'));
  await first.close();
  await etcd.kill();
  const events: MembershipEvent[] = [];
  const fn = (e: unknown) => events.push(e as MembershipEvent);
  diagnostics_channel.subscribe(channels.membership.name, fn);
  t.after(() => diagnostics_channel.unsubscribe(channels.membership.name, fn));
  const again = await EtcdMembership.start(options(etcd, 'd1', { lastKnownFile, dialTimeoutMs: 500 }));
  t.after(() => again.close());
  assert.equal(again.state, 'stale');
  assert.deepEqual([...again.view.backends.get('web')!], ['w1']);
  assert.match(events.find((e) => e.type === 'stale')?.detail ?? '', /serving the last-known view/);
  await etcd.resume();
  await waitFor('the stale dispatcher to register', () => again.state === 'connected' && ids(again).includes('d1'), 30_000);
});

test('etcd membership: a last-known file that is not a saved view is a clear error', { skip }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'hf-membership-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const lastKnownFile = join(dir, 'view.json');
  const { writeFileSync } = await import('node:fs');
  writeFileSync(lastKnownFile, 'not json');
  await assert.rejects(EtcdMembership.start(options('127.0.0.1:9', 'd1', { lastKnownFile, dialTimeoutMs: 300 })), /last-known view .* is not JSON/);
});

test('etcd membership: with etcd authentication on, the right password joins and a wrong one is a clear error', { skip }, async (t) => {
  const etcd = await EtcdServer.start();
  t.after(() => etcd.stop());
  const root = new Etcd3({ hosts: `http://${etcd.endpoint}` });
  await root.user('root').create('root-secret');
  await root.role('root').create().catch(() => {});
  await root.user('root').addRole('root');
  await root.auth.authEnable();
  root.close();
  const a = await EtcdMembership.start(options(etcd, 'd1', { auth: { username: 'root', password: 'root-secret' } }));
  t.after(() => a.close());
  assert.deepEqual(ids(a), ['d1']);
  await assert.rejects(EtcdMembership.start(options(etcd, 'd2', { auth: { username: 'root', password: 'wrong' } })), (err: unknown) => {
    assert.ok(err instanceof MembershipUnavailableError);
    assert.match(err.message, /^cannot use etcd at 127\.0\.0\.1:\d+: /);
    return true;
  });
});

test('etcd membership: over TLS with a client certificate (mTLS); without the client pair etcd refuses', { skip }, async (t) => {
  const kit = makeCertKit();
  t.after(() => kit.remove());
  const server = kit.leaf('etcd', ['127.0.0.1']);
  const client = kit.leaf('dispatcher', ['d1'], { clientAuth: true });
  const etcd = await EtcdServer.start({ cert: server.cert, key: server.key, ca: kit.ca.cert, clientCa: kit.ca.cert, clientCert: client.cert, clientKey: client.key });
  t.after(() => etcd.stop());
  const tls = { ca: readFileSync(kit.ca.cert), cert: readFileSync(client.cert), key: readFileSync(client.key) };
  const a = await EtcdMembership.start(options(etcd, 'd1', { tls }));
  t.after(() => a.close());
  assert.deepEqual(ids(a), ['d1']);
  await assert.rejects(EtcdMembership.start(options(etcd, 'd2', { tls: { ca: tls.ca }, dialTimeoutMs: 800 })), MembershipUnavailableError);
});
