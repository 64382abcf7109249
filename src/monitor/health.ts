/**
 * @module The health monitor: owns every backend's state machine for one service. Forwarders report
 * refused/reset/timed-out backends (passive detection) and successes; with a heartbeat detector
 * (`health.detector`: push, phi-accrual, pull) agent announcements or pull replies feed one failure
 * detector per backend, and one timer per backend fires when its verdict would worsen. In passive
 * mode a down backend is probed until it answers, then returns to rotation.
 */
import type { BackendFailureKind } from '../core/errors.js';
import type { Clock, TimerHandle } from '../core/clock.js';
import { channels } from '../core/diagnostics.js';
import type { BackendStateEvent, HeartbeatLostEvent } from '../core/diagnostics.js';
import type { DetectorConfig, HealthConfig } from '../config/schema.js';
import type { Availability } from '../wire/availability.js';
import { unwrapTimestamp } from '../wire/timestamp.js';
import type { Backend, BackendState, FailureSink } from '../core/backend.js';
import { createDetector, isHeartbeatDetector } from './detector-registry.js';
import type { Detector } from './detector.js';
import { probeFor } from './probe.js';
import type { ProbeConfig, Prober } from './probe.js';

export type { ProbeConfig, Prober } from './probe.js';

export type BackendListener = (backend: Backend) => void;

/**
 * How one backend is watched:
 * - `passive`: forwarder reports, probing while down (issue 2's behaviour).
 * - `heartbeat`: agent announcements through `onAvailability` (push or phi-accrual).
 * - `pull`: a hello (probe) every intervalMs, the replies are the heartbeats.
 */
type WatchMode = 'passive' | 'heartbeat' | 'pull';

/**
 * A sequence number this far below the highest seen is a reordered heartbeat arriving late, not an
 * agent restart. The replay guard's default bitmap (REPLAY_BITMAP_SEQS) lets exactly these through.
 */
const REORDER_WINDOW_SEQS = 64;

/** A deadline timer firing more than this after its deadline was late: the loop was stalled. */
export const LATE_TIMER_MS = 1;

/**
 * A deadline timer firing this many heartbeat intervals late or more is a stall of the dispatcher's
 * own process, and the detector's deadlines are postponed by the whole lateness (stall
 * compensation). Shorter lateness (libuv's millisecond rounding, a minor GC) is not compensated, so
 * that the detection latency of a quiet machine does not grow by it.
 */
export const STALL_INTERVALS = 0.5;

/** A deadline timer firing less than this before its deadline has reached it (float rounding). */
const DEADLINE_ROUNDING_MS = 1e-6;

/** What the monitor keeps per backend beside the Backend object itself. */
interface Watch {
  readonly mode: WatchMode;
  /** passive: the probe interval while down; pull: the hello interval, from start() to close(). */
  timer: TimerHandle | null;
  /** A probe is running: the next tick is skipped so probes of one backend never overlap. */
  inFlight: boolean;
  /** Bumped on every transition: a probe result is applied only if nothing changed since it began. */
  epoch: number;
  /** heartbeat and pull modes. */
  readonly detector: Detector | null;
  /** The one deadline timer (heartbeat and pull modes), set for `deadlineAt`. */
  deadline: TimerHandle | null;
  deadlineAt: number;
  /** The delay `deadline` was created with (what its refresh() re-arms). */
  deadlineDelay: number;
  /** Clock time of the latest heartbeat, or of start() before the first one. */
  heardAt: number;
  heard: boolean;
  /** Highest availability seq accepted; null before the first. */
  lastSeq: number | null;
  /** Heartbeats lost to sequence gaps, in total. */
  lost: number;
  /** Newest send time (wall ms) of an accepted announcement: tells a late one from a restart. */
  newestSentAt: number;
  /** Draining because the agent announced a planned failure (an `available` heartbeat ends it). */
  planned: boolean;
  /**
   * Removed from the service (retire()): draining for good. A failure still takes it down (its
   * sessions re-pin), nothing brings it back, and once down it is no longer probed or timed.
   */
  retired: boolean;
  /** Clock time of the last passive failure report (refused, reset...), -Infinity if none. */
  passiveDownAt: number;
}

/**
 * Transitions, every mode:
 * - `reportFailure`: any state but `down` and `draining` → `down` at once (reason = the failure kind).
 *   A refused or reset connection is an unambiguous signal (DESIGN: "a refused or reset connection
 *   takes it out at once"), so there is no threshold to cross.
 * - `reportSuccess`: `unknown`/`suspect` → `up`. A `down` backend returns only through its detector
 *   (a probe, a heartbeat, a pull reply), so a reply still in flight when it went down does not flap
 *   it back; `draining` is never undone here.
 *
 * `passive` (the default):
 * - a `down` backend is probed every `probe.intervalMs` (the first one interval after the failure);
 *   probe ok → `up` ("probe ok"), probing stops; a failed probe keeps it down.
 * - `start()`: one probe of every backend; `unknown` → `up` or `down`.
 *
 * `push` / `phi-accrual` (backends with an agent; one without is watched passively):
 * - `onAvailability` 'available': the detector hears a heartbeat; `unknown`/`suspect`/`down` → `up`
 *   ("heartbeat"), and a planned-failure drain ends.
 * - 'app-unavailable': the node is alive (heartbeat) but its application is not → `down`
 *   ("application unavailable"); SARA Fig. 7 returns Crashed for it.
 * - 'planned-failure': heartbeat, and → `draining` ("planned failure at <ISO time>"): no new work,
 *   established work finishes; it stays so until an 'available' heartbeat.
 * - the deadline timer: `up` → `suspect` when the detector suspects, → `down` ("no heartbeat for
 *   X ms") when it says down; `unknown` stays `unknown` until down (it was never heard, so it is
 *   not "late"). A planned-failure drain whose agent falls silent goes `down` (the node is gone).
 * - no probing: recovery comes from heartbeats.
 *
 * `pull`: a probe (health.probe.type, timeout n x intervalMs) every intervalMs from `start()`; each
 * success is a heartbeat and brings `unknown`/`suspect`/`down` `up` ("pull reply"); the deadline
 * timer as above ("no reply for X ms").
 *
 * A draining backend that an operator drained (not a planned failure) is never moved by any
 * detector: failing it to `down` would let the next probe or heartbeat put it back into rotation
 * against the operator's drain.
 *
 * Every transition sets state/since/reason, publishes `holdfast:backend:state` (with its wall-clock
 * timestamp), then calls the `onChange` listeners synchronously: the dispatcher rebuilds the
 * balancer snapshot there, and the forwarder's immediate re-pick after `reportFailure` relies on
 * that having happened already.
 */
export class HealthMonitor implements FailureSink {
  private readonly watches = new Map<Backend, Watch>();
  private readonly listeners = new Set<BackendListener>();
  private probe: Prober;
  private probeConfig: ProbeConfig;
  /** Pull hellos: the configured probe with timeout n x intervalMs. */
  private pullConfig: ProbeConfig;
  private detectorConfig: DetectorConfig;
  /** A prober given to the constructor (tests): kept across reconfigure(). */
  private readonly fixedProbe: Prober | undefined;
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
    this.detectorConfig = config.detector;
    this.pullConfig = { ...config.probe, timeoutMs: config.detector.intervalMs * config.detector.n };
    this.fixedProbe = probe;
    this.probe = probe ?? probeFor(config.probe);
    for (const backend of backends) this.watches.set(backend, this.newWatch(backend));
  }

  /**
   * A backend appended to the service's list after construction (a reload, the admin API): it is
   * watched like the others from now on, `unknown` until its detector speaks (passive: probed at once).
   */
  add(backend: Backend): void {
    if (this.watches.has(backend)) return;
    const watch = this.newWatch(backend);
    this.watches.set(backend, watch);
    if (this.started && !this.closed) this.startWatching(backend, watch, this.clock.now());
  }

  /**
   * The backend was removed from the service: `draining` ("removed"), for good. Its established
   * sessions and exchanges finish on it; a failure reported or detected later still takes it `down`
   * (its sessions re-pin then); no probe, heartbeat or undrain brings it back. False when it was
   * already retired.
   */
  retire(backend: Backend, reason = 'removed'): boolean {
    const watch = this.watch(backend);
    if (watch.retired) return false;
    watch.retired = true;
    if (backend.state === 'down') {
      this.quiet(watch);
      return true;
    }
    this.transition(backend, 'draining', reason);
    return true;
  }

  /**
   * New detector and probe settings (a reload): every backend's watch is rebuilt with them and, once
   * started, watched again as at start(): heartbeat backends get n x intervalMs from now, passive
   * ones are probed, pull hellos restart. Backend states stay as they are; counters of lost
   * heartbeats, planned-failure and removal marks are kept.
   */
  reconfigure(config: HealthConfig): void {
    if (this.closed) return;
    this.probeConfig = config.probe;
    this.detectorConfig = config.detector;
    this.pullConfig = { ...config.probe, timeoutMs: config.detector.intervalMs * config.detector.n };
    this.probe = this.fixedProbe ?? probeFor(config.probe);
    const now = this.clock.now();
    for (const [backend, old] of [...this.watches]) {
      this.quiet(old);
      const watch = this.newWatch(backend);
      watch.lost = old.lost;
      watch.planned = old.planned;
      watch.retired = old.retired;
      watch.passiveDownAt = old.passiveDownAt;
      this.watches.set(backend, watch);
      if (this.started) this.startWatching(backend, watch, now);
    }
  }

  /** Deadline timers that fired a stall late, and the milliseconds postponed for them in total. */
  stallsCompensated = 0;
  stallMsCompensated = 0;
  /**
   * Down verdicts held for one loop turn to read the heartbeats waiting in the socket (drain before
   * deciding), and how many of them a heartbeat read in that turn cancelled.
   */
  downsDeferred = 0;
  downsAverted = 0;
  /** Announcements whose agent said it was starved of CPU before sending (flag bit 6). */
  starvedHeartbeats = 0;

  /** The configured detector type (`passive`, `push`, `pull`, `phi-accrual`). */
  get detectorType(): DetectorConfig['type'] {
    return this.detectorConfig.type;
  }

  /**
   * Starts watching. passive: one probe of every backend, so that `unknown` resolves without
   * waiting for traffic. push/phi-accrual: each backend not heard yet has n x intervalMs from now to
   * send its first heartbeat. pull: the hellos begin, the first one now. Idempotent.
   */
  start(): void {
    if (this.started || this.closed) return;
    this.started = true;
    const now = this.clock.now();
    for (const backend of this.backends) this.startWatching(backend, this.watch(backend), now);
  }

  private startWatching(backend: Backend, watch: Watch, now: number): void {
    if (watch.retired && backend.state === 'down') return;
    if (watch.mode !== 'passive' && !watch.heard) {
      watch.detector!.reset(now);
      watch.heardAt = now;
      this.arm(backend, watch, now);
    }
    // A removed backend keeps its pull hellos (a silent one goes down and its sessions re-pin).
    if (backend.state === 'draining' && !(watch.retired && watch.mode === 'pull')) return;
    if (watch.mode === 'pull') {
      watch.timer = this.clock.setInterval(() => this.runProbe(backend), this.detectorConfig.intervalMs);
      this.runProbe(backend);
    } else if (watch.mode === 'passive') {
      if (backend.state === 'down') this.startProbing(backend, watch);
      this.runProbe(backend);
    }
  }

  /** Cancels a watch's timers and drops the results of its probes in flight. */
  private quiet(watch: Watch): void {
    watch.timer?.cancel();
    watch.timer = null;
    watch.deadline?.cancel();
    watch.deadline = null;
    watch.epoch++;
  }

  reportFailure(backend: Backend, kind: BackendFailureKind): void {
    if (backend.state === 'down') return;
    const watch = this.watches.get(backend);
    if (backend.state === 'draining' && watch?.retired !== true) return;
    if (watch) watch.passiveDownAt = this.clock.now();
    this.transition(backend, 'down', kind);
  }

  reportSuccess(backend: Backend): void {
    const state = backend.state;
    if (state === 'up') return;
    if (state === 'unknown' || state === 'suspect') this.transition(backend, 'up', 'ok');
  }

  /**
   * An authenticated, fresh availability announcement from `backend`'s agent (the dispatcher routes
   * AgentReceiver's callback here by `backend.agent`), received at clock time `now`
   * (`Clock.now()`). Ignored unless the backend is watched by push or phi-accrual, and after close.
   */
  onAvailability(backend: Backend, a: Availability, now: number): void {
    const watch = this.watches.get(backend);
    if (!watch || watch.mode !== 'heartbeat' || this.closed || (watch.retired && backend.state === 'down')) return;
    // A planned failure carries the failure time, not the send time: no use for ordering.
    const sentAt = a.flag === 'planned-failure' ? null : unwrapTimestamp(a.timestamp, this.clock.wallNow());
    this.countSequence(backend, watch, a.seq, sentAt);
    if (a.starved === true) this.starvedHeartbeats++;
    this.heard(backend, watch, now, a.starved === true);
    const state = backend.state;
    if (watch.retired) {
      if (a.flag === 'app-unavailable' && state !== 'down') this.transition(backend, 'down', 'application unavailable');
      return;
    }
    switch (a.flag) {
      case 'available':
        // After a refused or reset connection, the agent's watchdog may not have noticed yet: its
        // 'available' is believed only once holdDownMs have passed (no flapping once per heartbeat).
        if (state === 'down' && now - watch.passiveDownAt < this.detectorConfig.holdDownMs) break;
        if (state === 'unknown' || state === 'suspect' || state === 'down' || (state === 'draining' && watch.planned)) {
          this.transition(backend, 'up', 'heartbeat');
        }
        break;
      case 'app-unavailable':
        if (state !== 'down' && (state !== 'draining' || watch.planned)) this.transition(backend, 'down', 'application unavailable');
        break;
      case 'planned-failure':
        if (state !== 'draining') {
          const at = unwrapTimestamp(a.timestamp, this.clock.wallNow());
          this.transition(backend, 'draining', `planned failure at ${new Date(at).toISOString()}`);
          watch.planned = true;
        }
        break;
    }
  }

  /**
   * An operator's drain (admin API): `backend` takes no new work, established work finishes, and no
   * detector moves it until `undrain`. False when it was already draining (a planned failure
   * announced by its agent becomes an operator's drain).
   */
  drain(backend: Backend, reason = 'drained by operator'): boolean {
    const watch = this.watch(backend);
    if (watch.retired || (backend.state === 'draining' && !watch.planned)) return false;
    this.transition(backend, 'draining', reason);
    return true;
  }

  /**
   * Ends an operator's drain: the backend is `unknown` (eligible, as a fresh backend) until its
   * detector speaks; a passive or pull backend is probed at once. False when it was not draining.
   */
  undrain(backend: Backend, reason = 'undrained by operator'): boolean {
    if (backend.state !== 'draining') return false;
    const watch = this.watch(backend);
    if (watch.retired) return false;
    this.transition(backend, 'unknown', reason);
    if (this.started && !this.closed) {
      if (watch.mode === 'pull' && !watch.timer) watch.timer = this.clock.setInterval(() => this.runProbe(backend), this.detectorConfig.intervalMs);
      if (watch.mode !== 'heartbeat') this.runProbe(backend);
    }
    return true;
  }

  /** Heartbeats of `backend` lost to sequence gaps since the monitor was created. */
  lostHeartbeats(backend: Backend): number {
    return this.watches.get(backend)?.lost ?? 0;
  }

  /** Called synchronously after every state change. Returns the unsubscribe function. */
  onChange(listener: BackendListener): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  /**
   * Stop watching: every timer is cancelled, results of probes still in flight are dropped and
   * heartbeats are ignored. Reports after close still move state (forwarders draining their last
   * exchanges keep avoiding a failed backend) but start no probe.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const watch of this.watches.values()) {
      watch.timer?.cancel();
      watch.timer = null;
      watch.deadline?.cancel();
      watch.deadline = null;
      watch.epoch++;
    }
  }

  private newWatch(backend: Backend): Watch {
    const cfg = this.detectorConfig;
    let mode: WatchMode = 'passive';
    // A backend with no agent never sends a heartbeat: under push it would be down for good, so it
    // keeps the passive rules (pull needs no agent).
    if (cfg.type === 'pull') mode = 'pull';
    else if (cfg.type !== 'passive' && backend.agent !== null) mode = 'heartbeat';
    const now = this.clock.now();
    return {
      mode,
      timer: null,
      inFlight: false,
      epoch: 0,
      detector: mode !== 'passive' && isHeartbeatDetector(cfg) ? createDetector(cfg, now) : null,
      deadline: null,
      deadlineAt: Infinity,
      deadlineDelay: -1,
      heardAt: now,
      heard: false,
      lastSeq: null,
      lost: 0,
      passiveDownAt: -Infinity,
      newestSentAt: -Infinity,
      planned: false,
      retired: false,
    };
  }

  private watch(backend: Backend): Watch {
    let watch = this.watches.get(backend);
    if (!watch) {
      watch = this.newWatch(backend);
      this.watches.set(backend, watch);
    }
    return watch;
  }

  /**
   * SARA's Seq_Nber "is used to detect and to count the lost heartbeat messages". Seqs compare in
   * serial-number arithmetic (RFC 1982, as the replay guard does): a jump of d counts d - 1 lost. A
   * seq below the highest is either a heartbeat arriving late (sent before the newest one: one fewer
   * lost) or a restarted agent counting from 0 again (sent after it: the count restarts there);
   * the send time `sentAt` (wall ms, null when unknown) tells them apart.
   */
  private countSequence(backend: Backend, watch: Watch, seq: number, sentAt: number | null): void {
    seq >>>= 0;
    const last = watch.lastSeq;
    const newest = watch.newestSentAt;
    if (sentAt !== null && sentAt > newest) watch.newestSentAt = sentAt;
    if (last === null) {
      watch.lastSeq = seq;
      return;
    }
    const d = (seq - last) | 0;
    if (d > 0) {
      watch.lastSeq = seq;
      const lost = d - 1;
      if (lost === 0) return;
      watch.lost += lost;
      if (channels.heartbeatLost.hasSubscribers) {
        const event: HeartbeatLostEvent = { service: this.service, backend: backend.id, lost };
        channels.heartbeatLost.publish(event);
      }
    } else if (d < 0 && sentAt !== null) {
      if (d > -REORDER_WINDOW_SEQS && sentAt <= newest) {
        if (watch.lost > 0) watch.lost--;
      } else {
        watch.lastSeq = seq;
      }
    }
  }

  /** A proof of life at `now`: the detector hears it and the deadline timer moves. */
  private heard(backend: Backend, watch: Watch, now: number, starved = false): void {
    watch.detector!.heartbeat(now, starved);
    watch.heard = true;
    watch.heardAt = now;
    this.arm(backend, watch, now);
  }

  /**
   * (Re)sets the backend's one deadline timer for the detector's next deadline after `now`: exactly
   * at it, since detection latency is the point (n x delta, not n x delta plus a polling period).
   */
  private arm(backend: Backend, watch: Watch, now: number): void {
    if (this.closed) return;
    const at = watch.detector!.nextDeadline(now);
    watch.deadlineAt = at;
    if (at === Infinity) {
      watch.deadline?.cancel();
      watch.deadline = null;
      return;
    }
    // Measured from the heartbeat's own `now`: a second clock reading would differ by microseconds
    // every time, and the refresh below would never apply. Under push a heartbeat on time gives the
    // same delay again, so the pending timer is refreshed in place rather than replaced (re-armed a
    // few microseconds after `now`; deadlineReached allows for that rounding).
    const delay = Math.max(0, at - now);
    if (watch.deadline && delay === watch.deadlineDelay) {
      watch.deadline.refresh();
      return;
    }
    watch.deadline?.cancel();
    watch.deadlineDelay = delay;
    watch.deadline = this.clock.setTimeout(() => this.deadlineReached(backend, watch), delay);
  }

  private deadlineReached(backend: Backend, watch: Watch, deferred = false): void {
    watch.deadline = null;
    if (this.closed || this.watches.get(backend) !== watch) return;
    // libuv runs due timers before it reads sockets. A timer that fires late means the process was
    // stalled (descheduled, a long GC...): heartbeats sent meanwhile may be waiting unread in the
    // socket. Judge after one turn of the loop has read them, not before (a stalled dispatcher
    // must not declare its backends dead for its own stall).
    const lateMs = this.clock.now() - watch.deadlineAt;
    if (!deferred && lateMs > LATE_TIMER_MS) {
      // A stall of at least half an interval: the heartbeats the agent could not send while this
      // process (and usually the machine) was starved are not the backend's fault either.
      if (lateMs >= STALL_INTERVALS * this.detectorConfig.intervalMs) {
        watch.detector!.postpone(lateMs);
        this.stallsCompensated++;
        this.stallMsCompensated += lateMs;
      }
      this.clock.immediate(() => {
        if (watch.deadline === null) this.deadlineReached(backend, watch, true); // else a heartbeat re-armed it
      });
      return;
    }
    // Node may run a timer early by up to a millisecond or so (libuv counts whole milliseconds from
    // a loop time cached at the start of the iteration): then the verdict has not changed yet and
    // the timer is set again for the rest. Only a rounding error's worth of earliness (float
    // arithmetic of `now + delay`) counts as reached, so that a fake clock cannot spin on it.
    let now = this.clock.now();
    if (watch.deadlineAt - now < DEADLINE_ROUNDING_MS) now = Math.max(now, watch.deadlineAt);
    const verdict = watch.detector!.verdict(now);
    if (verdict === 'down' && !deferred) {
      // Drain before deciding (issue 17): a timer on time can still run before heartbeats that
      // wait unread in the socket (libuv runs due timers before it polls; a dispatcher starved
      // until just past the deadline reads them after). A deadline passed while datagrams wait is
      // not a miss: the down is decided after one turn of the loop (its poll phase) has read them.
      // On a quiet machine that turn costs microseconds.
      this.downsDeferred++;
      this.clock.immediate(() => {
        if (watch.deadline === null) this.deadlineReached(backend, watch, true);
        else this.downsAverted++; // a heartbeat read in that turn re-armed it
      });
      return;
    }
    const state = backend.state;
    if (verdict === 'down') {
      if (state === 'up' || state === 'suspect' || state === 'unknown' || (state === 'draining' && (watch.planned || watch.retired))) {
        const silentMs = Math.round((now - watch.heardAt) * 10) / 10;
        const starvedMs = Math.round(watch.detector!.starvationGapMs() * 10) / 10;
        const tolerated = starvedMs > 0 ? ` (starved agent: silences of ${starvedMs} ms tolerated)` : '';
        this.transition(backend, 'down', watch.mode === 'pull' ? `no reply for ${silentMs} ms` : `no heartbeat for ${silentMs} ms${tolerated}`);
      }
    } else if (verdict === 'suspect' && state === 'up') {
      this.transition(backend, 'suspect', watch.mode === 'pull' ? 'reply late' : 'heartbeat late');
    }
    if (watch.retired && backend.state === 'down') return;
    this.arm(backend, watch, now);
  }

  private transition(backend: Backend, to: BackendState, reason: string): void {
    const from = backend.state;
    const watch = this.watch(backend);
    watch.epoch++;
    watch.planned = false;
    backend.state = to;
    backend.since = this.clock.wallNow();
    backend.reason = reason;
    if (watch.retired && to === 'down') {
      // A removed backend that failed is gone: nothing watches it any more.
      watch.timer?.cancel();
      watch.timer = null;
      watch.deadline?.cancel();
      watch.deadline = null;
    } else if (watch.mode === 'passive') {
      if (to === 'down') this.startProbing(backend, watch);
      else this.stopProbing(watch);
    }
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
      result = this.probe(backend, watch.mode === 'pull' ? this.pullConfig : this.probeConfig);
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
    // A watch replaced by reconfigure() while its probe ran: the result belongs to nobody.
    if (this.closed || this.watches.get(backend) !== watch) return;
    if (watch.mode === 'pull') {
      // A reply proves the node alive whenever it began; it moves the state only if nothing
      // changed meanwhile (a failure reported during the hello is fresher evidence).
      if (!up || (watch.retired && backend.state === 'down')) return;
      this.heard(backend, watch, this.clock.now());
      if (watch.retired) return;
      const state = backend.state;
      if (watch.epoch === epoch && (state === 'unknown' || state === 'suspect' || state === 'down')) {
        this.transition(backend, 'up', 'pull reply');
      }
      return;
    }
    // The state moved while the probe ran (a report decided first): the result is stale.
    if (watch.epoch !== epoch || watch.retired) return;
    const state = backend.state;
    if (up) {
      if (state === 'down' || state === 'unknown') this.transition(backend, 'up', 'probe ok');
    } else if (state === 'unknown') {
      this.transition(backend, 'down', 'probe failed');
    }
  }
}
