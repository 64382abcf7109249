/**
 * @module A LAN of network namespaces for fault benchmarks and tests: a switch namespace holding a
 * bridge, and one namespace per node joined to it by a veth pair, each with an address on a /24 of
 * its own (10.64-127.x.0/24, picked from a random tag so that parallel runs do not collide).
 * `close()` stops the processes started inside first, then deletes every namespace (and with them
 * their interfaces and nftables tables): nothing is left on the host. Root, `ip` only.
 */
import { randomBytes } from 'node:crypto';
import { runProcess, which, type Proc } from './procs.js';

export interface LanNode {
  readonly ns: string;
  readonly iface: string;
  readonly ip: string;
}

export interface Lan {
  readonly tag: string;
  readonly subnet: string;
  readonly nodes: Record<string, LanNode>;
  /** Every namespace made, the switch first (for a synchronous `ip netns del` in an exit hook). */
  readonly namespaces: readonly string[];
  /** Processes to stop before the namespaces go (a namespace lives on while a process runs in it). */
  readonly procs: Proc[];
  close(): Promise<void>;
}

/** Why this machine cannot build a LAN of namespaces (not root, no ip or nft), or null. */
export function lanUnavailable(): string | null {
  if (process.getuid?.() !== 0) return 'needs root (ip netns, nft)';
  for (const cmd of ['ip', 'nft']) if (which(cmd) === null) return `${cmd} is not installed`;
  return null;
}

export async function sh(command: string, ...args: string[]): Promise<string> {
  const r = await runProcess(command, args, 10_000);
  if (r.code !== 0) throw new Error(`${command} ${args.join(' ')}: exit ${r.code}: ${r.stderr.trim()}`);
  return r.stdout;
}

/** Builds the LAN: `roles` maps a role name (a-z0-9, up to 3 chars) to its host number on the /24. */
export async function makeLan(roles: Record<string, number>): Promise<Lan> {
  const tag = randomBytes(3).toString('hex');
  const made: string[] = [];
  const procs: Proc[] = [];
  const close = async (): Promise<void> => {
    await Promise.allSettled(procs.map((p) => p.stop()));
    for (const ns of [...made].reverse()) await runProcess('ip', ['netns', 'del', ns], 10_000);
    made.length = 0;
  };
  try {
    const sw = `hf-lan-sw-${tag}`;
    await sh('ip', 'netns', 'add', sw);
    made.push(sw);
    const br = `hfbr${tag}`;
    await sh('ip', '-n', sw, 'link', 'add', br, 'type', 'bridge');
    await sh('ip', '-n', sw, 'link', 'set', br, 'up');
    const subnet = `10.${64 + (parseInt(tag.slice(0, 2), 16) % 64)}.${parseInt(tag.slice(2, 4), 16)}`;
    const nodes: Record<string, LanNode> = {};
    for (const [role, host] of Object.entries(roles)) {
      const ns = `hf-lan-${role}-${tag}`;
      await sh('ip', 'netns', 'add', ns);
      made.push(ns);
      const iface = `hf${role}${tag}`;
      const port = `hs${role}${tag}`;
      await sh('ip', 'link', 'add', port, 'netns', sw, 'type', 'veth', 'peer', 'name', iface, 'netns', ns);
      await sh('ip', '-n', sw, 'link', 'set', port, 'master', br);
      await sh('ip', '-n', sw, 'link', 'set', port, 'up');
      const ip = `${subnet}.${host}`;
      await sh('ip', '-n', ns, 'addr', 'add', `${ip}/24`, 'dev', iface);
      await sh('ip', '-n', ns, 'link', 'set', iface, 'up');
      await sh('ip', '-n', ns, 'link', 'set', 'lo', 'up');
      nodes[role] = { ns, iface, ip };
    }
    return { tag, subnet, nodes, namespaces: made, procs, close };
  } catch (err) {
    await close();
    throw err;
  }
}

/** Loads `rules` (an nft script defining `table inet <name>`) into `ns`. */
export async function nftLoad(ns: string, rules: string): Promise<void> {
  const r = await runProcess('ip', ['netns', 'exec', ns, 'nft', rules], 10_000);
  if (r.code !== 0) throw new Error(`nft in ${ns}: ${r.stderr.trim()}`);
}

export async function nftDeleteTable(ns: string, table: string): Promise<void> {
  await runProcess('ip', ['netns', 'exec', ns, 'nft', 'delete', 'table', 'inet', table], 10_000);
}

/** One namespace joined to the host's own by a veth pair (see makeVethNamespace). */
export interface VethNamespace {
  readonly ns: string;
  /** The host side's address (in the caller's namespace). */
  readonly hostIp: string;
  /** The namespace side's address. */
  readonly nsIp: string;
  /** Processes to stop before the namespace goes. */
  readonly procs: Proc[];
  close(): Promise<void>;
}

/**
 * A namespace with its loopback up and a veth pair to the caller's namespace, on a /30 of
 * 10.128-191.x.y picked from a random tag: a process in it reaches the host (and the host it) over
 * veth rather than over the host's loopback (bench/replication-cost.ts's backups). Root, `ip` only.
 */
export async function makeVethNamespace(): Promise<VethNamespace> {
  const tag = randomBytes(3).toString('hex');
  const ns = `hf-veth-${tag}`;
  const host = `hfv${tag}h`;
  const peer = `hfv${tag}n`;
  const procs: Proc[] = [];
  let made = false;
  const close = async (): Promise<void> => {
    await Promise.allSettled(procs.map((p) => p.stop()));
    if (made) await runProcess('ip', ['netns', 'del', ns], 10_000);
    // Deleting the namespace deletes the pair; the host side is removed in case the namespace was not made.
    await runProcess('ip', ['link', 'del', host], 10_000);
    made = false;
  };
  try {
    await sh('ip', 'netns', 'add', ns);
    made = true;
    const base = `10.${128 + (parseInt(tag.slice(0, 2), 16) % 64)}.${parseInt(tag.slice(2, 4), 16)}.${(parseInt(tag.slice(4, 6), 16) % 64) * 4}`;
    const octets = base.split('.').map(Number);
    const hostIp = `${octets[0]}.${octets[1]}.${octets[2]}.${octets[3]! + 1}`;
    const nsIp = `${octets[0]}.${octets[1]}.${octets[2]}.${octets[3]! + 2}`;
    await sh('ip', 'link', 'add', host, 'type', 'veth', 'peer', 'name', peer, 'netns', ns);
    await sh('ip', 'addr', 'add', `${hostIp}/30`, 'dev', host);
    await sh('ip', 'link', 'set', host, 'up');
    await sh('ip', '-n', ns, 'addr', 'add', `${nsIp}/30`, 'dev', peer);
    await sh('ip', '-n', ns, 'link', 'set', peer, 'up');
    await sh('ip', '-n', ns, 'link', 'set', 'lo', 'up');
    return { ns, hostIp, nsIp, procs, close };
  } catch (err) {
    await close();
    throw err;
  }
}
