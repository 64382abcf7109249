/**
 * @module The one clock. Every timer and every reading of the time goes through here so that
 * detectors, timeouts and backoff can be tested on fake time (`FakeClock`).
 */

export interface TimerHandle {
  cancel(): void;
  /** Restart the timer with its original delay (cheap keep-alive timers). */
  refresh(): void;
}

export interface Clock {
  /** Milliseconds, monotonic, fractional. */
  now(): number;
  /** Wall-clock milliseconds since the epoch (for timestamps shown to people). */
  wallNow(): number;
  setTimeout(fn: () => void, ms: number): TimerHandle;
  setInterval(fn: () => void, ms: number): TimerHandle;
  /** Run `fn` after the I/O already waiting has been handled (setImmediate). */
  immediate(fn: () => void): void;
}

class RealTimer implements TimerHandle {
  constructor(private readonly t: NodeJS.Timeout, private readonly interval: boolean) {}
  cancel(): void {
    if (this.interval) clearInterval(this.t);
    else clearTimeout(this.t);
  }
  refresh(): void {
    this.t.refresh();
  }
}

export const realClock: Clock = {
  now: () => performance.now(),
  wallNow: () => Date.now(),
  setTimeout(fn, ms) {
    const t = setTimeout(fn, ms);
    t.unref?.();
    return new RealTimer(t, false);
  },
  setInterval(fn, ms) {
    const t = setInterval(fn, ms);
    t.unref?.();
    return new RealTimer(t, true);
  },
  immediate(fn) {
    setImmediate(fn);
  },
};

interface FakeTimer {
  at: number;
  fn: () => void;
  every: number | null;
  delay: number;
  live: boolean;
}

/** A clock that moves only when told to; timers fire in time order during `advance`. */
export class FakeClock implements Clock {
  private t = 0;
  private readonly timers: FakeTimer[] = [];
  private readonly immediates: Array<() => void> = [];
  /**
   * When true, immediate() queues its callbacks until runImmediates(), so that a test can deliver
   * "I/O" (a datagram already waiting in a socket) between a timer and the loop turn after it, as
   * libuv's poll phase does between the timers and the check phase. False (default): run at once.
   */
  holdImmediates = false;

  constructor(start = 0) {
    this.t = start;
  }

  now(): number {
    return this.t;
  }

  wallNow(): number {
    return this.t;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    return this.add(fn, ms, null);
  }

  setInterval(fn: () => void, ms: number): TimerHandle {
    return this.add(fn, ms, ms);
  }

  /** Fake time has no I/O waiting: runs `fn` at once (queued instead while holdImmediates). */
  immediate(fn: () => void): void {
    if (this.holdImmediates) this.immediates.push(fn);
    else fn();
  }

  /** Runs the queued immediates, and those they queue, in order (the check phase). */
  runImmediates(): void {
    while (this.immediates.length > 0) this.immediates.shift()!();
  }

  /** Move time forward by `ms`, firing every timer that falls due, in order. */
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      let next: FakeTimer | undefined;
      for (const timer of this.timers) if (timer.live && timer.at <= end && (!next || timer.at < next.at)) next = timer;
      if (!next) break;
      // A timer overdue after stall() fires late, at the current time (time never goes back).
      if (next.at > this.t) this.t = next.at;
      if (next.every !== null) next.at += next.every;
      else next.live = false;
      next.fn();
    }
    this.t = end;
    for (let i = this.timers.length - 1; i >= 0; i--) if (!this.timers[i]!.live) this.timers.splice(i, 1);
  }

  /**
   * The process was stalled for `ms`: time moves on and no timer fires; the next advance() (even
   * by 0) fires the overdue ones late, at the time they get to run, as a starved event loop does.
   */
  stall(ms: number): void {
    this.t += ms;
  }

  private add(fn: () => void, ms: number, every: number | null): TimerHandle {
    const timer: FakeTimer = { at: this.t + ms, fn, every, delay: ms, live: true };
    this.timers.push(timer);
    return {
      cancel: () => {
        timer.live = false;
      },
      refresh: () => {
        timer.at = this.t + timer.delay;
        timer.live = true;
        if (!this.timers.includes(timer)) this.timers.push(timer);
      },
    };
  }
}
