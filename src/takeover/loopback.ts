/**
 * @module Loopback identity takeover, the embedded default (issue 7): the VIP is an address in
 * 127.0.0.0/8, which Linux routes to `lo` without any configuration, so taking it over needs no
 * privileges — the new master binds the group's service listeners on it, the old one closes them.
 * The binding itself is the composition root's (a service's listener or datagram socket): it hands
 * one `VipBind` per listener, and this module only decides when they run and undoes them.
 *
 * Mutual exclusion comes from the kernel: two processes cannot bind the same VIP:port (no
 * SO_REUSEPORT here). A new master whose predecessor is hung rather than dead (a SIGSTOP, a stall:
 * the partition case) finds its ports taken; it retries every `retryIntervalMs` until the old
 * master hears the newer epoch, steps down and releases them, or until this node is demoted.
 */
import net from 'node:net';
import type { Clock, TimerHandle } from '../core/clock.js';
import { TakeoverError } from '../core/errors.js';
import { Serial, type IdentityTakeover } from './identity-takeover.js';

/** Undoes one binding (closes the listener). */
export type VipRelease = () => Promise<void>;
/** Binds one listener on the VIP and resolves with its release; rejects with the bind error. */
export type VipBind = (vip: string) => Promise<VipRelease>;

/** How often a port still held by the previous master is tried again. */
export const LOOPBACK_RETRY_INTERVAL_MS = 5;

export interface LoopbackTakeoverOptions {
  /** An IPv4 address in 127.0.0.0/8. */
  readonly vip: string;
  /** One per listener that moves with the VIP, bound in this order and released in reverse. */
  readonly binds: readonly VipBind[];
  readonly clock: Clock;
  readonly retryIntervalMs?: number;
}

/** Whether `vip` is an IPv4 address in 127.0.0.0/8. */
export function isLoopbackVip(vip: string): boolean {
  return net.isIPv4(vip) && vip.split('.')[0] === '127';
}

/** Whether `err` (or an error in its cause chain) is EADDRINUSE. */
function addressInUse(err: unknown): boolean {
  for (let e = err, depth = 0; e !== null && typeof e === 'object' && depth < 8; e = (e as { cause?: unknown }).cause, depth++) {
    if ((e as { code?: unknown }).code === 'EADDRINUSE') return true;
  }
  return false;
}

function describe(err: unknown): string {
  const parts: string[] = [];
  for (let e = err, depth = 0; e !== undefined && e !== null && depth < 8; e = (e as { cause?: unknown }).cause, depth++) {
    parts.push(e instanceof Error ? e.message : String(e));
    if (typeof e !== 'object') break;
  }
  return parts.join(': ');
}

export class LoopbackTakeover implements IdentityTakeover {
  readonly vip: string;
  readonly #binds: readonly VipBind[];
  readonly #clock: Clock;
  readonly #retryMs: number;
  readonly #serial = new Serial();
  /** Releases of the listeners bound so far, in bind order. */
  #held: VipRelease[] = [];
  #acquired = false;
  /** The intent of the latest call: an acquire waiting for a port gives up when it turns false. */
  #wanted = false;
  #retry: { timer: TimerHandle; wake: () => void } | null = null;
  /** Binds that failed with EADDRINUSE and were tried again (the previous master still held the port). */
  retries = 0;

  constructor(o: LoopbackTakeoverOptions) {
    if (!isLoopbackVip(o.vip)) throw new RangeError(`vip: expected an IPv4 address in 127.0.0.0/8, received ${JSON.stringify(o.vip)}`);
    this.vip = o.vip;
    this.#binds = [...o.binds];
    this.#clock = o.clock;
    this.#retryMs = o.retryIntervalMs ?? LOOPBACK_RETRY_INTERVAL_MS;
  }

  /** Whether every listener is bound on the VIP. */
  get acquired(): boolean {
    return this.#acquired;
  }

  /**
   * Binds every listener on the VIP. A port in use is retried until free; a release() meanwhile
   * ends the wait, undoes what was bound and resolves holding nothing. Any other bind error undoes
   * what was bound and rejects with TakeoverError.
   */
  acquire(): Promise<void> {
    this.#wanted = true;
    return this.#serial.run(() => this.#acquire());
  }

  /** Closes every listener bound on the VIP, in reverse order; all are tried even when one fails. */
  release(): Promise<void> {
    this.#wanted = false;
    this.#retry?.wake();
    return this.#serial.run(() => this.#release());
  }

  async #acquire(): Promise<void> {
    if (this.#acquired || !this.#wanted) return;
    while (this.#held.length < this.#binds.length) {
      const bind = this.#binds[this.#held.length]!;
      try {
        this.#held.push(await bind(this.vip));
      } catch (err) {
        if (addressInUse(err) && this.#wanted) {
          this.retries++;
          await this.#sleep();
          if (this.#wanted) continue;
        }
        await this.#undo();
        if (!this.#wanted) return;
        throw new TakeoverError(`bind ${this.vip}`, describe(err), { cause: err });
      }
      if (!this.#wanted) {
        await this.#undo();
        return;
      }
    }
    this.#acquired = true;
  }

  async #release(): Promise<void> {
    const failures = await this.#undo();
    if (failures.length > 0) throw new TakeoverError(`release ${this.vip}`, failures.map(describe).join('; '), { cause: failures[0] });
  }

  /** Releases everything held, newest first; returns the errors. */
  async #undo(): Promise<unknown[]> {
    this.#acquired = false;
    const failures: unknown[] = [];
    while (this.#held.length > 0) {
      const release = this.#held.pop()!;
      try {
        await release();
      } catch (err) {
        failures.push(err);
      }
    }
    return failures;
  }

  #sleep(): Promise<void> {
    return new Promise<void>((resolve) => {
      const wake = (): void => {
        this.#retry?.timer.cancel();
        this.#retry = null;
        resolve();
      };
      this.#retry = { timer: this.#clock.setTimeout(wake, this.#retryMs), wake };
    });
  }
}
