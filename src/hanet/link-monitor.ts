/**
 * @module HANet's fault detector (§2.2.1, §3.2): one LinkMonitor per detection method and interface,
 * all behind one interface, each with a period, a timeout and a number of misses. A monitor runs
 * its probe once per period; a probe not answered within the timeout failed; `misses` consecutive
 * failures clear its GOOD verdict, one success sets it again. The three methods of the paper are
 * probes here: carrier (link-monitor-carrier.ts), ARP (link-monitor-arp.ts) and host ping
 * (link-monitor-ping.ts); a new method is a new probe.
 */
import type { Clock, TimerHandle } from '../core/clock.js';

export type MonitorKind = 'carrier' | 'arp' | 'ping';

/**
 * One check: resolves true when the link looked good, false when it did not answer within
 * `timeoutMs`. A rejection counts as a failure.
 */
export type Probe = (timeoutMs: number) => Promise<boolean>;

export interface MonitorTiming {
  periodMs: number;
  timeoutMs: number;
  misses: number;
}

export interface LinkMonitor {
  readonly kind: MonitorKind;
  readonly iface: string;
  /** The verdict: GOOD or not. */
  readonly good: boolean;
  /** Runs the first probe and resolves with the first verdict; then one probe per period. */
  start(): Promise<boolean>;
  /** Probes now, outside the schedule (a netlink link event for a carrier monitor). No-op before start. */
  poke(): void;
  /** Called on every change of verdict, with the clock time it was reached. */
  onChange(listener: (good: boolean, at: number) => void): void;
  close(): void;
}

/** Probes of one monitor running at once, at most: a hung probe program does not pile up. */
export const MAX_PROBES_IN_FLIGHT = 2;

/** How long a probe may take before it counts as failed whatever it says later: 2 x timeout + 50 ms. */
export function probeBackstopMs(timeoutMs: number): number {
  return 2 * timeoutMs + 50;
}

/** The one LinkMonitor: a probe run on the clock with period, timeout and misses. */
export class PeriodicLinkMonitor implements LinkMonitor {
  readonly kind: MonitorKind;
  readonly iface: string;
  readonly #probe: Probe;
  readonly #t: MonitorTiming;
  readonly #clock: Clock;
  readonly #listeners: ((good: boolean, at: number) => void)[] = [];
  #good = false;
  #failures = 0;
  /** Probes running now; at most MAX_PROBES_IN_FLIGHT. */
  #inFlight = 0;
  /** Sequence number of the last probe started, and of the last one whose result was used. */
  #started = 0;
  #used = 0;
  #timer: TimerHandle | null = null;
  #closed = false;

  constructor(kind: MonitorKind, iface: string, probe: Probe, timing: MonitorTiming, clock: Clock) {
    if (!(timing.timeoutMs > 0 && timing.timeoutMs <= timing.periodMs)) {
      throw new RangeError(`timeoutMs: expected 1-${timing.periodMs} (at most periodMs), received ${timing.timeoutMs}`);
    }
    if (!Number.isInteger(timing.misses) || timing.misses < 1) throw new RangeError(`misses: expected an integer >= 1, received ${timing.misses}`);
    this.kind = kind;
    this.iface = iface;
    this.#probe = probe;
    this.#t = timing;
    this.#clock = clock;
  }

  get good(): boolean {
    return this.#good;
  }

  /** Consecutive failed probes so far. */
  get failures(): number {
    return this.#failures;
  }

  onChange(listener: (good: boolean, at: number) => void): void {
    this.#listeners.push(listener);
  }

  /**
   * The first verdict follows the same rule as every later one: GOOD at the first good probe, not
   * GOOD after `misses` failed ones (probed once per period), so one slow probe while the host is
   * busy starting does not send traffic to a sibling.
   */
  async start(): Promise<boolean> {
    if (this.#timer || this.#closed) return this.#good;
    for (;;) {
      const ok = await this.#runProbe();
      if (this.#closed) return false;
      if (ok) {
        this.#good = true;
        this.#failures = 0;
        break;
      }
      if (++this.#failures >= this.#t.misses) {
        this.#good = false;
        break;
      }
      await new Promise<void>((resolve) => this.#clock.setTimeout(resolve, this.#t.periodMs));
    }
    this.#timer = this.#clock.setInterval(() => void this.#check(), this.#t.periodMs);
    return this.#good;
  }

  poke(): void {
    if (this.#timer && !this.#closed) void this.#check();
  }

  close(): void {
    this.#closed = true;
    this.#timer?.cancel();
    this.#timer = null;
  }

  async #check(): Promise<void> {
    // One probe per period even when one takes longer than the period (arping's start-up alone
    // takes tens of ms): skipping a period would double the detection time. A result older than
    // one already used is dropped.
    if (this.#inFlight >= MAX_PROBES_IN_FLIGHT || this.#closed) return;
    const seq = ++this.#started;
    const ok = await this.#runProbe();
    if (this.#closed || seq < this.#used) return;
    this.#used = seq;
    if (ok) {
      this.#failures = 0;
      if (!this.#good) this.#set(true);
    } else {
      this.#failures++;
      if (this.#good && this.#failures >= this.#t.misses) this.#set(false);
    }
  }

  #runProbe(): Promise<boolean> {
    this.#inFlight++;
    return new Promise<boolean>((resolve) => {
      let settled = false;
      const settle = (ok: boolean): void => {
        if (settled) return;
        settled = true;
        timer.cancel();
        this.#inFlight--;
        resolve(ok);
      };
      // The probe answers within timeoutMs itself (arping -w, ping -W). This backstop only catches a
      // probe that hangs: firing at timeoutMs exactly would race a busy event loop and turn a
      // probe that answered in time into a failure because its exit was processed a tick late.
      const timer = this.#clock.setTimeout(() => settle(false), probeBackstopMs(this.#t.timeoutMs));
      let pending: Promise<boolean>;
      try {
        pending = this.#probe(this.#t.timeoutMs);
      } catch {
        pending = Promise.resolve(false);
      }
      pending.then(settle, () => settle(false));
    });
  }

  #set(good: boolean): void {
    this.#good = good;
    const at = this.#clock.now();
    for (const l of this.#listeners) l(good, at);
  }
}
