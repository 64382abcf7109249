/**
 * @module Election nodes as real processes (test/fixtures/election-node.ts) for bench/election.ts
 * and test/e2e/election.test.ts: start one, follow its JSON event lines, wait for an event, signal
 * it; plus a prober that sends datagrams to a VIP and records which node answered when.
 */
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { fileURLToPath } from 'node:url';
import { startProcess, type Proc } from './procs.js';

const RUNNER = fileURLToPath(new URL('../../test/fixtures/election-node.js', import.meta.url));
/** Node start and module loading, on a busy machine. */
export const NODE_START_TIMEOUT_MS = 15_000;

/** performance.timeOrigin + performance.now(): the `wall` every event line carries, for this process. */
export const wallNow = (): number => performance.timeOrigin + performance.now();

export interface NodeSpec {
  node: number;
  groupId: number;
  priority: number;
  intervalMs: number;
  preempt: boolean;
  listen: string;
  peers: string[];
  vip?: string;
}

export type NodeEvent =
  | { event: 'ready'; listen: string; wall: number }
  | { event: 'state'; type: 'master' | 'backup'; epoch: number; reason: string; master: number | null; wall: number }
  | { event: 'heard'; sender: number; epoch: number; priority: number; wall: number }
  | { event: 'vip'; state: 'acquired' | 'released'; wall: number }
  | { event: 'error'; message: string; wall: number };

export type StateEvent = Extract<NodeEvent, { event: 'state' }>;

/** A fresh cluster key for one run, hex, as HOLDFAST_CLUSTER_KEY takes it. */
export function newKeyHex(): string {
  return randomBytes(32).toString('hex');
}

/** A UDP port of 127.0.0.1 free a moment ago. */
export function freeUdpPort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket('udp4');
    s.once('error', reject);
    s.bind(0, host, () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

export class ElectionNode {
  readonly events: NodeEvent[] = [];
  private readonly waiters = new Set<() => void>();
  private partial = '';

  private constructor(
    readonly spec: NodeSpec,
    readonly proc: Proc,
  ) {}

  /** `prefix`: a command the node runs under, e.g. `['chrt', '--rr', '10']` for real-time scheduling. */
  static async start(spec: NodeSpec, keyHex: string, prefix: readonly string[] = []): Promise<ElectionNode> {
    const argv = [...prefix, process.execPath, RUNNER, JSON.stringify(spec)];
    const proc = await startProcess({
      name: `election-node-${spec.node}`,
      command: argv[0]!,
      args: argv.slice(1),
      env: { ...process.env, HOLDFAST_CLUSTER_KEY: keyHex },
      readyLine: /"event":"ready"/,
      readyTimeoutMs: NODE_START_TIMEOUT_MS,
    });
    const n = new ElectionNode(spec, proc);
    n.take(proc.output());
    proc.child.stdout!.on('data', (s: string) => n.take(s));
    return n;
  }

  get id(): number {
    return this.spec.node;
  }

  private take(text: string): void {
    this.partial += text;
    let nl: number;
    while ((nl = this.partial.indexOf('\n')) >= 0) {
      const line = this.partial.slice(0, nl);
      this.partial = this.partial.slice(nl + 1);
      if (!line.startsWith('{"event"')) continue;
      try {
        this.events.push(JSON.parse(line) as NodeEvent);
      } catch {
        // a torn line cannot happen on a pipe below PIPE_BUF; ignore anything else
      }
    }
    for (const w of this.waiters) w();
  }

  states(from = 0): StateEvent[] {
    return this.events.slice(from).filter((e): e is StateEvent => e.event === 'state');
  }

  /** The latest state, or null before the first. */
  get state(): 'master' | 'backup' | null {
    return this.states().at(-1)?.type ?? null;
  }

  /** Resolves with the first event at index >= from that matches; rejects after timeoutMs. */
  waitFor<E extends NodeEvent>(match: (e: NodeEvent) => e is E, from: number, timeoutMs: number, what: string): Promise<E>;
  waitFor(match: (e: NodeEvent) => boolean, from: number, timeoutMs: number, what: string): Promise<NodeEvent>;
  waitFor(match: (e: NodeEvent) => boolean, from: number, timeoutMs: number, what: string): Promise<NodeEvent> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        for (let i = from; i < this.events.length; i++) {
          const e = this.events[i]!;
          if (match(e)) {
            this.waiters.delete(check);
            clearTimeout(timer);
            resolve(e);
            return;
          }
        }
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`node ${this.id}: no ${what} within ${timeoutMs} ms; events: ${JSON.stringify(this.events.slice(-20))}\n${this.proc.output().slice(-2000)}`));
      }, timeoutMs);
      this.waiters.add(check);
      check();
    });
  }

  /** The next state change to `type` at index >= from. */
  waitState(type: 'master' | 'backup', from: number, timeoutMs: number): Promise<StateEvent> {
    return this.waitFor((e): e is StateEvent => e.event === 'state' && e.type === type, from, timeoutMs, `${type} state`);
  }

  /** Sends `signal`; returns the wall time just before the kill(2). */
  signal(signal: NodeJS.Signals): number {
    const at = wallNow();
    this.proc.child.kill(signal);
    return at;
  }

  /** Ends it whatever its state (a stopped one gets SIGCONT so that it can die). */
  async stop(): Promise<void> {
    const c = this.proc.child;
    if (c.exitCode !== null || c.signalCode !== null) return;
    c.kill('SIGKILL');
    try {
      c.kill('SIGCONT');
    } catch {
      // gone
    }
    await this.proc.exited;
  }
}

/**
 * Sends a datagram to a VIP every `everyMs` and records each answer (the answering node's id) with
 * its wall time. `firstAnswerFrom(id, after)` is when that node first answered after a time.
 */
export class VipProber {
  readonly answers: Array<{ node: number; wall: number }> = [];
  private readonly socket = dgram.createSocket('udp4');
  private timer: NodeJS.Timeout | null = null;
  private readonly waiters = new Set<() => void>();

  private constructor(private readonly vip: { host: string; port: number }) {}

  static async start(vip: { host: string; port: number }, everyMs = 1): Promise<VipProber> {
    const p = new VipProber(vip);
    await new Promise<void>((r) => p.socket.bind(0, '127.0.0.1', r));
    p.socket.on('error', () => {});
    p.socket.on('message', (m) => {
      p.answers.push({ node: Number(m.toString()), wall: wallNow() });
      for (const w of p.waiters) w();
    });
    const ping = Buffer.from('?');
    p.timer = setInterval(() => p.socket.send(ping, p.vip.port, p.vip.host), everyMs);
    return p;
  }

  firstAnswerFrom(node: number, after: number): number | null {
    return this.answers.find((a) => a.node === node && a.wall >= after)?.wall ?? null;
  }

  /** Resolves with the wall time of the first answer from `node` after `after`; null after timeoutMs. */
  waitAnswer(node: number, after: number, timeoutMs: number): Promise<number | null> {
    return new Promise((resolve) => {
      const check = (): void => {
        const at = this.firstAnswerFrom(node, after);
        if (at === null) return;
        this.waiters.delete(check);
        clearTimeout(timer);
        resolve(at);
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        resolve(null);
      }, timeoutMs);
      this.waiters.add(check);
      check();
    });
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.socket.close();
  }
}
