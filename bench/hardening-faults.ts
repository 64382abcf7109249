/**
 * @module Faults beyond SIGKILL against the replicated dispatcher (issue 18), in network namespaces
 * of its own (bench/lib/netns-lan.ts: client, two dispatchers, one backend namespace on a bridge):
 * two `holdfast dispatcher` processes in one election group (Linux takeover: `ip addr add` and
 * gratuitous ARP) whose VIP carries a UDP service in front of two tagged echo backends. A client
 * opens `sessions` UDP flows (one socket each) through the VIP and records which backend each is
 * pinned to; after every fault each flow must be answered by the same backend (none lost).
 *
 * 1. partition: nftables in the backup's namespace drops everything from and to the master for
 *    `partitionMs` (both become master, as VRRP does), then heals. After it: exactly one master, the
 *    VIP on one interface, every session answered on its pin.
 * 2. stalled master: SIGSTOP of the master for `stallMs` (the backup takes over with a newer
 *    epoch), then SIGCONT. The resumed one must step down on the newer epoch and release the VIP,
 *    never regain it; sessions answered on their pins.
 * 3. advert loss: `nft ... numgen random mod 100 < 5 drop` on the election port in both dispatchers'
 *    namespaces for `lossMs`: master changes counted (none expected: three adverts in a row must be
 *    lost), adverts dropped counted by nft.
 *
 * Ends with `TARGET partition-heal: met|not met — <figure>`. Root only; without it the verdict says
 * why it was not measured.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { haConfig, startHaDispatcher, type HaDispatcher } from './lib/ha-cluster.js';
import { makeTempDir, removeTempDir, startProcess } from './lib/procs.js';
import { lanUnavailable, makeLan, nftDeleteTable, nftLoad, sh, type Lan, type LanNode } from './lib/netns-lan.js';

const SERVICE_PORT = 5000;
const ECHO_PORTS = [7000, 7001] as const;
const ELECTION_PORT = 7700;
/** 50 ms adverts: a master is down after ~170 ms; calm enough for two shared cores. */
const ADVERT_INTERVAL_MS = 50;
const EVENT_TIMEOUT_MS = 8_000;

export interface FaultOptions {
  readonly sessions: number;
  readonly partitionMs: number;
  readonly stallMs: number;
  readonly lossMs: number;
}

export function faultOptionsFromEnv(env: NodeJS.ProcessEnv = process.env): FaultOptions {
  const quick = env['BENCH_QUICK'] === '1';
  return { sessions: quick ? 50 : 200, partitionMs: quick ? 1_000 : 3_000, stallMs: quick ? 1_000 : 3_000, lossMs: quick ? 3_000 : 20_000 };
}

export interface FaultArm {
  readonly name: string;
  /** Dispatchers master once it settled, and those holding the VIP on their interface. */
  readonly masters: number;
  readonly vipHolders: number;
  /** Sessions established before the fault and answered by their own backend after it. */
  readonly kept: number;
  readonly sessions: number;
  readonly detail: string;
}

export type FaultResult = { readonly skipped: string } | { readonly arms: readonly FaultArm[]; readonly loss: { readonly ms: number; readonly dropped: number; readonly stateChanges: number } };

/** The client in its namespace: `round TAG` on stdin sends one datagram per flow and prints the backend ids that answered. */
function clientScript(vip: string, n: number): string {
  return `const dgram = require('dgram');
const socks = [];
let bound = 0;
for (let i = 0; i < ${n}; i++) {
  const s = dgram.createSocket('udp4');
  s.on('error', () => {});
  s.bind(0, () => { if (++bound === ${n}) console.log('ready'); });
  socks.push(s);
}
require('readline').createInterface({ input: process.stdin }).on('line', (line) => {
  const tag = line.split(' ')[1];
  const ids = new Array(${n}).fill(null);
  let open = ${n};
  const done = () => { if (--open === 0) console.log(JSON.stringify({ tag, ids })); };
  socks.forEach((s, i) => {
    const token = tag + '-' + i;
    let finished = false;
    const onMsg = (m) => {
      const text = m.toString();
      const bar = text.indexOf('|');
      if (finished || text.slice(bar + 1) !== token) return;
      finished = true; ids[i] = text.slice(0, bar); clearInterval(timer); clearTimeout(limit); s.off('message', onMsg); done();
    };
    s.on('message', onMsg);
    const send = () => s.send(token, ${SERVICE_PORT}, '${vip}');
    const timer = setInterval(send, 100);
    const limit = setTimeout(() => { if (finished) return; finished = true; clearInterval(timer); s.off('message', onMsg); done(); }, 4000);
    send();
  });
});`;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function holdsVip(n: LanNode, vip: string): Promise<boolean> {
  return (await sh('ip', '-n', n.ns, '-4', '-o', 'addr', 'show', 'dev', n.iface)).includes(` ${vip}/24 `);
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs = EVENT_TIMEOUT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(25);
  }
}

export async function runFaults(o: FaultOptions, log: (line: string) => void = () => {}): Promise<FaultResult> {
  const missing = lanUnavailable();
  if (missing) return { skipped: missing };
  const lan: Lan = await makeLan({ c: 10, d1: 1, d2: 2, b: 20 });
  const dir = makeTempDir('holdfast-bench-faults');
  let stopClient = (): void => {};
  try {
    const { c, d1: n1, d2: n2, b } = lan.nodes as Record<'c' | 'd1' | 'd2' | 'b', LanNode>;
    const vip = `${lan.subnet}.100`;
    const key = randomBytes(32);
    const echo = await startProcess({
      name: 'echo',
      command: 'ip',
      args: [
        'netns', 'exec', b.ns, process.execPath, '-e',
        `const dgram = require('dgram'); let n = 0;
for (const [id, port] of [['e0', ${ECHO_PORTS[0]}], ['e1', ${ECHO_PORTS[1]}]]) {
  const s = dgram.createSocket('udp4'); s.on('message', (m, r) => s.send(id + '|' + m, r.port, r.address));
  s.bind(port, '${b.ip}', () => { if (++n === 2) console.log('listening'); });
}`,
      ],
      readyLine: /^listening$/m,
    });
    lan.procs.push(echo);
    const config = (me: LanNode, peer: LanNode, id: number, priority: number): string =>
      haConfig({
        id,
        priority,
        preempt: false,
        advertIntervalMs: ADVERT_INTERVAL_MS,
        listen: `${me.ip}:${ELECTION_PORT}`,
        peers: [`${peer.ip}:${ELECTION_PORT}`],
        vip: `${vip}/24`,
        takeover: 'linux',
        interface: me.iface,
        services: [
          {
            name: 'echo',
            protocol: 'udp',
            listen: `${vip}:${SERVICE_PORT}`,
            health: { probe: { type: 'udp' } },
            backends: ECHO_PORTS.map((p, i) => ({ id: `e${i}`, address: `${b.ip}:${p}` })),
          },
        ],
      });
    const d: Record<'d1' | 'd2', HaDispatcher> = {} as Record<'d1' | 'd2', HaDispatcher>;
    d.d1 = await startHaDispatcher({ name: 'd1', id: 1, dir, key, netns: n1.ns, config: config(n1, n2, 1, 200) });
    lan.procs.push(d.d1.proc);
    await d.d1.waitFor('taken', 0, EVENT_TIMEOUT_MS);
    d.d2 = await startHaDispatcher({ name: 'd2', id: 2, dir, key, netns: n2.ns, config: config(n2, n1, 2, 100) });
    lan.procs.push(d.d2.proc);
    await d.d2.waitFor('backup', 0, EVENT_TIMEOUT_MS);
    const nodeOf = { d1: n1, d2: n2 } as const;

    // Spawned here, not through startProcess: rounds are asked for on its stdin.
    const client = spawn('ip', ['netns', 'exec', c.ns, process.execPath, '-e', clientScript(vip, o.sessions)], { stdio: ['pipe', 'pipe', 'inherit'] });
    stopClient = () => client.kill('SIGKILL');
    const rounds = createInterface({ input: client.stdout });
    const ready = new Promise<void>((resolve) => rounds.once('line', () => resolve()));
    const pending = new Map<string, (ids: (string | null)[]) => void>();
    rounds.on('line', (line) => {
      if (!line.startsWith('{')) return;
      const r = JSON.parse(line) as { tag: string; ids: (string | null)[] };
      pending.get(r.tag)?.(r.ids);
      pending.delete(r.tag);
    });
    const round = (tag: string): Promise<(string | null)[]> =>
      new Promise((resolve) => {
        pending.set(tag, resolve);
        client.stdin.write(`round ${tag}\n`);
      });
    await ready;

    const pins = await round('established');
    const established = pins.filter((x) => x !== null).length;
    if (established !== o.sessions) throw new Error(`only ${established} of ${o.sessions} sessions established before any fault`);
    log(`${o.sessions} sessions established through d1: ${['e0', 'e1'].map((id) => `${id} ${pins.filter((p) => p === id).length}`).join(', ')}`);
    // Let the pins reach the backup (replication flushes every 2 ms; acknowledged every 50 ms).
    await sleep(500);

    const settle = async (name: string, detail: string): Promise<FaultArm> => {
      await sleep(10 * ADVERT_INTERVAL_MS);
      const masters = (['d1', 'd2'] as const).filter((k) => d[k].state() === 'master').length;
      let vipHolders = 0;
      for (const k of ['d1', 'd2'] as const) if (await holdsVip(nodeOf[k], vip)) vipHolders++;
      const after = await round(name);
      const kept = after.filter((id, i) => id !== null && id === pins[i]).length;
      const arm = { name, masters, vipHolders, kept, sessions: o.sessions, detail };
      log(`${name}: ${masters} master(s), VIP on ${vipHolders} interface(s), ${kept}/${o.sessions} sessions on their pins; ${detail}`);
      return arm;
    };
    const arms: FaultArm[] = [];

    // 1. Partition between the dispatchers, then heal.
    const m1 = d.d1.events.length;
    const m2 = d.d2.events.length;
    await nftLoad(n2.ns, `table inet hfpart { chain in { type filter hook input priority 0; policy accept; ip saddr ${n1.ip} drop; }\n chain out { type filter hook output priority 0; policy accept; ip daddr ${n1.ip} drop; }\n}`);
    let healed = false;
    try {
      const took = await d.d2.waitFor('master', m2, EVENT_TIMEOUT_MS);
      await sleep(o.partitionMs);
      await nftDeleteTable(n2.ns, 'hfpart');
      healed = true;
      const down = await d.d1.waitFor('backup', m1, EVENT_TIMEOUT_MS);
      await until('one VIP holder after the heal', async () => !(await holdsVip(n1, vip)));
      arms.push(await settle('partition-heal', `d2 master at epoch ${took.epoch} during the ${o.partitionMs} ms partition; after the heal d1 stepped down (${down.reason})`));
    } finally {
      if (!healed) await nftDeleteTable(n2.ns, 'hfpart');
    }

    // 2. SIGSTOP of the master (d2 now), SIGCONT after stallMs: fenced by the newer epoch.
    const stalled = d.d2;
    const other = d.d1;
    const s1 = other.events.length;
    const s2 = stalled.events.length;
    stalled.proc.child.kill('SIGSTOP');
    let resumed = false;
    try {
      const took = await other.waitFor('master', s1, EVENT_TIMEOUT_MS);
      await other.waitFor('taken', s1, EVENT_TIMEOUT_MS);
      await sleep(o.stallMs);
      stalled.proc.child.kill('SIGCONT');
      resumed = true;
      const down = await stalled.waitFor('backup', s2, EVENT_TIMEOUT_MS);
      await until('the resumed master releases the VIP', async () => !(await holdsVip(n2, vip)));
      const regained = stalled.events.slice(s2).filter((e) => e.what === 'master' || e.what === 'taken').length;
      arms.push(await settle('stalled-master', `d1 took over at epoch ${took.epoch} while d2 was stopped ${o.stallMs} ms; resumed d2 stepped down (${down.reason}), regained the VIP ${regained} times`));
    } finally {
      if (!resumed) stalled.proc.child.kill('SIGCONT');
    }

    // 3. 5 % random loss of election datagrams into both dispatchers.
    const from = { d1: d.d1.events.length, d2: d.d2.events.length };
    const lossRule = `table inet hfloss { chain in { type filter hook input priority 0; policy accept; udp dport ${ELECTION_PORT} numgen random mod 100 < 5 counter drop; }\n}`;
    for (const n of [n1, n2]) await nftLoad(n.ns, lossRule);
    let dropped = 0;
    try {
      await sleep(o.lossMs);
      for (const n of [n1, n2]) {
        const out = await sh('ip', 'netns', 'exec', n.ns, 'nft', 'list', 'table', 'inet', 'hfloss');
        dropped += Number(/counter packets (\d+)/.exec(out)?.[1] ?? 0);
      }
    } finally {
      for (const n of [n1, n2]) await nftDeleteTable(n.ns, 'hfloss');
    }
    const changes = (['d1', 'd2'] as const).flatMap((k) =>
      d[k].events.slice(from[k]).filter((e) => e.what === 'master' || e.what === 'backup').map((e) => `${k} ${e.what} (${e.reason ?? ''})`),
    );
    const stateChanges = changes.length;
    arms.push(await settle('advert-loss-5pct', `${o.lossMs} ms of 5 % loss: ${dropped} election datagrams dropped, ${stateChanges} master/backup changes${stateChanges > 0 ? `: ${changes.join(', ')}` : ''}`));
    return { arms, loss: { ms: o.lossMs, dropped, stateChanges } };
  } finally {
    stopClient();
    await lan.close();
    removeTempDir(dir);
  }
}

/** The result table and the partition-heal verdict line. */
export function formatFaults(r: FaultResult): string {
  if ('skipped' in r) return `faults not run: ${r.skipped}\n\nTARGET partition-heal: not met — not measured (${r.skipped})`;
  const rows = r.arms.map((a) => `| ${a.name} | ${a.masters} | ${a.vipHolders} | ${a.kept} of ${a.sessions} | ${a.detail} |`);
  const heal = r.arms.find((a) => a.name === 'partition-heal')!;
  const met = heal.masters === 1 && heal.vipHolders === 1 && heal.kept === heal.sessions;
  return [
    '| fault | masters after | VIP holders after | sessions kept on their pins | what happened |',
    '|---|---:|---:|---:|---|',
    ...rows,
    '',
    `TARGET partition-heal: ${met ? 'met' : 'not met'} — after a partition between the dispatchers healed: ${heal.masters} master, VIP on ${heal.vipHolders} interface, ${heal.kept} of ${heal.sessions} sessions established before it answered by their own backend`,
  ].join('\n');
}
