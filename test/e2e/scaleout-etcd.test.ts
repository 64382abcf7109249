/**
 * @module Scale-out end to end (issue 20): real `holdfast dispatcher` processes with
 * `cluster.membership: etcd` on a real etcd (loopback, temporary data directory, free ports). The
 * services come from the shared configuration in etcd; every dispatcher maps a flow to the same
 * backend (Maglev); a backend whose key leaves etcd is drained; a SIGKILLed dispatcher leaves the
 * others' view when its lease expires; etcd killed while running: the dispatchers keep serving with
 * the last view and count the loss, then register again when etcd is back. Skipped with the reason
 * when etcd is not installed.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import http from 'node:http';
import { test, type TestContext } from 'node:test';
import { Etcd3 } from 'etcd3';
import { startHaDispatcher, type HaDispatcher } from '../../bench/lib/ha-cluster.js';
import { makeTempDir, removeTempDir } from '../../bench/lib/procs.js';
import { EtcdServer, etcdMissing } from '../helpers/etcd.js';
import { parseReply, startUdpEcho, type UdpEcho } from '../helpers/udp-echo.js';

const skip = etcdMissing() ?? false;
const PREFIX = '/hf-e2e/';

async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function get(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http.get(url, { agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (s: string) => (body += s));
      res.on('end', () => resolve(body));
    }).on('error', reject);
  });
}

function serviceAddress(d: HaDispatcher): { host: string; port: number } {
  const ready = JSON.parse(d.proc.readyMatch![1]!) as { services: Record<string, string> };
  const at = ready.services['udp']!;
  const i = at.lastIndexOf(':');
  return { host: at.slice(0, i), port: Number(at.slice(i + 1)) };
}

/** Sends one datagram from `socket` to `d` and returns the id of the backend that echoed it. */
function ask(socket: dgram.Socket, d: HaDispatcher, payload: string): Promise<string> {
  const { host, port } = serviceAddress(d);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no reply from ${host}:${port}`)), 3000);
    socket.once('message', (msg) => {
      clearTimeout(timer);
      resolve(parseReply(msg)?.id ?? '?');
    });
    socket.send(payload, port, host);
  });
}

async function clientSocket(t: TestContext): Promise<dgram.Socket> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  t.after(() => s.close());
  return s;
}

/** The shared configuration: the services every dispatcher serves (listen port 0: each its own). */
function sharedConfig(backends: UdpEcho[]): string {
  return JSON.stringify({
    services: [
      {
        name: 'udp',
        protocol: 'udp',
        listen: '127.0.0.1:0',
        balancer: 'maglev',
        health: { probe: { type: 'udp' } },
        backends: backends.map((b) => ({ id: b.id, address: `127.0.0.1:${b.port}` })),
      },
    ],
  });
}

async function cluster(t: TestContext, etcd: EtcdServer, ids: string[], backends: UdpEcho[]): Promise<HaDispatcher[]> {
  const admin = new Etcd3({ hosts: `http://${etcd.endpoint}` });
  t.after(() => admin.close());
  await admin.put(`${PREFIX}config`).value(sharedConfig(backends));
  for (const b of backends) await admin.put(`${PREFIX}backends/udp/${b.id}`).value('{}');
  const dir = makeTempDir('holdfast-scaleout-e2e');
  const key = randomBytes(32);
  const procs: HaDispatcher[] = [];
  t.after(async () => {
    await Promise.all(procs.map((p) => p.proc.stop()));
    removeTempDir(dir);
  });
  for (const [i, id] of ids.entries()) {
    const local = {
      version: 1,
      logging: { level: 'info', format: 'json' },
      admin: { enabled: true, listen: '127.0.0.1:0' },
      cluster: { membership: 'etcd', etcd: { endpoints: [etcd.endpoint], prefix: PREFIX, id, address: `127.0.0.1:${5000 + i}`, leaseTtlS: 2 } },
      // The local fallback, replaced by the shared services.
      services: [{ name: 'placeholder', protocol: 'udp', listen: '127.0.0.1:9', backends: [{ id: 'none', address: '127.0.0.1:9' }] }],
    };
    procs.push(await startHaDispatcher({ name: `scaleout-${id}`, id: i + 1, dir, key, config: JSON.stringify(local) }));
  }
  return procs;
}

async function registered(etcd: EtcdServer): Promise<string[]> {
  const c = new Etcd3({ hosts: `http://${etcd.endpoint}` });
  try {
    return Object.keys(await c.getAll().prefix(`${PREFIX}dispatchers/`).strings()).map((k) => k.slice(`${PREFIX}dispatchers/`.length)).sort();
  } finally {
    c.close();
  }
}

test('scale-out on etcd: shared services, the same backend for a flow on every dispatcher, a backend leaving etcd drained, a killed dispatcher expires', { skip }, async (t) => {
  const etcd = await EtcdServer.start();
  t.after(() => etcd.stop());
  const backends: UdpEcho[] = [];
  for (const id of ['b0', 'b1', 'b2', 'b3']) {
    backends.push(await startUdpEcho(t, id));
  }
  const [d1, d2] = await cluster(t, etcd, ['d1', 'd2'], backends);
  assert.deepEqual(await registered(etcd), ['d1', 'd2']);
  // The services came from etcd: the placeholder of the local file is not served.
  assert.deepEqual(Object.keys((JSON.parse(d1!.proc.readyMatch![1]!) as { services: object }).services), ['udp']);

  // 24 client flows, each sent to both dispatchers: both pick the same backend for it.
  const clients = await Promise.all(Array.from({ length: 24 }, () => clientSocket(t)));
  const seen = new Set<string>();
  for (const c of clients) {
    const one = await ask(c, d1!, 'hello');
    const two = await ask(c, d2!, 'hello');
    assert.equal(two, one, 'two dispatchers chose different backends for one flow');
    seen.add(one);
  }
  assert.ok(seen.size >= 3, `flows reached only ${[...seen].join(',')}`);

  // b3 leaves etcd: both dispatchers drain it (no new flows), the others stay.
  const admin = new Etcd3({ hosts: `http://${etcd.endpoint}` });
  t.after(() => admin.close());
  await admin.delete().key(`${PREFIX}backends/udp/b3`);
  for (const d of [d1!, d2!]) {
    await waitFor('b3 drained', async () => (await d.status()).services[0]!.backends.find((b) => b.id === 'b3')?.state === 'draining');
  }
  for (const _ of Array.from({ length: 12 })) {
    const c = await clientSocket(t);
    assert.notEqual(await ask(c, d1!, 'new'), 'b3');
  }

  // d2 SIGKILLed: no revoke; etcd expires its lease and d1 sees it leave.
  await d2!.kill('SIGKILL');
  await waitFor('d2 to leave etcd', async () => (await registered(etcd)).join() === 'd1');
  await waitFor('d1 to count one dispatcher', async () => /^holdfast_membership_dispatchers 1$/m.test(await get(`http://${d1!.admin}/metrics`)));
});

test('scale-out on etcd: etcd lost while running keeps the dispatcher serving, counted; it registers again when etcd is back', { skip }, async (t) => {
  const etcd = await EtcdServer.start();
  t.after(() => etcd.stop());
  const backends: UdpEcho[] = [];
  for (const id of ['b0', 'b1']) {
    backends.push(await startUdpEcho(t, id));
  }
  const [d1] = await cluster(t, etcd, ['d1'], backends);
  const c = await clientSocket(t);
  const before = await ask(c, d1!, 'x');
  await etcd.kill();
  await waitFor('the loss to be counted', async () => /^holdfast_membership_etcd_lost_total [1-9]/m.test(await get(`http://${d1!.admin}/metrics`)));
  assert.equal(await ask(c, d1!, 'y'), before, 'the flow stays on its backend while etcd is away');
  const fresh = await clientSocket(t);
  assert.match(await ask(fresh, d1!, 'z'), /^b[01]$/, 'new flows are served with the last view');
  await etcd.resume();
  await waitFor('d1 registered again', async () => (await registered(etcd)).join() === 'd1', 30_000);
});

test('scale-out on etcd: a change of the shared configuration is applied live (a backend added serves new flows), a bad one changes nothing, a SIGHUP keeps the shared services', { skip }, async (t) => {
  const etcd = await EtcdServer.start();
  t.after(() => etcd.stop());
  const backends: UdpEcho[] = [];
  for (const id of ['b0', 'b1', 'b2']) backends.push(await startUdpEcho(t, id));
  const [d1] = await cluster(t, etcd, ['d1'], backends.slice(0, 2));
  const admin = new Etcd3({ hosts: `http://${etcd.endpoint}` });
  t.after(() => admin.close());
  const ids = async (): Promise<string[]> => (await d1!.status()).services[0]!.backends.map((b) => `${b.id}:${b.state}`).sort();
  const old = await clientSocket(t);
  const pinned = await ask(old, d1!, 'before');

  // b2 joins the shared configuration and etcd's member list: added live, no restart.
  await admin.put(`${PREFIX}backends/udp/b2`).value('{}');
  await admin.put(`${PREFIX}config`).value(sharedConfig(backends));
  await waitFor('b2 added and up', async () => (await ids()).includes('b2:up'));
  const reached = new Set<string>();
  for (let i = 0; i < 24 && !reached.has('b2'); i++) reached.add(await ask(await clientSocket(t), d1!, 'new'));
  assert.ok(reached.has('b2'), `new flows reached only ${[...reached].join(',')}`);
  assert.equal(await ask(old, d1!, 'after'), pinned, 'an established flow keeps its backend across the reload');
  assert.match(d1!.proc.output(), /"trigger":"etcd"[^\n]*configuration reloaded/);

  // SIGHUP reads the local file again (its placeholder service): the services stay etcd's.
  d1!.proc.child.kill('SIGHUP');
  await waitFor('the SIGHUP reload', () => /"trigger":"reload"[^\n]*configuration reloaded/.test(d1!.proc.output()));
  const line = d1!.proc.output().split('\n').find((l) => /"trigger":"reload"[^\n]*configuration reloaded/.test(l))!;
  assert.deepEqual((JSON.parse(line) as { restartRequired: unknown[] }).restartRequired, [], line);
  assert.deepEqual(await ids(), ['b0:up', 'b1:up', 'b2:up']);

  // A bad shared configuration: refused, named, nothing changed.
  await admin.put(`${PREFIX}config`).value('services: 5');
  await waitFor('the refusal', () => /"trigger":"etcd"[^\n]*reload refused/.test(d1!.proc.output()));
  assert.match(d1!.proc.output(), /"issues":\["services: expected an array, received 5"\]/);
  assert.deepEqual(await ids(), ['b0:up', 'b1:up', 'b2:up']);
  assert.equal(await ask(old, d1!, 'still'), pinned);
});
