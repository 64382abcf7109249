/**
 * @module Cluster membership on etcd v3 (`cluster.membership: etcd`, issue 20): this dispatcher
 * registers under `<prefix>dispatchers/<id>` with a lease, watches the set of dispatchers and of
 * backends (`<prefix>backends/<service>/<id>`), and reads the shared configuration
 * (`<prefix>config`). etcd is the distributed engine; this module only keeps a view of it.
 *
 * Faults: etcd unreachable at start is `MembershipUnavailableError`, unless a last-known view was
 * saved (`lastKnownFile`): then the view is loaded with a 'stale' event and etcd is retried. etcd lost
 * while running: the last view stays in force, the loss is counted ('lost'), and the registration
 * is renewed when etcd answers again. A dispatcher cut off from etcd for longer than its lease
 * (`leaseTtlS`) disappears from everyone else's view: etcd deletes its key.
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { Etcd3, type Lease, type Watcher } from 'etcd3';
import { channels, type MembershipEvent } from '../core/diagnostics.js';
import { realClock, type Clock, type TimerHandle } from '../core/clock.js';
import { MembershipUnavailableError } from '../core/errors.js';

export interface EtcdMembershipOptions {
  /** `host:port` of etcd's client API. */
  readonly endpoints: readonly string[];
  /** Key prefix of this cluster, ending in "/". */
  readonly prefix: string;
  /** This dispatcher's id (unique in the cluster). */
  readonly id: string;
  /** What others learn of this dispatcher (its forwarding address). */
  readonly address: string;
  /** Lease of the registration: a dispatcher silent for this long leaves everyone's view. */
  readonly leaseTtlS: number;
  /** How long a start waits for etcd before giving up (or falling back to lastKnownFile). */
  readonly dialTimeoutMs: number;
  /** Where the view is saved on every change, and read from when etcd is unreachable at start. */
  readonly lastKnownFile?: string;
  /** etcd's user and password (etcd's own authentication, `auth enable`). */
  readonly auth?: { readonly username: string; readonly password: string };
  /** TLS to etcd: the CA that signs etcd's certificate; a client pair when etcd asks for one. */
  readonly tls?: { readonly ca: Buffer; readonly cert?: Buffer; readonly key?: Buffer };
  /** Keys read under the prefix at most (memory bound); more are ignored and counted. */
  readonly maxKeys?: number;
  readonly clock?: Clock;
}

export interface DispatcherEntry {
  readonly id: string;
  readonly address: string;
}

/** What the cluster looks like from here. */
export interface MembershipView {
  /** Live dispatchers (registered with an unexpired lease), sorted by id. */
  readonly dispatchers: readonly DispatcherEntry[];
  /** Per service that has any backend key: the ids of its member backends. */
  readonly backends: ReadonlyMap<string, ReadonlySet<string>>;
  /** The YAML text under `<prefix>config`, or null. */
  readonly sharedConfig: string | null;
}

export type MembershipState = 'connected' | 'disconnected' | 'stale' | 'closed';

const DEFAULT_MAX_KEYS = 10_000;
/** Retry of the registration after etcd was lost: first delay, cap (jittered exponential). */
const RETRY_INITIAL_MS = 250;
const RETRY_MAX_MS = 2000;

export class EtcdMembership {
  private readonly kv = new Map<string, string>();
  private current: MembershipView = { dispatchers: [], backends: new Map(), sharedConfig: null };
  private stateNow: MembershipState = 'disconnected';
  private lease: Lease | null = null;
  private watcher: Watcher | null = null;
  private retry: TimerHandle | null = null;
  private retryDelayMs = RETRY_INITIAL_MS;
  private readonly listeners: ((view: MembershipView) => void)[] = [];
  private readonly clock: Clock;
  /** Times etcd was lost while running. */
  lost = 0;
  /** Keys ignored because the prefix held more than maxKeys. */
  ignoredKeys = 0;

  private constructor(
    private readonly options: EtcdMembershipOptions,
    private readonly client: Etcd3,
  ) {
    this.clock = options.clock ?? realClock;
  }

  /**
   * Connects, reads the prefix, registers and starts watching. Throws MembershipUnavailableError
   * when etcd does not answer within dialTimeoutMs and no last-known view can be read.
   */
  static async start(options: EtcdMembershipOptions): Promise<EtcdMembership> {
    const client = new Etcd3({
      hosts: options.endpoints.map((e) => `${options.tls ? 'https' : 'http'}://${e}`),
      dialTimeout: options.dialTimeoutMs,
      ...(options.tls
        ? { credentials: { rootCertificate: options.tls.ca, ...(options.tls.cert && options.tls.key ? { certChain: options.tls.cert, privateKey: options.tls.key } : {}) } }
        : {}),
      ...(options.auth ? { auth: { username: options.auth.username, password: options.auth.password } } : {}),
    });
    const m = new EtcdMembership(options, client);
    try {
      await withTimeout(m.connect(), options.dialTimeoutMs, 'no answer');
      return m;
    } catch (err) {
      await m.dropSession();
      const detail = err instanceof Error ? err.message : String(err);
      if (options.lastKnownFile === undefined) {
        client.close();
        throw new MembershipUnavailableError(options.endpoints, `${detail} (and no cluster.etcd.lastKnownFile to start from)`, { cause: err });
      }
      let saved: string;
      try {
        saved = readFileSync(options.lastKnownFile, 'utf8');
      } catch (readErr) {
        client.close();
        throw new MembershipUnavailableError(options.endpoints, `${detail}; last-known view ${options.lastKnownFile} unreadable`, { cause: readErr });
      }
      m.loadSaved(saved, options.lastKnownFile, options.endpoints);
      m.stateNow = 'stale';
      m.publish('stale', `etcd unreachable (${detail}): serving the last-known view of ${options.lastKnownFile}`);
      m.scheduleRetry();
      return m;
    }
  }

  get state(): MembershipState {
    return this.stateNow;
  }

  get view(): MembershipView {
    return this.current;
  }

  /** Called with the new view after every change. Returns an unsubscribe. */
  onChange(fn: (view: MembershipView) => void): () => void {
    this.listeners.push(fn);
    return () => {
      const i = this.listeners.indexOf(fn);
      if (i >= 0) this.listeners.splice(i, 1);
    };
  }

  /** Leaves the cluster (revokes the lease: others see it at once) and disconnects. */
  async close(): Promise<void> {
    if (this.stateNow === 'closed') return;
    this.stateNow = 'closed';
    this.retry?.cancel();
    this.retry = null;
    const lease = this.lease;
    this.lease = null;
    await this.watcher?.cancel().catch(() => {});
    this.watcher = null;
    if (lease) await withTimeout(lease.revoke(), this.options.dialTimeoutMs, 'revoke').catch(() => {});
    this.client.close();
  }

  /** SIGKILL-like: stop talking to etcd without revoking (tests of lease expiry). */
  destroy(): void {
    if (this.stateNow === 'closed') return;
    this.stateNow = 'closed';
    this.retry?.cancel();
    this.lease?.removeAllListeners();
    this.lease?.release();
    this.lease = null;
    void this.watcher?.cancel().catch(() => {});
    this.watcher = null;
    this.client.close();
  }

  private get prefix(): string {
    return this.options.prefix;
  }

  /** Registers with a new lease, reads everything under the prefix, watches from that revision. */
  private async connect(): Promise<void> {
    const { prefix, id, address, leaseTtlS } = this.options;
    const lease = this.client.lease(leaseTtlS, { autoKeepAlive: true });
    this.lease = lease;
    lease.on('lost', (err) => this.onLeaseLost(lease, err));
    lease.on('keepaliveFailed', () => this.onEtcdLost('keepalive failed'));
    lease.on('keepaliveSucceeded', () => this.onEtcdBack(lease));
    await lease.put(`${prefix}dispatchers/${id}`).value(JSON.stringify({ id, address }));
    await this.resync();
    if (this.watcher === null) {
      const watcher = await this.client.watch().prefix(prefix).create();
      this.watcher = watcher;
      watcher.on('put', (kv) => this.apply(kv.key.toString(), kv.value.toString()));
      watcher.on('delete', (kv) => this.apply(kv.key.toString(), null));
      watcher.on('disconnected', () => this.onEtcdLost('watch disconnected'));
      watcher.on('connected', () => void this.resync().catch(() => {}));
      watcher.on('error', () => this.onEtcdLost('watch error'));
    }
    this.stateNow = 'connected';
    this.retryDelayMs = RETRY_INITIAL_MS;
  }

  /** Reads the whole prefix again (after a reconnect: changes made meanwhile). */
  private async resync(): Promise<void> {
    const all = await this.client.getAll().prefix(this.prefix).strings();
    this.kv.clear();
    this.ignoredKeys = 0;
    const max = this.options.maxKeys ?? DEFAULT_MAX_KEYS;
    for (const [k, v] of Object.entries(all)) {
      if (this.kv.size >= max) this.ignoredKeys++;
      else this.kv.set(k, v);
    }
    this.rebuild();
  }

  private apply(key: string, value: string | null): void {
    if (this.stateNow === 'closed') return;
    if (value === null) this.kv.delete(key);
    else if (this.kv.has(key) || this.kv.size < (this.options.maxKeys ?? DEFAULT_MAX_KEYS)) this.kv.set(key, value);
    else this.ignoredKeys++;
    this.rebuild();
  }

  private rebuild(): void {
    const dispatchers: DispatcherEntry[] = [];
    const backends = new Map<string, Set<string>>();
    let sharedConfig: string | null = null;
    for (const [key, value] of this.kv) {
      const rest = key.slice(this.prefix.length);
      if (rest === 'config') sharedConfig = value;
      else if (rest.startsWith('dispatchers/')) dispatchers.push({ id: rest.slice('dispatchers/'.length), address: addressOf(value) });
      else if (rest.startsWith('backends/')) {
        const [service, id] = splitOnce(rest.slice('backends/'.length), '/');
        if (service === '' || id === '') continue;
        let set = backends.get(service);
        if (!set) backends.set(service, (set = new Set()));
        set.add(id);
      }
    }
    dispatchers.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    const next: MembershipView = { dispatchers, backends, sharedConfig };
    if (sameView(next, this.current)) return;
    this.current = next;
    this.save();
    this.publish('view');
    for (const fn of [...this.listeners]) fn(next);
  }

  private onEtcdLost(detail: string): void {
    if (this.stateNow !== 'connected') return;
    this.stateNow = 'disconnected';
    this.lost++;
    this.publish('lost', `${detail}: serving the last view`);
  }

  private onEtcdBack(lease: Lease): void {
    if (lease !== this.lease || this.stateNow !== 'disconnected') return;
    this.stateNow = 'connected';
    this.publish('restored');
    void this.resync().catch(() => this.onEtcdLost('resync failed'));
  }

  /** The lease expired or could not be kept: register again with a new one, with backoff. */
  private onLeaseLost(lease: Lease, err: Error): void {
    if (lease !== this.lease || this.stateNow === 'closed') return;
    this.onEtcdLost(`lease lost (${err.message})`);
    this.lease = null;
    lease.removeAllListeners();
    this.scheduleRetry();
  }

  private scheduleRetry(): void {
    if (this.retry !== null || this.stateNow === 'closed') return;
    const delay = this.retryDelayMs * (0.5 + Math.random() / 2);
    this.retryDelayMs = Math.min(this.retryDelayMs * 2, RETRY_MAX_MS);
    this.retry = this.clock.setTimeout(() => {
      this.retry = null;
      if (this.stateNow === 'closed') return;
      const was = this.stateNow;
      withTimeout(this.connect(), this.options.dialTimeoutMs, 'no answer').then(
        () => {
          if (was !== 'connected') this.publish('restored');
        },
        () => {
          void this.dropSession();
          this.scheduleRetry();
        },
      );
    }, delay);
  }

  /** Forgets a half-made registration (a timed-out connect). */
  private async dropSession(): Promise<void> {
    const lease = this.lease;
    this.lease = null;
    if (lease) {
      lease.removeAllListeners();
      lease.on('lost', () => {});
      await withTimeout(lease.revoke(), 200, 'revoke').catch(() => {});
    }
  }

  private save(): void {
    const file = this.options.lastKnownFile;
    if (file === undefined) return;
    try {
      mkdirSync(dirname(file), { recursive: true });
      const tmp = `${file}.tmp`;
      writeFileSync(tmp, JSON.stringify({ version: 1, kv: Object.fromEntries(this.kv) }), { mode: 0o600 });
      renameSync(tmp, file);
    } catch {
      // A read-only disk must not stop the dispatcher: the next change tries again.
    }
  }

  private loadSaved(text: string, file: string, endpoints: readonly string[]): void {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      throw new MembershipUnavailableError(endpoints, `last-known view ${file} is not JSON`, { cause: err });
    }
    const kv = (parsed as { version?: unknown; kv?: unknown }).kv;
    if ((parsed as { version?: unknown }).version !== 1 || typeof kv !== 'object' || kv === null) {
      throw new MembershipUnavailableError(endpoints, `last-known view ${file}: expected {"version":1,"kv":{…}}`);
    }
    for (const [k, v] of Object.entries(kv as Record<string, unknown>)) if (typeof v === 'string') this.kv.set(k, v);
    // Our own registration is not a fact of the stale view: other dispatchers may have expired us.
    this.rebuild();
  }

  private publish(type: MembershipEvent['type'], detail?: string): void {
    if (!channels.membership.hasSubscribers) return;
    channels.membership.publish({ type, dispatchers: this.current.dispatchers.length, detail } satisfies MembershipEvent);
  }
}

function addressOf(value: string): string {
  try {
    const v = JSON.parse(value) as { address?: unknown };
    return typeof v.address === 'string' ? v.address : '';
  } catch {
    return '';
  }
}

function splitOnce(s: string, sep: string): [string, string] {
  const i = s.indexOf(sep);
  return i < 0 ? [s, ''] : [s.slice(0, i), s.slice(i + 1)];
}

function sameView(a: MembershipView, b: MembershipView): boolean {
  if (a.sharedConfig !== b.sharedConfig || a.dispatchers.length !== b.dispatchers.length || a.backends.size !== b.backends.size) return false;
  for (let i = 0; i < a.dispatchers.length; i++) {
    if (a.dispatchers[i]!.id !== b.dispatchers[i]!.id || a.dispatchers[i]!.address !== b.dispatchers[i]!.address) return false;
  }
  for (const [service, ids] of a.backends) {
    const other = b.backends.get(service);
    if (!other || other.size !== ids.size) return false;
    for (const id of ids) if (!other.has(id)) return false;
  }
  return true;
}

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} within ${ms} ms`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

