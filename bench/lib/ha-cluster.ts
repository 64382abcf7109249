/**
 * @module Replicated dispatchers as real processes (issue 7), for test/e2e/dispatcher-ha*.test.ts and
 * bench/dispatcher-failover.ts: `haConfig` writes one dispatcher's configuration (one election group
 * whose VIP carries the given services), `startHaDispatcher` runs `holdfast dispatcher` on it —
 * optionally inside a network namespace — and follows its JSON log: every group state change and
 * every VIP taken/released, with the test's own wall clock when the line was read.
 */
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { StatusSnapshot } from '../../src/admin/status.js';
import { startProcess, type Proc } from './procs.js';

const HOLDFAST_BIN = fileURLToPath(new URL('../../../bin/holdfast.js', import.meta.url));
/** src/dispatcher/groups.ts's log line when a peer's state snapshot has been applied. */
const SYNCED_MSG = 'replicated state synced';
/** Node start plus module loading on two shared cores. */
export const HA_START_TIMEOUT_MS = 15_000;

export interface HaNodeOptions {
  /** dispatcher.id (u16). */
  id: number;
  priority: number;
  preempt?: boolean;
  advertIntervalMs?: number;
  /** This dispatcher's election socket, host:port (UDP adverts; TCP state replication on the same numbers). */
  listen: string;
  peers: string[];
  /** loopback: 127.x.y.z; linux: a.b.c.d/prefix with `interface`. */
  vip: string;
  takeover?: 'loopback' | 'linux';
  interface?: string;
  /** linux: how gratuitous ARPs go out (groups[].garp; default the product's, auto). */
  garp?: 'auto' | 'arping';
  /** Full service configs (their listen on the VIP); all move with the group. */
  services: Record<string, unknown>[];
  /** Extra top-level config keys (e.g. replication settings). */
  extra?: Record<string, unknown>;
  /** pino level; info or below to see the group events. */
  level?: string;
}

/** One dispatcher's configuration as YAML (JSON is YAML). */
export function haConfig(o: HaNodeOptions): string {
  return JSON.stringify({
    version: 1,
    logging: { level: o.level ?? 'info', format: 'json' },
    // A dispatcher in a namespace of its own listens on a non-loopback address, where the admin API
    // needs a token (issue 14): off there (those tests read the log, not the API).
    admin: o.listen.startsWith('127.') ? { enabled: true, listen: o.listen.slice(0, o.listen.lastIndexOf(':')) + ':0' } : { enabled: false },
    dispatcher: { id: o.id },
    groups: [
      {
        name: 'vip',
        id: 7,
        vip: o.vip,
        takeover: o.takeover ?? 'loopback',
        ...(o.interface ? { interface: o.interface } : {}),
        priority: o.priority,
        preempt: o.preempt ?? true,
        advertIntervalMs: o.advertIntervalMs ?? 20,
        listen: o.listen,
        peers: o.peers,
        services: o.services.map((s) => s['name']),
        ...(o.takeover === 'linux' ? { garpDelayMs: 0, ...(o.garp ? { garp: o.garp } : {}) } : {}),
      },
    ],
    services: o.services,
    ...o.extra,
  });
}

export interface GroupEvent {
  /** 'master' | 'backup' | 'taken' (VIP bound) | 'released' | 'failed' | 'synced' (a peer's replicated snapshot applied here). */
  what: string;
  epoch?: number;
  reason?: string;
  /** Date.now() of this process when the line was read. */
  seenAt: number;
  /** pino's time (the dispatcher's Date.now()). */
  time: number;
}

export interface HaDispatcher {
  readonly id: number;
  readonly proc: Proc;
  readonly admin: string;
  readonly events: GroupEvent[];
  /** The first event at index >= from with `what`; rejects after timeoutMs with the log. */
  waitFor(what: string, from: number, timeoutMs: number): Promise<GroupEvent>;
  /** The latest state event (master/backup) seen, or null. */
  state(): 'master' | 'backup' | null;
  status(): Promise<StatusSnapshot>;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

function get(url: string, timeoutMs = 3000): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (s: string) => (body += s));
      res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`GET ${url}: ${res.statusCode} ${body}`))));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url}: timeout`)));
    req.on('error', reject);
  });
}

/**
 * Starts `holdfast dispatcher` with `config` written to `<dir>/<name>.yaml`, the cluster key in
 * HOLDFAST_CLUSTER_KEY; in `netns` through `ip netns exec` when given (same pid: SIGKILL reaches it).
 * The caller stops it (proc.stop()) — bench/lib/procs.ts's exit hook kills it if the caller dies.
 */
export async function startHaDispatcher(o: { name: string; id: number; dir: string; key: Buffer; config: string; netns?: string; cpus?: string }): Promise<HaDispatcher> {
  const file = join(o.dir, `${o.name}.yaml`);
  writeFileSync(file, o.config);
  // `cpus`: pinned with taskset (a CPU list such as "1"), e.g. a backup kept off the master's core.
  // BENCH_DISPATCHER_NODE_ARGS: extra node flags for every dispatcher (e.g. `--cpu-prof --cpu-prof-dir=/tmp/p`,
  // which NODE_OPTIONS refuses), split on spaces.
  const nodeArgs = (process.env['BENCH_DISPATCHER_NODE_ARGS'] ?? '').split(' ').filter((x) => x !== '');
  const argv = [...(o.cpus ? ['taskset', '-c', o.cpus] : []), process.execPath, ...nodeArgs, HOLDFAST_BIN, 'dispatcher', '--config', file];
  const proc = await startProcess({
    name: o.name,
    command: o.netns ? 'ip' : argv[0]!,
    args: o.netns ? ['netns', 'exec', o.netns, ...argv] : argv.slice(1),
    env: { ...process.env, HOLDFAST_CLUSTER_KEY: o.key.toString('hex') },
    readyLine: /^(\{.*"msg":"holdfast dispatcher listening".*\})$/m,
    readyTimeoutMs: HA_START_TIMEOUT_MS,
  });
  const ready = JSON.parse(proc.readyMatch![1]!) as { admin: string };
  const events: GroupEvent[] = [];
  const waiters = new Set<() => void>();
  let partial = '';
  const take = (text: string): void => {
    partial += text;
    let nl: number;
    while ((nl = partial.indexOf('\n')) >= 0) {
      const line = partial.slice(0, nl);
      partial = partial.slice(nl + 1);
      if (!line.startsWith('{') || !(line.includes('"group"') || line.includes(SYNCED_MSG))) continue;
      try {
        const j = JSON.parse(line) as { msg?: string; state?: string; epoch?: number; reason?: string; time?: number };
        const msg = j.msg ?? '';
        const what = j.state ?? (msg === SYNCED_MSG ? 'synced' : msg.endsWith('VIP taken') ? 'taken' : msg.endsWith('VIP released') ? 'released' : msg.includes('failed') ? 'failed' : null);
        if (what === null) continue;
        events.push({ what, ...(j.epoch !== undefined ? { epoch: j.epoch } : {}), ...(j.reason ? { reason: j.reason } : {}), seenAt: Date.now(), time: j.time ?? 0 });
      } catch {
        // not a line of ours
      }
    }
    for (const w of waiters) w();
  };
  take(proc.output());
  proc.child.stdout!.on('data', (s: Buffer | string) => take(String(s)));
  const adminUrl = `http://${ready.admin}`;
  return {
    id: o.id,
    proc,
    admin: ready.admin,
    events,
    waitFor(what, from, timeoutMs) {
      return new Promise((resolve, reject) => {
        const check = (): void => {
          const e = events.slice(from).find((x) => x.what === what);
          if (!e) return;
          waiters.delete(check);
          clearTimeout(timer);
          resolve(e);
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`${o.name}: no '${what}' within ${timeoutMs} ms; events ${JSON.stringify(events.slice(from))}\n--- output ---\n${proc.output()}`));
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
    state() {
      for (let i = events.length - 1; i >= 0; i--) {
        const w = events[i]!.what;
        if (w === 'master' || w === 'backup') return w;
      }
      return null;
    },
    async status() {
      if (o.netns) throw new Error('status() of a dispatcher in a namespace: use the log');
      return JSON.parse(await get(`${adminUrl}/api/v1/status`)) as StatusSnapshot;
    },
    async kill(signal = 'SIGKILL') {
      if (proc.child.exitCode !== null || proc.child.signalCode !== null) return;
      proc.child.kill(signal);
      await proc.exited;
    },
  };
}
