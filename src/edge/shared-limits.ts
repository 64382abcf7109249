/**
 * @module Per-address connection limits kept by one authority for several processes (issue 16,
 * `dispatcher.workers`): the primary's ClientLimiter counts every worker's connections, so that
 * `maxConnectionsPerAddress` and `connectionsPerSecond` hold for the whole dispatcher, not per worker.
 * A worker asks for a slot at accept (SharedGate, one IPC round trip per connection, before any TLS
 * handshake) and gives it back at close; the authority remembers what each worker holds, so a
 * worker that dies gives back everything at once. `requestsPerSecond` is one token bucket per address
 * at the authority; workers take tokens from it in small batches (requestTokenBatch).
 */
import type { ClientEntry, ClientLimiter, ConnectVerdict } from './client-limits.js';

/** What a worker's edge asks of the authority. */
export interface SharedGate {
  /** A slot for a new connection from `address`; `done` gets the verdict (later: it is asked of another process). */
  acquire(address: string, done: (verdict: ConnectVerdict) => void): void;
  /** A connection that got 'accept' for `address` closed. */
  release(address: string): void;
  /**
   * Up to `want` request tokens of `address` (requestsPerSecond is one bucket for every worker);
   * `done` gets how many (0: over the rate, retry after `retryAfterS`).
   */
  takeRequests(address: string, want: number, done: (granted: number, retryAfterS: number) => void): void;
}

/**
 * Request tokens a worker takes from the authority at once: a tenth of a second's worth, at least one.
 * Tokens a worker took and did not spend are lost to that address (it can be refused a little early,
 * never let over the rate).
 */
export function requestTokenBatch(requestsPerSecond: number): number {
  return Math.max(1, Math.floor(requestsPerSecond / 10));
}

interface Held {
  readonly entry: ClientEntry | null;
  count: number;
}

/** The authority's side: the limiter that decides, and what each holder (a worker index) holds. */
export class AddressLeases {
  private readonly holders = new Map<number, Map<string, Held>>();

  constructor(
    private readonly limiter: ClientLimiter,
    private readonly onRefuse?: (verdict: Exclude<ConnectVerdict, 'accept'>, address: string) => void,
  ) {}

  /** A connection from `address` on `holder`: counted and accepted, or refused (counted by the limiter). */
  acquire(holder: number, address: string): ConnectVerdict {
    const ticket = this.limiter.connect(address);
    if (ticket.verdict !== 'accept') {
      this.onRefuse?.(ticket.verdict, address);
      return ticket.verdict;
    }
    let byAddress = this.holders.get(holder);
    if (byAddress === undefined) {
      byAddress = new Map();
      this.holders.set(holder, byAddress);
    }
    const held = byAddress.get(address);
    // One entry per address in the limiter (it keeps an entry that holds connections): the same object.
    if (held === undefined) byAddress.set(address, { entry: ticket.entry, count: 1 });
    else held.count++;
    return 'accept';
  }

  /** One of `holder`'s connections from `address` closed (a release for nothing held is ignored). */
  release(holder: number, address: string): void {
    const byAddress = this.holders.get(holder);
    const held = byAddress?.get(address);
    if (held === undefined) return;
    this.limiter.release(held.entry);
    if (--held.count === 0) byAddress!.delete(address);
  }

  /** Request tokens for `address` (the limiter's bucket, shared by every holder). */
  takeRequests(address: string, want: number): { granted: number; retryAfterS: number } {
    return this.limiter.takeRequests(address, want);
  }

  /** `holder` is gone (a worker died): every connection it held is released. Returns how many. */
  dropHolder(holder: number): number {
    const byAddress = this.holders.get(holder);
    if (byAddress === undefined) return 0;
    let n = 0;
    for (const held of byAddress.values()) {
      for (let i = 0; i < held.count; i++) this.limiter.release(held.entry);
      n += held.count;
    }
    this.holders.delete(holder);
    return n;
  }

  /** Connections `holder` holds (for tests and status). */
  heldBy(holder: number): number {
    let n = 0;
    for (const held of this.holders.get(holder)?.values() ?? []) n += held.count;
    return n;
  }
}
