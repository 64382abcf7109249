/**
 * @module Per-client-address limits of a listener: concurrent connections, new connections per
 * second and (HTTP) requests per second, each a token bucket or a count kept per address in a table
 * bounded by `maxAddresses`. A full table first forgets addresses that hold nothing (no connection,
 * buckets full); if every tracked address is active, a new address is let through untracked and
 * counted (`table-full`): the bound protects memory, and refusing every newcomer would let a
 * flood of addresses lock out everyone else.
 */
import type { Clock } from '../core/clock.js';

export interface ClientLimitsConfig {
  /** Open connections per client address; 0: no limit. */
  readonly maxConnectionsPerAddress: number;
  /** New connections per second per address (burst: one second's worth); 0: no limit. */
  readonly connectionsPerSecond: number;
  /** HTTP requests per second per address (burst: one second's worth); 0: no limit. */
  readonly requestsPerSecond: number;
  /** Addresses tracked at most. */
  readonly maxAddresses: number;
}

export type ConnectVerdict = 'accept' | 'too-many-connections' | 'connection-rate';

/** Why a connection or request was refused, or let through untracked. */
export type LimitReason = 'too-many-connections' | 'connection-rate' | 'request-rate' | 'table-full';

/** One tracked address. Exposed only as an opaque ticket to the listener that holds it. */
export interface ClientEntry {
  readonly address: string;
  connections: number;
  connTokens: number;
  reqTokens: number;
  /** clock.now() of the last refill. */
  at: number;
}

export interface ClientTicket {
  readonly verdict: ConnectVerdict;
  /** The entry to release on close (null when refused or untracked). */
  readonly entry: ClientEntry | null;
}

const UNTRACKED: ClientTicket = { verdict: 'accept', entry: null };

export class ClientLimiter {
  private readonly table = new Map<string, ClientEntry>();
  /** Refusals and untracked admissions by reason. */
  readonly counts: Record<LimitReason, number> = { 'too-many-connections': 0, 'connection-rate': 0, 'request-rate': 0, 'table-full': 0 };

  constructor(
    private readonly config: ClientLimitsConfig,
    private readonly clock: Clock,
  ) {}

  /** True when any per-address limit is on (otherwise the listener skips the table entirely). */
  get enabled(): boolean {
    const c = this.config;
    return c.maxConnectionsPerAddress > 0 || c.connectionsPerSecond > 0 || c.requestsPerSecond > 0;
  }

  get trackedAddresses(): number {
    return this.table.size;
  }

  /** A new connection from `address`: accepted (release the ticket's entry on close) or refused. */
  connect(address: string): ClientTicket {
    const c = this.config;
    const entry = this.entryFor(address);
    if (entry === null) {
      this.counts['table-full']++;
      return UNTRACKED;
    }
    if (c.maxConnectionsPerAddress > 0 && entry.connections >= c.maxConnectionsPerAddress) {
      this.counts['too-many-connections']++;
      return { verdict: 'too-many-connections', entry: null };
    }
    if (c.connectionsPerSecond > 0) {
      if (entry.connTokens < 1) {
        this.counts['connection-rate']++;
        return { verdict: 'connection-rate', entry: null };
      }
      entry.connTokens -= 1;
    }
    entry.connections++;
    return { verdict: 'accept', entry };
  }

  /** The connection of `entry` closed. */
  release(entry: ClientEntry | null): void {
    if (entry !== null && entry.connections > 0) entry.connections--;
  }

  /** A request on a connection of `entry`: false when over requestsPerSecond. */
  request(entry: ClientEntry | null): boolean {
    const rate = this.config.requestsPerSecond;
    if (rate <= 0 || entry === null) return true;
    this.refill(entry);
    if (entry.reqTokens < 1) {
      this.counts['request-rate']++;
      return false;
    }
    entry.reqTokens -= 1;
    return true;
  }

  /**
   * Up to `want` request tokens of `address`'s bucket, taken at once for another process that spends
   * them (a dispatcher worker, shared-limits.ts): `granted` 0 means over requestsPerSecond (counted),
   * with the seconds until the next token. An untracked address (full table) gets what it wants.
   */
  takeRequests(address: string, want: number): { granted: number; retryAfterS: number } {
    const rate = this.config.requestsPerSecond;
    if (rate <= 0) return { granted: want, retryAfterS: 0 };
    const entry = this.entryFor(address);
    if (entry === null) {
      this.counts['table-full']++;
      return { granted: want, retryAfterS: 0 };
    }
    const granted = Math.min(want, Math.floor(entry.reqTokens));
    if (granted < 1) {
      this.counts['request-rate']++;
      return { granted: 0, retryAfterS: this.retryAfterS(entry) };
    }
    entry.reqTokens -= granted;
    return { granted, retryAfterS: 0 };
  }

  /** Seconds until `entry` may send another request (for Retry-After), at least 1. */
  retryAfterS(entry: ClientEntry | null): number {
    const rate = this.config.requestsPerSecond;
    if (rate <= 0 || entry === null) return 1;
    return Math.max(1, Math.ceil((1 - entry.reqTokens) / rate));
  }

  private refill(e: ClientEntry): void {
    const now = this.clock.now();
    const dt = (now - e.at) / 1000;
    if (dt <= 0) return;
    e.at = now;
    const c = this.config;
    if (c.connectionsPerSecond > 0) e.connTokens = Math.min(c.connectionsPerSecond, e.connTokens + dt * c.connectionsPerSecond);
    if (c.requestsPerSecond > 0) e.reqTokens = Math.min(c.requestsPerSecond, e.reqTokens + dt * c.requestsPerSecond);
  }

  private isIdle(e: ClientEntry): boolean {
    const c = this.config;
    return e.connections === 0 && (c.connectionsPerSecond <= 0 || e.connTokens >= c.connectionsPerSecond) && (c.requestsPerSecond <= 0 || e.reqTokens >= c.requestsPerSecond);
  }

  private entryFor(address: string): ClientEntry | null {
    let e = this.table.get(address);
    if (e) {
      this.refill(e);
      return e;
    }
    if (this.table.size >= this.config.maxAddresses && !this.sweep()) return null;
    e = { address, connections: 0, connTokens: this.config.connectionsPerSecond, reqTokens: this.config.requestsPerSecond, at: this.clock.now() };
    this.table.set(address, e);
    return e;
  }

  /** Forgets every address that holds nothing; true when room was made. */
  private sweep(): boolean {
    for (const [address, e] of this.table) {
      this.refill(e);
      if (this.isIdle(e)) this.table.delete(address);
    }
    return this.table.size < this.config.maxAddresses;
  }
}
