/**
 * @module HANet end to end (issue 15's "done when") in network namespaces of the test's own
 * (bench/lib/hanet-net.ts, prefix `hfhn-`): a client, a switch, two servers each with a public link
 * to the switch and a private link to the other, `holdfast agent` with a `hanet:` section on both,
 * an HTTP + UDP echo origin on server 1. Checks: the public link down and back (relayed by the
 * sibling, failback only after the hold time, nothing left behind); an nftables drop in the switch
 * that the carrier monitor does not see and the ARP and ping monitors do; the sibling dying while
 * relaying (the dispatcher then takes the backend out); both servers' public links down (refused,
 * logged on both sides); forged, replayed, stale and malformed takeover messages (dropped and
 * counted, nothing changed). Root only (ip netns, nft, arping, ping): skipped with the reason
 * otherwise. Namespaces and processes are removed in t.after.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import {
  buildHanetNet,
  clientNeighbour,
  hanetRigMissing,
  HANET_PORT,
  linkDown,
  linkUp,
  must,
  nftDrop,
  nftUndrop,
  sh,
  startHanetClient,
  writeAgentConfig,
  type AgentYamlOptions,
  type HanetClient,
  type HanetNet,
} from '../../bench/lib/hanet-net.js';
import { startProcess, type Proc } from '../../bench/lib/procs.js';
import { ROOT, newCluster, startDispatcher, type Cluster } from '../helpers/cluster-procs.js';

const HTTP_PORT = 8080;
const ECHO_PORT = 9000;
/** Generous bounds on a shared 2-core machine: failover takes a few hundred ms here. */
const FAILOVER_WAIT_MS = 5_000;
const HOLD_MS = 1_500;

interface Rig {
  net: HanetNet;
  c: Cluster;
  client: HanetClient;
  agent(n: 1 | 2, o?: Partial<Omit<AgentYamlOptions, 'stateFile'>>): Promise<Proc>;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function rig(t: TestContext): Promise<Rig | null> {
  const missing = hanetRigMissing();
  if (missing) {
    t.skip(missing);
    return null;
  }
  const net = await buildHanetNet();
  const procs: Proc[] = [];
  let client: HanetClient | null = null;
  t.after(async () => {
    await client?.stop();
    // The processes inside first: a deleted namespace lives on while one runs in it.
    await Promise.allSettled(procs.map((p) => p.stop()));
    await net.destroy();
  });
  const c = newCluster(t, net.client.ns);
  procs.push(
    await startProcess({
      name: 'hanet-origin',
      command: 'ip',
      args: ['netns', 'exec', net.s1.ns, process.execPath, join(ROOT, 'dist/bench/lib/hanet-origin.js'), String(HTTP_PORT), String(ECHO_PORT)],
      readyLine: /hanet-origin ready/,
    }),
  );
  client = await startHanetClient(net);
  return {
    net,
    c,
    client,
    agent: async (n, o = {}) => {
      const file = writeAgentConfig(c.dir, net, n, { monitor: 'carrier', periodMs: 50, timeoutMs: 50, misses: 1, failbackHoldMs: HOLD_MS, ...o });
      const p = await startProcess({
        name: `agent-${n}`,
        command: 'ip',
        args: ['netns', 'exec', n === 1 ? net.s1.ns : net.s2.ns, process.execPath, join(ROOT, 'bin/holdfast.js'), 'agent', '--config', file],
        env: { ...process.env, HOLDFAST_CLUSTER_KEY: c.key.toString('hex') },
        readyLine: /"msg":"hanet running"/,
        readyTimeoutMs: 15_000,
      });
      procs.push(p);
      return p;
    },
  };
}

/** Waits until the client's neighbour entry for server 1's service address is `mac`; the time it took, or -1. */
async function waitNeighbour(net: HanetNet, mac: string, ms: number): Promise<number> {
  const start = Date.now();
  while (Date.now() - start < ms) {
    if ((await clientNeighbour(net, net.s1.serviceIp)) === mac) return Date.now() - start;
    await sleep(25);
  }
  return -1;
}

/** n small GETs from the client to server 1's service address; how many failed. */
async function failedGets(r: Rig, n = 5): Promise<number> {
  const res = await r.client.cmd<{ failed: number }>('latency', { url: `http://${r.net.s1.serviceIp}:${HTTP_PORT}/small`, n });
  return res.failed;
}

/**
 * What HANet may have left in a namespace: rules to its table and the table's routes (unless its
 * agent still runs: `relayOnly`), relay routes, proxy ARP entries, forwarding.
 */
async function leftovers(ns: string, relayOnly = false): Promise<string[]> {
  const found: string[] = [];
  if (!relayOnly) {
    const rules = await must('ip', '-n', ns, 'rule');
    if (/lookup 218/.test(rules)) found.push(`rule: ${rules.trim()}`);
    const table = (await sh('ip', ['-n', ns, 'route', 'show', 'table', '218'])).stdout.trim();
    if (table !== '') found.push(`table 218: ${table}`);
  }
  const proto = (await must('ip', '-n', ns, 'route', 'show', 'proto', '218')).trim();
  if (proto !== '') found.push(`routes proto 218: ${proto}`);
  const proxy = (await must('ip', '-n', ns, 'neigh', 'show', 'proxy')).trim();
  if (proxy !== '') found.push(`proxy: ${proxy}`);
  const fwd = (await must('ip', 'netns', 'exec', ns, 'cat', '/proc/sys/net/ipv4/ip_forward')).trim();
  if (fwd !== '0') found.push(`ip_forward ${fwd}`);
  return found;
}

function logLines(p: Proc): string[] {
  return p
    .output()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => {
      try {
        return String((JSON.parse(l) as { msg?: unknown }).msg ?? '');
      } catch {
        return '';
      }
    });
}

test('public link down: the sibling relays; back up: failback only after the hold time; nothing left behind', async (t) => {
  const r = await rig(t);
  if (!r) return;
  const { net } = r;
  const a1 = await r.agent(1);
  const a2 = await r.agent(2);
  assert.equal(await failedGets(r), 0);
  assert.equal(await clientNeighbour(net, net.s1.serviceIp), net.s1.pubMac);

  await linkDown(net.s1.ns, 'pub0');
  assert.ok((await waitNeighbour(net, net.s2.pubMac, FAILOVER_WAIT_MS)) >= 0, 'the sibling announced server 1');
  assert.equal(await failedGets(r), 0, 'served through the sibling');
  assert.match(await must('ip', '-n', net.s2.ns, 'neigh', 'show', 'proxy'), new RegExp(`${net.s1.serviceIp.replaceAll('.', '\\.')} dev pub0 proxy`));
  assert.match(await must('ip', '-n', net.s2.ns, 'route', 'show', 'proto', '218'), new RegExp(`${net.s1.serviceIp.replaceAll('.', '\\.')} via ${net.s1.privateIp.replaceAll('.', '\\.')} dev priv0`));
  assert.ok(logLines(a1).some((l) => /sibling 2 relays this server's packets/.test(l)));

  const upAt = Date.now();
  await linkUp(net.s1.ns, 'pub0');
  await sleep(HOLD_MS / 2);
  assert.equal(await clientNeighbour(net, net.s1.serviceIp), net.s2.pubMac, 'no failback before the hold time');
  assert.ok((await waitNeighbour(net, net.s1.pubMac, HOLD_MS + FAILOVER_WAIT_MS)) >= 0, 'failback');
  assert.ok(Date.now() - upAt >= HOLD_MS, `failback after ${Date.now() - upAt} ms, hold ${HOLD_MS}`);
  assert.equal(await failedGets(r), 0);
  await sleep(300);
  assert.deepEqual(await leftovers(net.s2.ns, true), [], 'the sibling undid its relay');
  assert.ok(logLines(a1).some((l) => /ACTIVE interface priv0 -> pub0 \(failback\)/.test(l)));

  await a1.stop();
  await a2.stop();
  for (const s of [net.s1, net.s2]) {
    assert.deepEqual(await leftovers(s.ns), [], `${s.ns} after SIGTERM`);
    assert.doesNotMatch(await must('ip', '-n', s.ns, '-4', '-o', 'addr'), new RegExp(` ${s.serviceIp.replaceAll('.', '\\.')}/`), 'the service address the agent added is gone');
  }
});

test('an nftables drop in the switch: the carrier monitor does not see it, the ARP and ping monitors do', async (t) => {
  const r = await rig(t);
  if (!r) return;
  const { net } = r;
  let a1 = await r.agent(1);
  let a2 = await r.agent(2);
  assert.equal(await failedGets(r), 0);
  await nftDrop(net, 1);
  await sleep(1500);
  assert.notEqual(await clientNeighbour(net, net.s1.serviceIp), net.s2.pubMac, 'carrier: no failover');
  assert.ok(!logLines(a1).some((l) => /ACTIVE interface pub0 -> priv0/.test(l)));
  await nftUndrop(net, 1);
  await a1.stop();
  await a2.stop();

  for (const monitor of ['arp', 'ping'] as const) {
    const timing = monitor === 'arp' ? { periodMs: 200, timeoutMs: 100, misses: 2 } : { periodMs: 100, timeoutMs: 50, misses: 2 };
    a1 = await r.agent(1, { monitor, ...timing });
    a2 = await r.agent(2, { monitor, ...timing });
    await nftDrop(net, 1);
    assert.ok((await waitNeighbour(net, net.s2.pubMac, FAILOVER_WAIT_MS)) >= 0, `${monitor}: relayed by the sibling`);
    assert.equal(await failedGets(r), 0, `${monitor}: served through the sibling`);
    assert.ok(logLines(a1).some((l) => /ACTIVE interface pub0 -> priv0 \(failed\)/.test(l)));
    await nftUndrop(net, 1);
    assert.ok((await waitNeighbour(net, net.s1.pubMac, HOLD_MS + FAILOVER_WAIT_MS)) >= 0, `${monitor}: failback`);
    await a1.stop();
    await a2.stop();
    assert.deepEqual(await leftovers(net.s1.ns), []);
    assert.deepEqual(await leftovers(net.s2.ns), []);
  }
});

test('the sibling dies while relaying: the server is isolated and the dispatcher takes the backend out', async (t) => {
  const r = await rig(t);
  if (!r) return;
  const { net } = r;
  const monitor = `${net.client.ip}:7600`;
  const d = await startDispatcher(
    t,
    r.c,
    `version: 1
logging: { level: info, format: json }
admin: { enabled: true, listen: '127.0.0.1:0' }
monitor: { listen: '${monitor}' }
services:
  - name: web
    protocol: http
    listen: '127.0.0.1:0'
    backends:
      - { id: s1, address: '${net.s1.serviceIp}:${HTTP_PORT}', agent: 1 }
    health:
      detector: { type: push, intervalMs: 50, n: 6 }
`,
  );
  const a1 = await r.agent(1, { dispatcher: monitor, heartbeatIntervalMs: 50 });
  const a2 = await r.agent(2, { dispatcher: monitor, heartbeatIntervalMs: 50 });
  await d.waitForTransition({ backend: 's1', to: 'up' }, 0, FAILOVER_WAIT_MS);
  // The client (and the dispatcher beside it) has server 1 in its neighbour cache, as any peer would.
  assert.equal(await failedGets(r), 0);

  await linkDown(net.s1.ns, 'pub0');
  assert.ok((await waitNeighbour(net, net.s2.pubMac, FAILOVER_WAIT_MS)) >= 0);
  // The heartbeats now come through the sibling, saying so (flag bit 7).
  let b = await d.backend('web', 's1');
  for (let i = 0; i < 40 && b.viaSibling !== true; i++) {
    await sleep(50);
    b = await d.backend('web', 's1');
  }
  assert.equal(b.viaSibling, true, `the status API says the backend is reached through a sibling: ${JSON.stringify(b)}\n${logLines(a1).join('\n')}`);
  assert.equal(b.state, 'up');
  assert.match(await d.metrics(), /holdfast_backend_via_sibling\{service="web",backend="s1"\} 1/);

  // The sibling host dies: its agent is killed (its relay stays in the kernel) and its links go.
  const mark = d.transitions.length;
  a2.child.kill('SIGKILL');
  await linkDown(net.s2.ns, 'priv0');
  await linkDown(net.s2.ns, 'pub0');
  await d.waitForTransition({ backend: 's1', to: 'down' }, mark, FAILOVER_WAIT_MS);
  await sleep(1500);
  assert.ok(
    logLines(a1).some((l) => /went silent while relaying|isolated: no public link is GOOD/.test(l)),
    `server 1 says it lost its sibling:\n${logLines(a1).join('\n')}`,
  );
});

test('both servers\' public links down: the sibling refuses, and both say why', async (t) => {
  const r = await rig(t);
  if (!r) return;
  const { net } = r;
  const a1 = await r.agent(1);
  const a2 = await r.agent(2);
  await linkDown(net.s2.ns, 'pub0');
  await linkDown(net.s1.ns, 'pub0');
  await sleep(1500);
  assert.ok(logLines(a1).some((l) => /sibling 2 refused to relay .*: no-public-link/.test(l)), logLines(a1).join('\n'));
  assert.ok(logLines(a1).some((l) => /isolated: no public link is GOOD and no sibling relays/.test(l)));
  assert.ok(logLines(a2).some((l) => /refused to relay .* for sibling 1: this server has no GOOD public interface either/.test(l)));
  assert.equal((await must('ip', '-n', net.s2.ns, 'neigh', 'show', 'proxy')).trim(), '', 'nothing proxied');
});

test('forged, replayed, stale and malformed takeover messages: dropped and counted, nothing changed', async (t) => {
  const r = await rig(t);
  if (!r) return;
  const { net } = r;
  await r.agent(1);
  const a2 = await r.agent(2);
  const script = join(r.c.dir, 'forge.mjs');
  const wire = (f: string) => JSON.stringify(join(ROOT, 'dist/src/wire', f));
  writeFileSync(
    script,
    `import dgram from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { seal, MessageType } from ${wire('envelope.js')};
import { encodeTransmissionAgent } from ${wire('transmission-agent.js')};
import { wireTimestamp } from ${wire('timestamp.js')};
const key = Buffer.from(process.env.HOLDFAST_CLUSTER_KEY, 'hex');
const body = (o) => encodeTransmissionAgent({ kind: 'request', reason: 'none', host: 1, seq: 1, timestamp: wireTimestamp(Date.now()), address: '${net.s1.serviceIp}', nextHop: '${net.s1.privateIp}', ...o });
const release = seal(MessageType.TransmissionAgent, body({ kind: 'release', seq: 1000 }), key);
const msgs = [
  seal(MessageType.TransmissionAgent, body({}), randomBytes(32)),                      // bad-mac: another key
  Buffer.alloc(10),                                                                   // truncated
  seal(MessageType.TransmissionAgent, body({}).subarray(0, 19), key),                 // malformed
  seal(MessageType.TransmissionAgent, body({ seq: 2, timestamp: wireTimestamp(Date.now() - 60000) }), key), // stale
  seal(MessageType.TransmissionAgent, body({ host: 99, seq: 3 }), key),               // unknown-host
  seal(MessageType.ElectionAdvert, Buffer.alloc(20, 1), key),                          // type
  release, release,                                                                   // the second is a replay
  seal(MessageType.TransmissionAgent, body({ seq: 1001, address: '${net.subnet}.99' }), key), // authentic, not allowed
];
const s = dgram.createSocket('udp4');
for (const m of msgs) await new Promise((r) => s.send(m, ${HANET_PORT}, '${net.s2.privateIp}', r));
s.close();
`,
  );
  const sent = await sh('ip', ['netns', 'exec', net.s1.ns, 'env', `HOLDFAST_CLUSTER_KEY=${r.c.key.toString('hex')}`, process.execPath, script], 10_000);
  assert.equal(sent.code, 0, sent.stderr);
  await sleep(500);
  const lines = logLines(a2);
  for (const reason of ['bad-mac', 'truncated', 'malformed', 'stale', 'unknown-host', 'type', 'replay']) {
    assert.ok(lines.some((l) => new RegExp(`dropped takeover message from .*: ${reason} \\(1 so far\\)`).test(l)), `${reason} dropped and counted:\n${lines.join('\n')}`);
  }
  assert.ok(lines.some((l) => /refused to relay .*\.99 for sibling 1: address .* is not sibling 1's serviceAddress/.test(l)));
  assert.ok(!lines.some((l) => /relaying/.test(l)), 'nothing relayed');
  assert.deepEqual(await leftovers(net.s2.ns, true), []);
});

test('a crash while relaying leaves nothing that a restart does not clean up', async (t) => {
  const r = await rig(t);
  if (!r) return;
  const { net } = r;
  let a1 = await r.agent(1);
  let a2 = await r.agent(2);
  assert.equal(await failedGets(r), 0);
  await linkDown(net.s1.ns, 'pub0');
  assert.ok((await waitNeighbour(net, net.s2.pubMac, FAILOVER_WAIT_MS)) >= 0);
  a1.child.kill('SIGKILL');
  a2.child.kill('SIGKILL');
  await Promise.all([a1.exited, a2.exited]);
  // Both died with their changes in place.
  assert.notDeepEqual(await leftovers(net.s1.ns), []);
  assert.notDeepEqual(await leftovers(net.s2.ns), []);
  await linkUp(net.s1.ns, 'pub0');

  a1 = await r.agent(1);
  a2 = await r.agent(2);
  for (const a of [a1, a2]) assert.ok(logLines(a).some((l) => /undoing \d+ change\(s\) left by a previous run/.test(l)), logLines(a).join('\n'));
  assert.deepEqual(await leftovers(net.s2.ns, true), [], 'the relay left by the crash is gone');
  assert.doesNotMatch(await must('ip', '-n', net.s1.ns, '-4', '-o', 'addr', 'show', 'dev', 'priv0'), new RegExp(net.s1.serviceIp.replaceAll('.', '\\.')));
  assert.ok((await waitNeighbour(net, net.s1.pubMac, FAILOVER_WAIT_MS)) >= 0, 'server 1 announced itself again');
  assert.equal(await failedGets(r), 0);
  await a1.stop();
  await a2.stop();
  assert.deepEqual(await leftovers(net.s1.ns), []);
  assert.deepEqual(await leftovers(net.s2.ns), []);
});
