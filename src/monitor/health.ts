/**
 * @module The passive health monitor with probing: owns every backend's state machine for one
 * service. Forwarders report refused/reset/timed-out backends (passive detection) and successes;
 * a down backend is probed until it answers, then returns to rotation.
 */
import type { BackendFailureKind } from '../core/errors.js';
import type { Clock, TimerHandle } from '../core/clock.js';
import { channels } from '../core/diagnostics.js';
import type { BackendStateEvent } from '../core/diagnostics.js';
import type { HealthConfig } from '../config/schema.js';
import type { FailureSink } from '../forward/service-runtime.js';
import type { Backend, BackendState } from './backend.js';
import { probeFor } from './probe.js';
import type { ProbeConfig, Prober } from './probe.js';

export type { ProbeConfig, Prober } from './probe.js';

export type BackendListener = (backend: Backend) => void;

/** What the monitor keeps per backend beside the Backend object itself. */
interface Watch {
  /** The probe interval while the backend is down; null when not probing. */
  timer: TimerHandle | null;
  /** A probe is running: the next tick is skipped so probes of one backend never overlap. */
  inFlight: boolean;
  /** Bumped on every transition: a probe result is applied only if nothing changed since it began. */
  epoch: number;
}

/**
 * Transitions:
 * - `reportFailure`: any state but `down` and `draining` → `down` at once (reason = the failure kind);
 *   probing starts, one probe every `probe.intervalMs` (the first one interval after the failure).
 *   A refused or reset connection is an unambiguous signal (DESIGN: "a refused or reset connection
 *   takes it out at once"), so there is no threshold to cross.
 * - `reportSuccess`: `unknown`/`suspect` → `up`. A `down` backend returns only through a probe, so a
 *   reply still in flight when it went down does not flap it back; `draining` is never undone here.
 * - probe ok on `down` → `up` ("probe ok"), probing stops; a failed probe keeps it down.
 * - `start()`: one probe of every backend; `unknown` → `up` or `down`.
 *
 * Every transition sets state/since/reason, publishes `holdfast:backend:state`, then calls the
 * `onChange` listeners synchronously: the dispatcher rebuilds the balancer snapshot there, and the
 * forwarder's immediate re-pick after `reportFailure` relies on that having happened already.
 *
 * A `draining` backend failing stays `draining`: it already takes no new work, and turning it into
 * `down` would let the next probe put it back into rotation against the operator's drain.
 */
export class HealthMonitor implements FailureSink {
  private readonly watches = new Map<Backend, Watch>();
  private readonly listeners = new Set<BackendListener>();
  private readonly probe: Prober;
  private readonly probeConfig: ProbeConfig;
  private started = false;
  private closed = false;

  constructor(
    readonly service: string,
    readonly backends: readonly Backend[],
    config: HealthConfig,
    private readonly clock: Clock,
    probe?: Prober,
  ) {
    this.probeConfig = config.probe;
    this.probe = probe ?? probeFor(config.probe);
    for (const backend of backends) this.watches.set(backend, { timer: null, inFlight: false, epoch: 0 });
  }

  /** Probe every backend once, so that `unknown` resolves without waiting for traffic. Idempotent. */
  start(): void {
    if (this.started || this.closed) return;
    this.started = true;
    for (const backend of this.backends) {
      if (backend.state === 'draining') continue;
      this.runProbe(backend);
    }
  }

  reportFailure(backend: Backend, kind: BackendFailureKind): void {
    if (backend.state === 'down' || backend.state === 'draining') return;
    this.transition(backend, 'down', kind);
  }

  reportSuccess(backend: Backend): void {
    const state = backend.state;
    if (state === 'up') return;
    if (state === 'unknown' || state === 'suspect') this.transition(backend, 'up', 'ok');
  }

  /** Called synchronously after every state change. Returns the unsubscribe function. */
  onChange(listener: BackendListener): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  /**
   * Stop probing: every timer is cancelled and results of probes still in flight are dropped.
   * Reports after close still move state (forwarders draining their last exchanges keep avoiding a
   * failed backend) but start no probe.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const watch of this.watches.values()) {
      watch.timer?.cancel();
      watch.timer = null;
      watch.epoch++;
    }
  }

  private watch(backend: Backend): Watch {
    let watch = this.watches.get(backend);
    if (!watch) {
      watch = { timer: null, inFlight: false, epoch: 0 };
      this.watches.set(backend, watch);
    }
    return watch;
  }

  private transition(backend: Backend, to: BackendState, reason: string): void {
    const from = backend.state;
    const watch = this.watch(backend);
    watch.epoch++;
    backend.state = to;
    backend.since = this.clock.wallNow();
    backend.reason = reason;
    if (to === 'down') this.startProbing(backend, watch);
    else this.stopProbing(watch);
    if (channels.backendState.hasSubscribers) {
      const event: BackendStateEvent = { service: this.service, backend: backend.id, from, to, reason, at: backend.since };
      channels.backendState.publish(event);
    }
    let failure: { error: unknown } | null = null;
    for (const listener of this.listeners) {
      try {
        listener(backend);
      } catch (error) {
        failure ??= { error };
      }
    }
    // A throwing listener must not stop the others nor leave the caller (a forwarder mid-failover)
    // with a half-done transition; it surfaces as an uncaught exception instead of being swallowed.
    if (failure) {
      const { error } = failure;
      queueMicrotask(() => {
        throw error;
      });
    }
  }

  private startProbing(backend: Backend, watch: Watch): void {
    if (this.closed || watch.timer) return;
    watch.timer = this.clock.setInterval(() => this.runProbe(backend), this.probeConfig.intervalMs);
  }

  private stopProbing(watch: Watch): void {
    watch.timer?.cancel();
    watch.timer = null;
  }

  private runProbe(backend: Backend): void {
    const watch = this.watch(backend);
    if (this.closed || watch.inFlight) return;
    watch.inFlight = true;
    const epoch = watch.epoch;
    let result: Promise<boolean>;
    try {
      result = this.probe(backend, this.probeConfig);
    } catch {
      result = Promise.resolve(false);
    }
    result.then(
      (up) => this.probed(backend, watch, epoch, up === true),
      () => this.probed(backend, watch, epoch, false),
    );
  }

  private probed(backend: Backend, watch: Watch, epoch: number, up: boolean): void {
    watch.inFlight = false;
    // Closed, or the state moved while the probe ran (a report decided first): the result is stale.
    if (this.closed || watch.epoch !== epoch) return;
    const state = backend.state;
    if (up) {
      if (state === 'down' || state === 'unknown') this.transition(backend, 'up', 'probe ok');
    } else if (state === 'unknown') {
      this.transition(backend, 'down', 'probe failed');
    }
  }
}
