/**
 * @module Real holdfast clusters for the e2e tests: a `holdfast dispatcher` process whose JSON log is
 * followed line by line (every backend transition, with pino's `time`), `holdfast agent` processes
 * and cluster-backend.ts servers, optionally all inside a network namespace of their own (`ip netns`)
 * so that a test can cut links with nftables without touching the host's rules. Processes start
 * through bench/lib/procs.ts, whose exit hook also kills whatever a failed test leaves behind.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { startProcess, type Proc } from '../../bench/lib/procs.js';
import type { BackendStatus, StatusSnapshot } from '../../src/admin/status.js';

export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const HOLDFAST_BIN = join(ROOT, 'bin', 'holdfast.js');
const BACKEND_SCRIPT = fileURLToPath(new URL('./cluster-backend.js', import.meta.url));
/** Node start plus module loading; generous for two shared cores with other test files running. */
export const START_TIMEOUT_MS = 15_000;

export interface Cluster {
  /** The cluster key every process of this cluster gets through HOLDFAST_CLUSTER_KEY. */
  readonly key: Buffer;
  /** Config files and pid files; removed when the test ends. */
  readonly dir: string;
  /** The network namespace every process runs in, or null for the test's own. */
  readonly netns: string | null;
}

export function newCluster(t: TestContext, netns: string | null = null): Cluster {
  const dir = mkdtempSync(join(tmpdir(), 'holdfast-cluster-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return { key: randomBytes(32), dir, netns };
}

/** `argv` as run in the cluster's namespace (`ip netns exec` execs the program: same pid). */
function inCluster(c: Cluster, argv: readonly string[]): { command: string; args: string[] } {
  return c.netns === null ? { command: argv[0]!, args: argv.slice(1) } : { command: 'ip', args: ['netns', 'exec', c.netns, ...argv] };
}

function clusterEnv(c: Cluster): NodeJS.ProcessEnv {
  return { ...process.env, HOLDFAST_CLUSTER_KEY: c.key.toString('hex') };
}

/** Ends a process however it was left (a SIGSTOPped one gets SIGCONT first, or SIGTERM would wait). */
async function stopProc(p: Proc): Promise<void> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return;
  try {
    p.child.kill('SIGCONT');
  } catch {
    // gone meanwhile
  }
  await p.stop();
}

export function run(command: string, args: readonly string[], timeoutMs = 10_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(command, [...args], { timeout: timeoutMs }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Network namespace and nftables

/**
 * A fresh network namespace with its loopback up, deleted when the test ends (even when it fails);
 * `{ skip }` with the reason when this machine cannot make one (not root, no iproute2, no netns).
 */
export async function newNetns(t: TestContext): Promise<string | { skip: string }> {
  if (process.getuid?.() !== 0) return { skip: 'network namespaces need root' };
  const name = `hf-det-${randomBytes(4).toString('hex')}`;
  const added = await run('ip', ['netns', 'add', name]);
  if (added.code !== 0) return { skip: `ip netns add failed: ${added.stderr.trim() || `exit ${added.code}`}` };
  t.after(async () => {
    await run('ip', ['netns', 'del', name]);
  });
  const lo = await run('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
  if (lo.code !== 0) return { skip: `ip link set lo up failed in ${name}: ${lo.stderr.trim()}` };
  return name;
}

/** Runs one nft command inside `netns`; throws with nft's message when it fails. */
export async function nft(netns: string, ...args: string[]): Promise<void> {
  const r = await run('ip', ['netns', 'exec', netns, 'nft', ...args]);
  if (r.code !== 0) throw new Error(`nft ${args.join(' ')} in ${netns}: ${r.stderr.trim() || `exit ${r.code}`}`);
}

// ---------------------------------------------------------------------------------------------
// Ports, HTTP, metrics

/** A UDP port of 127.0.0.1 that was free a moment ago (the dispatcher does not log its monitor port). */
export function freeUdpPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket('udp4');
    s.once('error', reject);
    s.bind(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

export interface HttpReply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One GET on a fresh connection (no keep-alive pool to outlive the test). */
export function get(url: string, timeoutMs = 5_000): Promise<HttpReply> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (s: string) => (body += s));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url}: no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
  });
}

/**
 * The value of a Prometheus sample `name{labels...}` whose labels include every one of `labels`;
 * the sum when several match, 0 when none does (a counter never incremented is not exported).
 */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const m = /^[^{ ]+(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) continue;
    const have = new Map([...(m[1] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1]!, x[2]!]));
    if (Object.entries(labels).every(([k, v]) => have.get(k) === v)) sum += Number(m[2]);
  }
  return sum;
}

// ---------------------------------------------------------------------------------------------
// Backend servers

export interface BackendProc {
  readonly id: string;
  readonly port: number;
  proc: Proc;
  /** Starts it again on the same port (after a kill). */
  restart(): Promise<void>;
}

export async function startBackend(t: TestContext, c: Cluster, o: { id: string; port: number; backlog?: number }): Promise<BackendProc> {
  const spawnIt = async (): Promise<Proc> => {
    const argv = [process.execPath, BACKEND_SCRIPT, '--port', String(o.port), '--id', o.id, '--backlog', String(o.backlog ?? 0)];
    const p = await startProcess({ name: `backend ${o.id}`, ...inCluster(c, argv), readyLine: /^listening (\d+)$/, readyTimeoutMs: START_TIMEOUT_MS });
    t.after(() => stopProc(p));
    return p;
  };
  const b: BackendProc = {
    id: o.id,
    port: o.port,
    proc: await spawnIt(),
    async restart() {
      b.proc = await spawnIt();
    },
  };
  return b;
}

// ---------------------------------------------------------------------------------------------
// Agents

export interface AgentYaml {
  id: number;
  dispatchers: readonly string[];
  heartbeatIntervalMs: number;
  loadIntervalMs?: number;
  /** The watchdog section as a YAML flow mapping. */
  watchdog: string;
  /** Extra top-level sections (load:, drain:) as YAML text. */
  extra?: string;
}

export interface AgentProc {
  /** The agent's configuration file (for `holdfast agent drain --config`). */
  readonly file: string;
  proc: Proc;
  restart(): Promise<void>;
}

/** Writes the agent's configuration and starts it; resolves once it logs 'holdfast agent running'. */
export async function startAgent(t: TestContext, c: Cluster, o: AgentYaml): Promise<AgentProc> {
  const file = join(c.dir, `agent-${o.id}.yaml`);
  writeFileSync(
    file,
    `version: 1
logging: { level: info, format: json }
agent:
  id: ${o.id}
  dispatchers: [${o.dispatchers.map((d) => JSON.stringify(d)).join(', ')}]
  heartbeatIntervalMs: ${o.heartbeatIntervalMs}
  loadIntervalMs: ${o.loadIntervalMs ?? 1000}
  pidFile: ${JSON.stringify(join(c.dir, `agent-${o.id}.pid`))}
watchdog: ${o.watchdog}
${o.extra ?? ''}
`,
  );
  const spawnIt = async (): Promise<Proc> => {
    const p = await startProcess({
      name: `agent ${o.id}`,
      ...inCluster(c, [process.execPath, HOLDFAST_BIN, 'agent', '--config', file]),
      env: clusterEnv(c),
      readyLine: /holdfast agent running/,
      readyTimeoutMs: START_TIMEOUT_MS,
    });
    t.after(() => stopProc(p));
    return p;
  };
  const a: AgentProc = {
    file,
    proc: await spawnIt(),
    async restart() {
      a.proc = await spawnIt();
    },
  };
  return a;
}

// ---------------------------------------------------------------------------------------------
// The dispatcher

/** A backend state change as the dispatcher logged it. */
export interface Transition {
  service: string;
  backend: string;
  from: string;
  to: string;
  reason: string;
  /** pino's `time`: the dispatcher's Date.now() when it logged the transition (whole ms). */
  time: number;
  /** Date.now() in the test process when the line was read. */
  seenAt: number;
}

export interface DispatcherProc {
  readonly proc: Proc;
  /** Bound address of each service (`host:port`). */
  readonly services: Record<string, string>;
  readonly admin: string | null;
  /** Every transition logged so far, in order. */
  readonly transitions: Transition[];
  /**
   * The first transition at index >= `from` that matches every given field; rejects after
   * `timeoutMs` with the transitions seen and the dispatcher's output.
   */
  waitForTransition(match: Partial<Pick<Transition, 'service' | 'backend' | 'to'>>, from: number, timeoutMs: number): Promise<Transition>;
  /** GET on the admin API (through `ip netns exec` when the cluster has its own namespace). */
  adminGet(path: string): Promise<string>;
  status(): Promise<StatusSnapshot>;
  backend(service: string, id: string): Promise<BackendStatus>;
  metrics(): Promise<string>;
}

/** Starts `holdfast dispatcher` on `yaml` (logging must be json at info or below). */
export async function startDispatcher(t: TestContext, c: Cluster, yaml: string): Promise<DispatcherProc> {
  const file = join(c.dir, 'dispatcher.yaml');
  writeFileSync(file, yaml);
  const proc = await startProcess({
    name: 'dispatcher',
    ...inCluster(c, [process.execPath, HOLDFAST_BIN, 'dispatcher', '--config', file]),
    env: clusterEnv(c),
    readyLine: /^(\{.*"msg":"holdfast dispatcher listening".*\})$/,
    readyTimeoutMs: START_TIMEOUT_MS,
  });
  t.after(() => stopProc(proc));
  const ready = JSON.parse(proc.readyMatch![1]!) as { services: Record<string, string>; admin: string | null };

  const transitions: Transition[] = [];
  const waiters = new Set<() => void>();
  let partial = '';
  const take = (text: string): void => {
    partial += text;
    let nl: number;
    while ((nl = partial.indexOf('\n')) >= 0) {
      const line = partial.slice(0, nl);
      partial = partial.slice(nl + 1);
      if (!line.startsWith('{') || !line.includes('"to":')) continue;
      try {
        const j = JSON.parse(line) as Partial<Transition>;
        if (typeof j.backend === 'string' && typeof j.to === 'string' && typeof j.time === 'number') {
          transitions.push({
            service: String(j.service),
            backend: j.backend,
            from: String(j.from),
            to: j.to,
            reason: String(j.reason),
            time: j.time,
            seenAt: Date.now(),
          });
        }
      } catch {
        // not a log line of ours
      }
    }
    for (const w of waiters) w();
  };
  // Lines logged before this point are in the output tail; later ones arrive on 'data'.
  take(proc.output());
  proc.child.stdout!.on('data', (s: string) => take(s));

  const adminGet = async (path: string): Promise<string> => {
    if (ready.admin === null) throw new Error('the dispatcher runs without admin API');
    const url = `http://${ready.admin}${path}`;
    if (c.netns === null) {
      const r = await get(url);
      if (r.status !== 200) throw new Error(`GET ${url}: ${r.status} ${r.body}`);
      return r.body;
    }
    const script = `require('http').get(process.argv[1],{agent:false},r=>{let b='';r.setEncoding('utf8');r.on('data',s=>b+=s);r.on('end',()=>process.stdout.write(b))}).on('error',e=>{console.error(e.message);process.exit(1)})`;
    const r = await run('ip', ['netns', 'exec', c.netns, process.execPath, '-e', script, url]);
    if (r.code !== 0) throw new Error(`GET ${url} in ${c.netns}: ${r.stderr.trim()}`);
    return r.stdout;
  };

  const d: DispatcherProc = {
    proc,
    services: ready.services,
    admin: ready.admin,
    transitions,
    waitForTransition(match, from, timeoutMs) {
      return new Promise<Transition>((resolve, reject) => {
        const find = (): Transition | undefined =>
          transitions
            .slice(from)
            .find((x) => (match.service ?? x.service) === x.service && (match.backend ?? x.backend) === x.backend && (match.to ?? x.to) === x.to);
        const check = (): void => {
          const found = find();
          if (!found) return;
          waiters.delete(check);
          clearTimeout(timer);
          resolve(found);
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(
            new Error(
              `no transition ${JSON.stringify(match)} within ${timeoutMs} ms; transitions since #${from}: ` +
                `${JSON.stringify(transitions.slice(from))}\n--- dispatcher output ---\n${proc.output()}`,
            ),
          );
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
    adminGet,
    async status() {
      return JSON.parse(await adminGet('/api/v1/status')) as StatusSnapshot;
    },
    async backend(service, id) {
      const s = await d.status();
      const b = s.services.find((x) => x.name === service)?.backends.find((x) => x.id === id);
      if (!b) throw new Error(`status has no backend ${service}/${id}: ${JSON.stringify(s)}`);
      return b;
    },
    metrics: () => adminGet('/metrics'),
  };
  return d;
}

/** A bound address of the test's own namespace, for a process of the test to receive on. */
export async function captureSocket(t: TestContext): Promise<{ address: string; messages: Buffer[] }> {
  const socket = dgram.createSocket('udp4');
  const messages: Buffer[] = [];
  socket.on('message', (m) => messages.push(m));
  await new Promise<void>((r) => socket.bind(0, '127.0.0.1', r));
  t.after(() => socket.close());
  return { address: `127.0.0.1:${(socket.address() as AddressInfo).port}`, messages };
}

/** Sends each datagram to `address` (host:port) from a socket of its own, then closes it. */
export async function sendDatagrams(address: string, messages: readonly Buffer[]): Promise<void> {
  const [host, port] = [address.slice(0, address.lastIndexOf(':')), Number(address.slice(address.lastIndexOf(':') + 1))];
  const socket = dgram.createSocket('udp4');
  try {
    for (const m of messages) await new Promise<void>((resolve, reject) => socket.send(m, port, host, (err) => (err ? reject(err) : resolve())));
  } finally {
    socket.close();
  }
}
