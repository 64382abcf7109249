/**
 * @module The replicated dispatcher end to end in Linux takeover mode (issue 7's "done when"): network
 * namespaces of the test's own — a switch namespace holding a bridge, and one namespace each for a
 * client, two `holdfast dispatcher` processes and a UDP echo backend, each joined to the bridge by a
 * veth pair. The dispatchers' group VIP carries a UDP service in front of the echo; the VIP is added
 * to the master's interface (`ip addr add`) and announced by gratuitous ARP (src/takeover/linux.ts).
 * Checks: one master at a time; an nftables partition between the dispatchers makes both master
 * (VRRP does that) and, healed, the epoch rule leaves one master and the VIP on one interface; the
 * client reaches the VIP through it; SIGKILL of the master moves the VIP and the client's neighbour
 * cache learns the new MAC from the gratuitous ARP; the killed dispatcher restarted rejoins as
 * backup. Root only (ip netns, nft, arping): skipped with the reason otherwise. Everything it creates
 * (namespaces, hence the bridge, veths and nft rules; processes) is removed in t.after.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { haConfig, startHaDispatcher, type GroupEvent, type HaDispatcher } from '../../bench/lib/ha-cluster.js';
import { makeTempDir, removeTempDir, startProcess, which, type Proc } from '../../bench/lib/procs.js';
import { makeLan, type Lan as NetnsLan } from '../../bench/lib/netns-lan.js';
import { run } from '../helpers/cluster-procs.js';

/** 50 ms adverts: master down after ~170 ms; calm enough not to flap on two shared cores. */
const ADVERT_INTERVAL_MS = 50;
const SERVICE_PORT = 5000;
const ECHO_PORT = 7000;
const ELECTION_PORT = 7700;
/** Bounds for things that take a few hundred ms: generous for a busy machine. */
const EVENT_TIMEOUT_MS = 5_000;

async function must(command: string, ...args: string[]): Promise<string> {
  const r = await run(command, args);
  if (r.code !== 0) throw new Error(`${command} ${args.join(' ')}: exit ${r.code}: ${r.stderr.trim()}`);
  return r.stdout;
}

interface Node {
  ns: string;
  iface: string;
  ip: string;
  mac: string;
}

interface Lan {
  subnet: string;
  vip: string;
  client: Node;
  d1: Node;
  d2: Node;
  backend: Node;
}

function tools(): string | null {
  if (process.getuid?.() !== 0) return 'needs root (ip netns, nft, arping)';
  for (const cmd of ['ip', 'nft', 'arping']) if (which(cmd) === null) return `${cmd} is not installed`;
  return null;
}

/**
 * The switch namespace with its bridge, and four node namespaces joined to it; all deleted when the
 * test ends (deleting a namespace deletes its interfaces, hence the bridge, the veths and the nft
 * tables in it) once `procs` (the processes the test starts in them) are stopped. `{ skip }` when
 * this machine cannot make them.
 */
async function lan(t: TestContext, procs: Proc[]): Promise<Lan | { skip: string }> {
  const missing = tools();
  if (missing) return { skip: missing };
  let made: NetnsLan;
  try {
    made = await makeLan({ c: 10, d1: 1, d2: 2, b: 20 });
  } catch (err) {
    return { skip: `cannot make network namespaces: ${(err as Error).message}` };
  }
  t.after(async () => {
    // The processes inside first: a deleted namespace lives on (with its interfaces) while one runs in it.
    await Promise.allSettled(procs.map((p) => p.stop()));
    await made.close();
  });
  const node = async (role: string): Promise<Node> => {
    const { ns, iface, ip } = made.nodes[role]!;
    const mac = /link\/ether ([0-9a-f:]{17})/.exec(await must('ip', '-n', ns, '-o', 'link', 'show', iface))?.[1];
    assert.ok(mac, `MAC of ${iface}`);
    return { ns, iface, ip, mac };
  };
  const client = await node('c');
  // The client creates neighbour entries from gratuitous ARPs (by default it only updates existing ones).
  await must('ip', 'netns', 'exec', client.ns, 'sysctl', '-qw', `net.ipv4.conf.${client.iface}.arp_accept=1`);
  return { subnet: made.subnet, vip: `${made.subnet}.100`, client, d1: await node('d1'), d2: await node('d2'), backend: await node('b') };
}

/** Whether `node`'s interface carries the VIP now. */
async function holdsVip(l: Lan, n: Node): Promise<boolean> {
  const out = await must('ip', '-n', n.ns, '-4', '-o', 'addr', 'show', 'dev', n.iface);
  return out.includes(` ${l.vip}/24 `);
}

/** The client's neighbour-cache MAC for the VIP, or null. */
async function clientNeighbour(l: Lan): Promise<string | null> {
  const out = await must('ip', '-n', l.client.ns, 'neigh', 'show', l.vip, 'dev', l.client.iface);
  return /lladdr ([0-9a-f:]{17})/.exec(out)?.[1] ?? null;
}

/**
 * From the client namespace: a datagram to VIP:port every 50 ms until one comes back echoed from
 * VIP:port (through the dispatcher and the echo backend), at most `timeoutMs`. True when one did.
 */
async function reachesVip(l: Lan, timeoutMs = 3_000): Promise<boolean> {
  const script = `const s = require('dgram').createSocket('udp4');
const token = 'probe-' + process.pid;
let n = 0;
s.on('message', (m, r) => { if (m.toString().startsWith(token) && r.address === '${l.vip}' && r.port === ${SERVICE_PORT}) { console.log('echoed'); process.exit(0); } });
const send = () => s.send(token + '-' + n++, ${SERVICE_PORT}, '${l.vip}');
s.bind(0, () => { send(); setInterval(send, 50); });
setTimeout(() => { console.log('silent'); process.exit(0); }, ${timeoutMs});`;
  return (await must('ip', 'netns', 'exec', l.client.ns, process.execPath, '-e', script)).trim() === 'echoed';
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs = EVENT_TIMEOUT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** State events after index `from`. */
const statesSince = (d: HaDispatcher, from: number): GroupEvent[] => d.events.slice(from).filter((e) => e.what === 'master' || e.what === 'backup');

test('linux takeover in namespaces: one master; partition and heal → one master, VIP on one interface; SIGKILL → VIP moves by gratuitous ARP; restarted → backup', { timeout: 60_000 }, async (t) => {
  const procs: Proc[] = [];
  const l = await lan(t, procs);
  if ('skip' in l) return void t.skip(l.skip);
  const dir = makeTempDir('holdfast-ha-netns');
  t.after(() => removeTempDir(dir));
  const key = randomBytes(32);

  const echo = await startProcess({
    name: 'echo',
    command: 'ip',
    args: [
      'netns', 'exec', l.backend.ns, process.execPath, '-e',
      `const s = require('dgram').createSocket('udp4'); s.on('message', (m, r) => s.send(m, r.port, r.address)); s.bind(${ECHO_PORT}, '${l.backend.ip}', () => console.log('listening'));`,
    ],
    readyLine: /^listening$/m,
  });
  procs.push(echo);

  const config = (me: Node, peer: Node, id: number, priority: number): string =>
    haConfig({
      id,
      priority,
      // Off: after the heal the newer epoch keeps the VIP, and the restarted dispatcher stays backup.
      preempt: false,
      advertIntervalMs: ADVERT_INTERVAL_MS,
      listen: `${me.ip}:${ELECTION_PORT}`,
      peers: [`${peer.ip}:${ELECTION_PORT}`],
      vip: `${l.vip}/24`,
      takeover: 'linux',
      interface: me.iface,
      services: [
        {
          name: 'echo',
          protocol: 'udp',
          listen: `${l.vip}:${SERVICE_PORT}`,
          health: { probe: { type: 'udp' } },
          backends: [{ id: 'echo', address: `${l.backend.ip}:${ECHO_PORT}` }],
        },
      ],
    });
  const start = async (name: string, me: Node, peer: Node, id: number, priority: number): Promise<HaDispatcher> => {
    const d = await startHaDispatcher({ name, id, dir, key, netns: me.ns, config: config(me, peer, id, priority) });
    procs.push(d.proc);
    return d;
  };
  const holders = async (): Promise<string[]> => {
    const out: string[] = [];
    if (await holdsVip(l, l.d1)) out.push('d1');
    if (await holdsVip(l, l.d2)) out.push('d2');
    return out;
  };

  // 1. d1 (priority 200) first: master; d2 (100) joins as backup and stays there.
  const d1 = await start('d1', l.d1, l.d2, 1, 200);
  await d1.waitFor('taken', 0, EVENT_TIMEOUT_MS);
  const d2 = await start('d2', l.d2, l.d1, 2, 100);
  await d2.waitFor('backup', 0, EVENT_TIMEOUT_MS);
  await sleep(10 * ADVERT_INTERVAL_MS);
  assert.deepEqual(statesSince(d2, 0).map((e) => e.what), ['backup'], 'd2 hears d1 and stays backup');
  assert.deepEqual(await holders(), ['d1']);
  assert.ok(await reachesVip(l), 'the client reaches the VIP through d1');
  assert.equal(await clientNeighbour(l), l.d1.mac);
  const e1 = d1.events.find((e) => e.what === 'master')!.epoch!;

  // 2. Partition: d2's namespace drops everything from and to d1 (adverts and replication alike).
  const m1 = d1.events.length;
  const m2 = d2.events.length;
  const rules = `table inet hfpart {
  chain in { type filter hook input priority 0; policy accept; ip saddr ${l.d1.ip} drop; }
  chain out { type filter hook output priority 0; policy accept; ip daddr ${l.d1.ip} drop; }
}`;
  const file = join(dir, 'partition.nft');
  writeFileSync(file, rules);
  await must('ip', 'netns', 'exec', l.d2.ns, 'nft', '-f', file);
  const d2Master = await d2.waitFor('master', m2, EVENT_TIMEOUT_MS);
  assert.equal(d2Master.reason, 'master-down');
  assert.equal(d2Master.epoch, e1 + 1, 'the takeover grows the epoch');
  await d2.waitFor('taken', m2, EVENT_TIMEOUT_MS);
  // Both masters, both holding the VIP: expected while they cannot hear each other (VRRP).
  assert.equal(d1.state(), 'master');
  assert.deepEqual(await holders(), ['d1', 'd2']);

  // 3. Heal: d1 hears the newer epoch and steps down; one master, one interface with the VIP.
  await must('ip', 'netns', 'exec', l.d2.ns, 'nft', 'delete', 'table', 'inet', 'hfpart');
  const down = await d1.waitFor('backup', m1, EVENT_TIMEOUT_MS);
  assert.equal(down.reason, 'higher-epoch');
  await d1.waitFor('released', m1, EVENT_TIMEOUT_MS);
  await until('the VIP on d2 only', async () => (await holders()).join() === 'd2');
  await sleep(10 * ADVERT_INTERVAL_MS);
  assert.equal(d1.state(), 'backup');
  assert.equal(d2.state(), 'master');
  assert.deepEqual(statesSince(d2, m2).map((e) => e.what), ['master'], 'd2 stayed master through the heal');
  assert.deepEqual(await holders(), ['d2']);
  // d2's gratuitous ARP at its takeover already pointed the client at it.
  assert.equal(await clientNeighbour(l), l.d2.mac);
  assert.ok(await reachesVip(l), 'the client reaches the VIP through d2 after the heal');

  // 4. SIGKILL of the master (d2): d1 takes over; its gratuitous ARP repoints the client's cache.
  const k1 = d1.events.length;
  const d2Proc = d2.proc;
  const killedAt = Date.now();
  await d2.kill('SIGKILL');
  const m = await d1.waitFor('master', k1, EVENT_TIMEOUT_MS);
  assert.equal(m.reason, 'master-down');
  assert.ok(m.epoch! > d2Master.epoch!, `epoch ${m.epoch} after ${d2Master.epoch}`);
  const taken = await d1.waitFor('taken', k1, EVENT_TIMEOUT_MS);
  await until('the client learns d1 MAC for the VIP', async () => (await clientNeighbour(l)) === l.d1.mac);
  t.diagnostic(`VIP taken by d1 ${taken.seenAt - killedAt} ms after the SIGKILL (seen in its log); client's neighbour cache repointed by ${Date.now() - killedAt} ms`);
  assert.ok(await reachesVip(l), 'the client reaches the VIP through d1 after the kill');
  assert.equal(d2Proc.child.signalCode, 'SIGKILL');

  // 5. d2 restarted: it removes the VIP its killed self left on its interface and rejoins as backup.
  const d2b = await start('d2-restarted', l.d2, l.d1, 2, 100);
  const joined = await d2b.waitFor('backup', 0, EVENT_TIMEOUT_MS);
  assert.equal(joined.reason, 'startup');
  await sleep(10 * ADVERT_INTERVAL_MS);
  assert.deepEqual(statesSince(d2b, 0).map((e) => e.what), ['backup'], 'the restarted d2 stays backup');
  assert.equal(d1.state(), 'master');
  assert.deepEqual(await holders(), ['d1']);
  assert.ok(await reachesVip(l), 'the client still reaches the VIP through d1');
  const line = (d: HaDispatcher): string => d.events.map((e) => `${e.what}${e.epoch === undefined ? '' : `@${e.epoch}`}${e.reason ? `(${e.reason})` : ''}`).join(' ');
  t.diagnostic(`d1: ${line(d1)}`);
  t.diagnostic(`d2: ${line(d2)} | restarted: ${line(d2b)}`);
});
