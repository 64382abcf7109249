/**
 * @module HANet's interface manager (§2.2.2, §3.3): from the GOOD interfaces it picks the next
 * ACTIVE one — public before private, then faster before slower (the configured speed), then the
 * configured order — and it fails back to a better interface only once that one has been GOOD for
 * the hold time, so a flapping link does not move the service address back and forth. The choice
 * is a value computed from a snapshot (`chooseActive`); `InterfaceManager` keeps the GOOD flags
 * from the link monitors and asks for a new choice when a verdict changes or a hold time ends.
 */
import type { Clock, TimerHandle } from '../core/clock.js';
import type { LinkMonitor } from './link-monitor.js';

export type InterfaceRole = 'public' | 'private';

export interface InterfaceView {
  readonly name: string;
  readonly role: InterfaceRole;
  readonly speedMbps: number;
  /** Every monitor of the interface says GOOD. */
  readonly good: boolean;
  /** Clock time since which it has been GOOD (null when not GOOD). */
  readonly goodSince: number | null;
}

export type Choice =
  /** Keep the active interface. `holdUntil`: a better one becomes eligible then (re-ask at that time). */
  | { readonly kind: 'stay'; readonly holdUntil: number | null }
  /** Make `to` ACTIVE. */
  | { readonly kind: 'switch'; readonly to: string; readonly reason: 'initial' | 'failed' | 'failback' }
  /** No interface is GOOD: nothing to switch to. */
  | { readonly kind: 'none' };

/** Negative when `a` is the better interface: public first, then faster; ties keep the configured order. */
export function compareInterfaces(a: InterfaceView, b: InterfaceView): number {
  if (a.role !== b.role) return a.role === 'public' ? -1 : 1;
  return b.speedMbps - a.speedMbps;
}

/**
 * The interface manager's decision (HANet §2.2.2). `interfaces` in configured order; `active` the
 * ACTIVE interface's name or null; `now` clock time; `holdMs` the failback hold time.
 * - No active interface: the best GOOD one ('initial').
 * - The active one is not GOOD: the best GOOD one at once ('failed'); none GOOD: 'none'.
 * - The active one is GOOD: the best GOOD interface better than it that has been GOOD for at least
 *   holdMs ('failback'); otherwise stay, saying when the next better one's hold time ends.
 */
export function chooseActive(interfaces: readonly InterfaceView[], active: string | null, now: number, holdMs: number): Choice {
  const good = interfaces.filter((i) => i.good);
  // Array.prototype.sort is stable: equal interfaces keep the configured order.
  const ranked = [...good].sort(compareInterfaces);
  const current = active === null ? undefined : interfaces.find((i) => i.name === active);
  if (current === undefined) return ranked.length > 0 ? { kind: 'switch', to: ranked[0]!.name, reason: 'initial' } : { kind: 'none' };
  if (!current.good) return ranked.length > 0 ? { kind: 'switch', to: ranked[0]!.name, reason: 'failed' } : { kind: 'none' };
  let holdUntil: number | null = null;
  for (const candidate of ranked) {
    if (candidate.name === current.name || compareInterfaces(candidate, current) >= 0) break;
    const eligibleAt = (candidate.goodSince ?? now) + holdMs;
    if (eligibleAt <= now) return { kind: 'switch', to: candidate.name, reason: 'failback' };
    holdUntil = holdUntil === null ? eligibleAt : Math.min(holdUntil, eligibleAt);
  }
  return { kind: 'stay', holdUntil };
}

export interface ManagedInterface {
  readonly name: string;
  readonly role: InterfaceRole;
  readonly speedMbps: number;
  readonly monitors: readonly LinkMonitor[];
}

/**
 * Keeps each interface's GOOD flag (all its monitors GOOD) and since when, and calls `decide` with
 * a fresh snapshot whenever a flag changes or a failback hold time ends.
 */
export class InterfaceManager {
  readonly #ifaces: readonly ManagedInterface[];
  readonly #clock: Clock;
  readonly #goodSince = new Map<string, number | null>();
  readonly #decide: () => void;
  #holdTimer: TimerHandle | null = null;
  #started = false;
  #closed = false;

  constructor(ifaces: readonly ManagedInterface[], clock: Clock, decide: () => void) {
    this.#ifaces = ifaces;
    this.#clock = clock;
    this.#decide = decide;
    for (const i of ifaces) {
      this.#goodSince.set(i.name, null);
      for (const m of i.monitors) m.onChange(() => this.#update(i));
    }
  }

  /** Starts every monitor and resolves once each has given its first verdict. */
  async start(): Promise<void> {
    await Promise.all(this.#ifaces.flatMap((i) => i.monitors.map((m) => m.start())));
    const now = this.#clock.now();
    for (const i of this.#ifaces) this.#goodSince.set(i.name, i.monitors.every((m) => m.good) ? now : null);
    this.#started = true;
  }

  snapshot(): InterfaceView[] {
    return this.#ifaces.map((i) => ({
      name: i.name,
      role: i.role,
      speedMbps: i.speedMbps,
      good: this.#goodSince.get(i.name) !== null,
      goodSince: this.#goodSince.get(i.name) ?? null,
    }));
  }

  /** Re-asks `decide` at `at` (clock time), replacing any earlier request. */
  wakeAt(at: number | null): void {
    this.#holdTimer?.cancel();
    this.#holdTimer = null;
    if (at === null || this.#closed) return;
    this.#holdTimer = this.#clock.setTimeout(() => {
      this.#holdTimer = null;
      this.#decide();
    }, Math.max(0, at - this.#clock.now()));
  }

  close(): void {
    this.#closed = true;
    this.#holdTimer?.cancel();
    for (const i of this.#ifaces) for (const m of i.monitors) m.close();
  }

  #update(i: ManagedInterface): void {
    // Until every monitor has given its first verdict there is nothing to decide on: a fast
    // monitor's change must not pick an interface while a slower one is still probing.
    if (this.#closed || !this.#started) return;
    const good = i.monitors.every((m) => m.good);
    const was = this.#goodSince.get(i.name) !== null;
    if (good === was) return;
    this.#goodSince.set(i.name, good ? this.#clock.now() : null);
    this.#decide();
  }
}
