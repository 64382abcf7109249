/**
 * @module The HANet rig shared by bench/hanet.ts and test/e2e/hanet-netns.test.ts: network
 * namespaces (prefix `hfhn-` and a random tag) for a client, a switch holding a bridge, and two
 * servers, each server with a public link to the bridge (`pub0`) and a private veth link to the
 * other server (`priv0`); the configuration of `holdfast agent` with a `hanet:` section for each
 * server; fault injection (link down, nftables ingress drop that carrier does not see). Addresses
 * are private ranges inside namespaces only. `destroy()` deletes every namespace (and with them
 * every interface, bridge and nft table in them).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import readline from 'node:readline';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { which } from './procs.js';

export function sh(command: string, args: readonly string[], timeoutMs = 10_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(command, [...args], { timeout: timeoutMs }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

export async function must(command: string, ...args: string[]): Promise<string> {
  const r = await sh(command, args);
  if (r.code !== 0) throw new Error(`${command} ${args.join(' ')}: exit ${r.code}: ${r.stderr.trim()}`);
  return r.stdout;
}

/** Why this machine cannot build the rig, or null. */
export function hanetRigMissing(): string | null {
  if (process.getuid?.() !== 0) return 'needs root (ip netns, nft, arping)';
  for (const cmd of ['ip', 'nft', 'arping', 'ping']) if (which(cmd) === null) return `${cmd} is not installed`;
  return null;
}

export interface HanetServer {
  ns: string;
  /** Its own address on the public LAN (kept on pub0; the monitors' source). */
  linkIp: string;
  /** The service address HANet moves. */
  serviceIp: string;
  /** Its address on the private link. */
  privateIp: string;
  pubMac: string;
}

export interface HanetNet {
  tag: string;
  subnet: string;
  privSubnet: string;
  sw: string;
  client: { ns: string; ip: string; iface: string };
  s1: HanetServer;
  s2: HanetServer;
  /** Deletes every namespace made. Idempotent. */
  destroy(): Promise<void>;
}

export async function buildHanetNet(): Promise<HanetNet> {
  const tag = randomBytes(3).toString('hex');
  const made: string[] = [];
  const destroy = async (): Promise<void> => {
    while (made.length > 0) await sh('ip', ['netns', 'del', made.pop()!]);
  };
  try {
    const a = 64 + (parseInt(tag.slice(0, 2), 16) % 64);
    const b = parseInt(tag.slice(2, 4), 16);
    const subnet = `10.${a}.${b}`;
    const privSubnet = `10.${a + 64}.${b}`;
    const nsName = (role: string): string => `hfhn-${role}-${tag}`;
    const addNs = async (role: string): Promise<string> => {
      const ns = nsName(role);
      await must('ip', 'netns', 'add', ns);
      made.push(ns);
      await must('ip', '-n', ns, 'link', 'set', 'lo', 'up');
      return ns;
    };
    const sw = await addNs('sw');
    await must('ip', '-n', sw, 'link', 'add', 'br0', 'type', 'bridge');
    await must('ip', '-n', sw, 'link', 'set', 'br0', 'up');
    const plug = async (ns: string, iface: string, port: string, cidr: string): Promise<string> => {
      await must('ip', '-n', ns, 'link', 'add', iface, 'type', 'veth', 'peer', 'name', port, 'netns', sw);
      await must('ip', '-n', sw, 'link', 'set', port, 'master', 'br0');
      await must('ip', '-n', sw, 'link', 'set', port, 'up');
      await must('ip', '-n', ns, 'addr', 'add', cidr, 'dev', iface);
      await must('ip', '-n', ns, 'link', 'set', iface, 'up');
      const mac = /link\/ether ([0-9a-f:]{17})/.exec(await must('ip', '-n', ns, '-o', 'link', 'show', iface))?.[1];
      if (!mac) throw new Error(`no MAC for ${iface} in ${ns}`);
      return mac;
    };
    const cl = await addNs('cl');
    await plug(cl, 'eth0', 'pcl', `${subnet}.1/24`);
    const server = async (n: 1 | 2): Promise<HanetServer> => {
      const ns = await addNs(`s${n}`);
      const pubMac = await plug(ns, 'pub0', `ps${n}`, `${subnet}.${10 + n}/24`);
      return { ns, linkIp: `${subnet}.${10 + n}`, serviceIp: `${subnet}.${20 + n}`, privateIp: `${privSubnet}.${n}`, pubMac };
    };
    const s1 = await server(1);
    const s2 = await server(2);
    await must('ip', '-n', s1.ns, 'link', 'add', 'priv0', 'type', 'veth', 'peer', 'name', 'priv0', 'netns', s2.ns);
    for (const s of [s1, s2]) {
      await must('ip', '-n', s.ns, 'addr', 'add', `${s.privateIp}/24`, 'dev', 'priv0');
      await must('ip', '-n', s.ns, 'link', 'set', 'priv0', 'up');
    }
    return { tag, subnet, privSubnet, sw, client: { ns: cl, ip: `${subnet}.1`, iface: 'eth0' }, s1, s2, destroy };
  } catch (err) {
    await destroy();
    throw err;
  }
}

export type MonitorKind = 'carrier' | 'arp' | 'ping';

export interface AgentYamlOptions {
  /** The public link's monitor on this server (the private link always has carrier). */
  monitor: MonitorKind;
  periodMs: number;
  timeoutMs: number;
  misses: number;
  failbackHoldMs: number;
  /** The dispatcher's monitor.listen; default: a closed port on the client (heartbeats unused). */
  dispatcher?: string;
  heartbeatIntervalMs?: number;
  stateFile: string;
  keepaliveMs?: number;
  siblingTimeoutMs?: number;
  /** The HANet listen port on the private link. */
  port?: number;
}

export const HANET_PORT = 7400;

/** `holdfast agent` YAML for server `n` of the rig. */
export function agentYaml(net: HanetNet, n: 1 | 2, o: AgentYamlOptions): string {
  const me = n === 1 ? net.s1 : net.s2;
  const other = n === 1 ? net.s2 : net.s1;
  const port = o.port ?? HANET_PORT;
  const timing = `periodMs: ${o.periodMs}, timeoutMs: ${o.timeoutMs}, misses: ${o.misses}`;
  const monitor =
    o.monitor === 'carrier'
      ? `{ type: carrier, ${timing} }`
      : o.monitor === 'arp'
        ? `{ type: arp, targets: [${net.client.ip}], ${timing} }`
        : `{ type: ping, hosts: [${net.client.ip}], ${timing} }`;
  return `logging: { level: info, format: json }
agent:
  id: ${n}
  dispatchers: ["${o.dispatcher ?? `${net.client.ip}:9`}"]
  heartbeatIntervalMs: ${o.heartbeatIntervalMs ?? 50}
  pidFile: ${o.stateFile}.pid
watchdog: { type: none }
hanet:
  address: ${me.serviceIp}/24
  interfaces:
    - { name: pub0, role: public, speedMbps: 1000, monitors: [${monitor}] }
    - { name: priv0, role: private, speedMbps: 1000, monitors: [{ type: carrier, periodMs: 50, timeoutMs: 50, misses: 1 }] }
  failbackHoldMs: ${o.failbackHoldMs}
  listen: ${me.privateIp}:${port}
  siblings:
    - { id: ${n === 1 ? 2 : 1}, address: "${other.privateIp}:${port}", serviceAddress: ${other.serviceIp}, via: priv0, localAddress: ${me.privateIp} }
  requestIntervalMs: 10
  keepaliveMs: ${o.keepaliveMs ?? 100}
  siblingTimeoutMs: ${o.siblingTimeoutMs ?? 500}
  stateFile: ${o.stateFile}
`;
}

export function writeAgentConfig(dir: string, net: HanetNet, n: 1 | 2, o: Omit<AgentYamlOptions, 'stateFile'>): string {
  const file = join(dir, `agent-${n}.yaml`);
  writeFileSync(file, agentYaml(net, n, { ...o, stateFile: join(dir, `hanet-${n}.json`) }));
  return file;
}

/**
 * Cuts server `n`'s public link in the switch: an nftables bridge rule drops every frame to or
 * from its port, ARP included. Its link stays up (carrier sees nothing), and the cut is outside the
 * server, where a packet socket (arping's) cannot see past it as it would an ingress filter.
 */
export async function nftDrop(net: HanetNet, n: 1 | 2): Promise<void> {
  const port = `ps${n}`;
  await must('ip', 'netns', 'exec', net.sw, 'nft', `add table bridge hfhn_cut${n}; add chain bridge hfhn_cut${n} cut { type filter hook forward priority 0; policy accept; }; add rule bridge hfhn_cut${n} cut iifname "${port}" drop; add rule bridge hfhn_cut${n} cut oifname "${port}" drop`);
}

export async function nftUndrop(net: HanetNet, n: 1 | 2): Promise<void> {
  await sh('ip', ['netns', 'exec', net.sw, 'nft', `delete table bridge hfhn_cut${n}`]);
}

export async function linkDown(ns: string, iface: string): Promise<void> {
  await must('ip', '-n', ns, 'link', 'set', iface, 'down');
}

export async function linkUp(ns: string, iface: string): Promise<void> {
  await must('ip', '-n', ns, 'link', 'set', iface, 'up');
}

/** The client's neighbour-cache MAC for `ip`, or null. */
export async function clientNeighbour(net: HanetNet, ip: string): Promise<string | null> {
  const out = await must('ip', '-n', net.client.ns, 'neigh', 'show', ip, 'dev', net.client.iface);
  return /lladdr ([0-9a-f:]{17})/.exec(out)?.[1] ?? null;
}

/** The client process (bench/lib/hanet-client.ts) in the client namespace, driven by JSON commands. */
export interface HanetClient {
  cmd<T = Record<string, unknown>>(cmd: string, args?: Record<string, unknown>): Promise<T>;
  stop(): Promise<void>;
}

export async function startHanetClient(net: HanetNet): Promise<HanetClient> {
  const script = new URL('./hanet-client.js', import.meta.url).pathname;
  const child: ChildProcess = spawn('ip', ['netns', 'exec', net.client.ns, process.execPath, script], { stdio: ['pipe', 'pipe', 'inherit'] });
  const waiting = new Map<number, (v: Record<string, unknown>) => void>();
  let ready!: () => void;
  const isReady = new Promise<void>((r) => (ready = r));
  readline.createInterface({ input: child.stdout! }).on('line', (line) => {
    let o: Record<string, unknown>;
    try {
      o = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return;
    }
    if (o.ready !== undefined) return ready();
    const id = Number(o.id);
    waiting.get(id)?.(o);
    waiting.delete(id);
  });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  await Promise.race([isReady, exited.then(() => Promise.reject(new Error('hanet client exited before it was ready')))]);
  let next = 1;
  return {
    cmd: <T>(cmd: string, args: Record<string, unknown> = {}) =>
      new Promise<T>((resolve) => {
        const id = next++;
        waiting.set(id, resolve as (v: Record<string, unknown>) => void);
        child.stdin!.write(`${JSON.stringify({ id, cmd, ...args })}\n`);
      }),
    stop: async () => {
      child.stdin!.end();
      child.kill('SIGKILL');
      await exited;
    },
  };
}
