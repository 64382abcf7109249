/**
 * @module The load manager of one service (SARA III.G, the manager side of Fig. 8): takes the load
 * vectors the agents send, keeps each backend's history and shell forecast, writes `load` and
 * `forecast` on the Backend for the balancers to read live, computes the cluster load (eq. 1), and
 * watches every agent's load monitor for silence.
 */
import type { Clock, TimerHandle } from '../core/clock.js';
import { channels } from '../core/diagnostics.js';
import type { LoadMonitorEvent, LoadSampleEvent } from '../core/diagnostics.js';
import type { LoadConfig } from '../config/schema.js';
import type { Backend } from '../core/backend.js';
import type { LoadVector } from '../wire/load-vector.js';
import { clusterLoad } from './cluster-load.js';
import { clamp01, ShellForecaster } from './shell-forecast.js';

/** SARA Fig. 8: "After 3*δ return Load Monitor failed" — silent intervals before the monitor fails. */
export const MONITOR_TIMEOUT_INTERVALS = 3;

/** What the manager keeps per backend beside the Backend object itself. */
interface Watch {
  readonly backend: Backend;
  readonly forecaster: ShellForecaster;
  /** Only backends with an agent send vectors, so only they can have a failed monitor. */
  readonly watched: boolean;
  /** Fires after MONITOR_TIMEOUT_INTERVALS x intervalMs without a vector; refreshed by each vector. */
  timer: TimerHandle | null;
  failed: boolean;
  /** The latest measured load; null before the first vector. */
  measured: number | null;
}

/**
 * Per vector (`onVector`): the sample goes through the backend's ShellForecaster (eq. 5-8), then
 * `backend.load` = the sample (least-loaded reads it) and `backend.forecast` = the damped estimate
 * l~_j (shell reads it); `holdfast:load:sample` is published when someone listens.
 *
 * Failed load monitor (SARA Fig. 8): from `start()`, a watched backend (`agent !== null`) that sends
 * no vector for 3 x `intervalMs` has a failed monitor: `holdfast:load:monitor {state: 'failed'}` is
 * published once, and until a vector arrives again its `load` and `forecast` are held at the mean
 * `load` and mean `forecast` of the backends whose monitors are alive (and have reported), updated
 * with every vector they send — SARA: the node is balanced "as if at the cluster mean", so a silent
 * node neither attracts all new work with a stale low load nor starves with a stale high one. If no
 * monitor is alive, failed backends are all held at the mean of their own last samples, so the
 * load-based balancers rotate among them. The next vector publishes `recovered`; the history is
 * cleared first, because the regression assumes equally spaced samples and the silence broke that.
 *
 * Failing the monitor does not take the backend out of rotation: availability is the detector's
 * job (heartbeats), load only steers the choice among available backends.
 *
 * Vectors after `close()` are ignored: a receiver may still deliver a datagram while shutting down,
 * and throwing into it would gain nothing.
 */
export class LoadManager {
  private readonly watches = new Map<Backend, Watch>();
  private readonly list: Watch[] = [];
  private readonly timeoutMs: number;
  /** Scratch for eq. 1: no allocation per sample. */
  private scratch: Float64Array;
  private failedCount = 0;
  private started = false;
  private closed = false;

  constructor(
    readonly service: string,
    readonly backends: readonly Backend[],
    private readonly cfg: LoadConfig,
    private readonly clock: Clock,
  ) {
    this.timeoutMs = MONITOR_TIMEOUT_INTERVALS * cfg.intervalMs;
    this.scratch = new Float64Array(backends.length);
    for (const backend of backends) this.watchBackend(backend);
  }

  private watchBackend(backend: Backend): Watch {
    const watch: Watch = {
      backend,
      forecaster: new ShellForecaster(this.cfg.history),
      watched: backend.agent !== null,
      timer: null,
      failed: false,
      measured: null,
    };
    this.watches.set(backend, watch);
    this.list.push(watch);
    return watch;
  }

  /** A backend appended to the service after construction (a reload, the admin API). */
  add(backend: Backend): void {
    if (this.watches.has(backend)) return;
    const watch = this.watchBackend(backend);
    if (this.scratch.length < this.list.length) this.scratch = new Float64Array(this.list.length * 2);
    if (this.started && !this.closed && watch.watched) this.arm(watch);
  }

  /** A backend removed from the service: its load no longer counts in l_c; its vectors are ignored. */
  remove(backend: Backend): void {
    const watch = this.watches.get(backend);
    if (!watch) return;
    watch.timer?.cancel();
    watch.timer = null;
    if (watch.failed) this.failedCount--;
    this.watches.delete(backend);
    this.list.splice(this.list.indexOf(watch), 1);
  }

  /** Start watching the agents: each has 3 x intervalMs from now to send its first vector. Idempotent. */
  start(): void {
    if (this.started || this.closed) return;
    this.started = true;
    for (const watch of this.list) if (watch.watched) this.arm(watch);
  }

  /** Stop the monitor timers. Idempotent; later vectors are ignored. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const watch of this.list) {
      watch.timer?.cancel();
      watch.timer = null;
    }
  }

  /** A load vector from `backend`'s agent (already authenticated and replay-checked by the receiver). */
  onVector(backend: Backend, v: LoadVector): void {
    if (this.closed) return;
    const watch = this.watches.get(backend);
    if (!watch) {
      if (backend.removed) return;
      throw new RangeError(`backend ${backend.label} is not a backend of service ${this.service}`);
    }
    if (watch.failed) {
      watch.failed = false;
      this.failedCount--;
      watch.forecaster.reset();
      this.publishMonitor(watch, 'recovered');
    }
    const measured = clamp01(v.load);
    watch.forecaster.sample(measured);
    watch.measured = measured;
    backend.load = measured;
    backend.forecast = watch.forecaster.forecast;
    if (this.started && watch.watched) this.arm(watch);
    if (this.failedCount > 0) this.holdFailedAtMean();
    if (channels.loadSample.hasSubscribers) {
      const event: LoadSampleEvent = {
        service: this.service,
        backend: backend.id,
        load: backend.load,
        forecast: backend.forecast,
        clusterLoad: this.clusterLoad(),
      };
      channels.loadSample.publish(event);
    }
  }

  /**
   * l_c (SARA eq. 1, alpha = `load.alpha`) over the backends that have reported a load (failed
   * monitors count at the mean they are held at). Backends without an agent have no load to count.
   */
  clusterLoad(): number {
    const loads = this.scratch;
    let n = 0;
    for (const watch of this.list) if (watch.measured !== null) loads[n++] = watch.backend.load;
    return clusterLoad(loads, this.cfg.alpha, n);
  }

  /**
   * The short-term estimate of the cluster load that SA2C decides on (SARA III.B: "an estimation of
   * the cluster short term load rather than ... instantaneous load feedbacks"): eq. 1 over the same
   * backends as clusterLoad(), taken on their shell forecasts l~_j (eq. 8) instead of their samples.
   */
  clusterForecast(): number {
    const loads = this.scratch;
    let n = 0;
    for (const watch of this.list) if (watch.measured !== null) loads[n++] = watch.backend.forecast;
    return clusterLoad(loads, this.cfg.alpha, n);
  }

  /** Whether `backend`'s load monitor is currently failed (status, tests). */
  monitorFailed(backend: Backend): boolean {
    return this.watches.get(backend)?.failed ?? false;
  }

  private arm(watch: Watch): void {
    if (watch.timer) watch.timer.refresh();
    else watch.timer = this.clock.setTimeout(() => this.fail(watch), this.timeoutMs);
  }

  private fail(watch: Watch): void {
    if (this.closed || watch.failed) return;
    watch.failed = true;
    this.failedCount++;
    this.publishMonitor(watch, 'failed');
    this.holdFailedAtMean();
  }

  /** Set every failed backend's load and forecast to the alive means (see the class comment). */
  private holdFailedAtMean(): void {
    let n = 0;
    let loadSum = 0;
    let forecastSum = 0;
    for (const watch of this.list) {
      if (!watch.watched || watch.failed || watch.measured === null) continue;
      n++;
      loadSum += watch.backend.load;
      forecastSum += watch.backend.forecast;
    }
    if (n === 0) {
      for (const watch of this.list) {
        if (!watch.failed || watch.measured === null) continue;
        n++;
        loadSum += watch.measured;
      }
      forecastSum = loadSum;
    }
    const load = n === 0 ? 0 : loadSum / n;
    const forecast = n === 0 ? 0 : forecastSum / n;
    for (const watch of this.list) {
      if (!watch.failed) continue;
      watch.backend.load = load;
      watch.backend.forecast = forecast;
    }
  }

  private publishMonitor(watch: Watch, state: LoadMonitorEvent['state']): void {
    if (!channels.loadMonitor.hasSubscribers) return;
    const event: LoadMonitorEvent = { service: this.service, backend: watch.backend.id, state, at: this.clock.wallNow() };
    channels.loadMonitor.publish(event);
  }
}
