/**
 * @module The watchdog of the local application (survey: "watchdog timers ... monitor user space
 * processes such as Web servers"; SARA III.E flag 2: node available, application unavailable). One
 * check per period (an HTTP GET, a TCP connect, or the process's existence), each bounded by its own
 * timeout; the verdict is healthy or unhealthy, with `failures` consecutive failed checks needed to
 * call a healthy application unhealthy.
 */
import { parseHostPort } from '../core/address.js';
import { realClock, type Clock, type TimerHandle } from '../core/clock.js';
import type { WatchdogConfig } from '../config/agent-schema.js';
import { httpProbe, tcpProbe } from '../monitor/probe.js';
import { processAlive, readPidFile } from './pid-file.js';

export type WatchdogVerdict = 'healthy' | 'unhealthy';

/** One check: resolves true when the application answered as healthy. Must settle within `timeoutMs`. */
export type WatchdogProbe = (timeoutMs: number) => Promise<boolean>;

/** Why the last check failed, for the log line that reports a transition. */
export type CheckFailure = 'failed' | 'timeout';

export interface WatchdogOptions {
  periodMs: number;
  timeoutMs: number;
  /** Consecutive failed checks before a healthy application is declared unhealthy. */
  failures: number;
  clock?: Clock;
  /** Called on every change of verdict (not on the first verdict when it is 'unhealthy'). */
  onVerdict?: (verdict: WatchdogVerdict, detail: { failures: number; reason: CheckFailure | null }) => void;
}

/**
 * Runs a probe every period and turns the results into a verdict. Before its first successful check
 * the application counts as unhealthy: the agent never announces an application it has not seen up.
 * A check still running when the next period starts is not doubled; the timeout (at most the period,
 * checked by the config) makes sure it ends.
 */
export class Watchdog {
  private readonly clock: Clock;
  private current: WatchdogVerdict = 'unhealthy';
  private consecutive = 0;
  private inFlight: Promise<void> | null = null;
  private timer: TimerHandle | null = null;
  private closed = false;
  private checks = 0;

  constructor(private readonly probe: WatchdogProbe, private readonly opts: WatchdogOptions) {
    this.clock = opts.clock ?? realClock;
  }

  get verdict(): WatchdogVerdict {
    return this.current;
  }

  /** Checks completed so far. */
  get completed(): number {
    return this.checks;
  }

  /** Runs the first check now and resolves with its verdict; then checks every periodMs. */
  async start(): Promise<WatchdogVerdict> {
    if (!this.timer && !this.closed) this.timer = this.clock.setInterval(() => void this.check(), this.opts.periodMs);
    await this.check();
    return this.current;
  }

  /** One check now (or the one already running). */
  check(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.inFlight ??= this.runCheck().finally(() => {
      this.inFlight = null;
    });
    return this.inFlight;
  }

  /** Stops checking; a check in flight finishes but no longer changes the verdict. Idempotent. */
  close(): void {
    this.closed = true;
    this.timer?.cancel();
    this.timer = null;
  }

  private async runCheck(): Promise<void> {
    const outcome = await this.withTimeout();
    if (this.closed) return;
    this.checks++;
    if (outcome === true) {
      this.consecutive = 0;
      this.set('healthy', null);
      return;
    }
    this.consecutive++;
    if (this.current === 'healthy' && this.consecutive >= this.opts.failures) this.set('unhealthy', outcome);
  }

  /** true, or why the check failed. A probe that throws has failed. */
  private withTimeout(): Promise<true | CheckFailure> {
    return new Promise((resolve) => {
      const timer = this.clock.setTimeout(() => resolve('timeout'), this.opts.timeoutMs);
      let result: Promise<boolean>;
      try {
        result = this.probe(this.opts.timeoutMs);
      } catch {
        result = Promise.resolve(false);
      }
      result.then(
        (ok) => {
          timer.cancel();
          resolve(ok ? true : 'failed');
        },
        () => {
          timer.cancel();
          resolve('failed');
        },
      );
    });
  }

  private set(verdict: WatchdogVerdict, reason: CheckFailure | null): void {
    if (verdict === this.current) return;
    this.current = verdict;
    this.opts.onVerdict?.(verdict, { failures: this.consecutive, reason });
  }
}

/**
 * The probe for a watchdog configuration, or null for `type: none` (the application is taken as
 * always available: heartbeats then speak for the node only).
 */
export function probeFor(cfg: WatchdogConfig): WatchdogProbe | null {
  switch (cfg.type) {
    case 'none':
      return null;
    case 'http': {
      const url = new URL(cfg.url!);
      const host = url.hostname.replace(/^\[|\]$/g, '');
      const port = url.port === '' ? 80 : Number(url.port);
      const path = `${url.pathname}${url.search}`;
      // monitor/probe.ts: GET path, reads only the status line; 2xx or 3xx = up.
      return (timeoutMs) => httpProbe({ host, port }, { type: 'http', path, intervalMs: cfg.periodMs, timeoutMs });
    }
    case 'tcp': {
      const address = parseHostPort(cfg.address!)!;
      return (timeoutMs) => tcpProbe(address, { type: 'tcp', path: '/', intervalMs: cfg.periodMs, timeoutMs });
    }
    case 'pid':
      return pidProbe(cfg.pid, cfg.pidFile);
  }
}

/**
 * Healthy while the process exists (kill(pid, 0); EPERM still means it exists) and is not a zombie.
 * With a pid file, the file is read at every check, so a supervisor that restarts the application
 * under a new pid is followed.
 */
export function pidProbe(pid: number | undefined, pidFile: string | undefined): WatchdogProbe {
  return async () => {
    const target = pid ?? (pidFile === undefined ? null : readPidFile(pidFile));
    return target !== null && processAlive(target);
  };
}
