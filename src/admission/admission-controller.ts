/**
 * @module The SA2C admission controller of one service (SARA III.B): fed the short-term estimate of
 * the cluster load and the dispatcher's own load, it holds the moving thresholds T2 and T3, moves
 * them on the clock (eq. 3, eq. 4), and decides per unit of work (a new session, or a request or
 * datagram of an established one) from the drop probabilities of eq. 2.
 */
import type { Clock, TimerHandle } from '../core/clock.js';
import { channels } from '../core/diagnostics.js';
import type { AdmissionMoveEvent, AdmissionRefuseEvent, AdmissionSampleEvent, AdmissionThresholdEvent } from '../core/diagnostics.js';
import type { AdmissionConfig } from './admission-schema.js';
import {
  BANDS,
  BAND_BELOW_T1,
  bandOf,
  checkThresholds,
  decisionLoad,
  establishedDrop,
  moveThresholds,
  newSessionDrop,
  nextInterval,
  type AdmissionBand,
  type MoveParams,
  type SessionKind,
  type Thresholds,
} from './sa2c.js';

export type { SessionKind } from './sa2c.js';

/**
 * What a forwarder does with one unit of work. admit: go on. refuse: a new session is refused;
 * answer 503 with Retry-After: retryAfterS where the protocol has one (HTTP, SIP, RTSP), else close
 * or drop. degrade: the request or datagram of an established session is dropped (an HTTP request
 * answered 503, a datagram discarded); the session itself stays pinned.
 * The objects are shared and frozen: compare `type`, never identity, and never keep them mutable.
 */
export type AdmissionVerdict =
  | { readonly type: 'admit' }
  | { readonly type: 'refuse'; readonly retryAfterS: number }
  | { readonly type: 'degrade' };

/** The per-unit decision the forwarders call. O(1), allocation-free. */
export interface Admission {
  decide(kind: SessionKind): AdmissionVerdict;
}

/** One sample of the loads eq. 2 compares, each a fraction of capacity in [0, 1]. */
export interface LoadEstimate {
  /** l_c: the short-term estimate of the cluster load (SARA: "estimation of the cluster short term load"). */
  readonly cluster: number;
  /** l: the dispatcher's own load (the cluster head's, SARA eq. 2). */
  readonly dispatcher: number;
  /**
   * The drop probability of new sessions from a queue controller (admission-delay.ts, issue 17), for
   * a service with a delay signal: it replaces eq. 2's new-session row on l_c, which still applies to
   * l (new sessions are dropped with max(this, eq. 2 at l)). Absent: eq. 2 at max(l, l_c).
   */
  readonly newDrop?: number;
  /** Diagnosis only (published with the sample): the smoothed utilisation and the raw standing delay (ms). */
  readonly utilisation?: number;
  readonly delayMs?: number;
}

/** What the admin status shows of one service's admission control. */
export interface AdmissionStatus {
  readonly enabled: boolean;
  /** max(l, l_c) of the latest update. */
  readonly load: number;
  readonly band: AdmissionBand;
  readonly t1: number;
  readonly t2: number;
  readonly t3: number;
  readonly c: number;
  /** The drop probabilities in force (eq. 2). */
  readonly pNew: number;
  readonly pEstablished: number;
  /** T_i of eq. 3, the current control period. */
  readonly intervalMs: number;
}

/** The admission control of a service: what the forwarders call, and what the load side feeds. */
export interface AdmissionControl extends Admission {
  /** A new load estimate (on every sample). Values are clamped to [0, 1]; NaN is ignored. */
  update(estimate: LoadEstimate): void;
  status(): AdmissionStatus;
  /**
   * New thresholds and control parameters (a reload; `enabled` itself changes only with a restart).
   * T2 and T3 restart from their new configured values, the period from the new intervalMs.
   */
  reconfigure?(config: AdmissionConfig): void;
  /** Stop the control timer. Later updates are ignored; decide() keeps the last verdicts. */
  close(): void;
}

export const ADMIT: AdmissionVerdict = Object.freeze({ type: 'admit' });
export const DEGRADE: AdmissionVerdict = Object.freeze({ type: 'degrade' });

/** Admission control switched off (`admission.enabled: false`): everything is admitted. */
export const ADMIT_ALL: AdmissionControl = Object.freeze({
  decide: (): AdmissionVerdict => ADMIT,
  update: (): void => {},
  status: (): AdmissionStatus => ({
    enabled: false,
    load: 0,
    band: BANDS[BAND_BELOW_T1],
    t1: 1,
    t2: 1,
    t3: 1,
    c: 1,
    pNew: 0,
    pEstablished: 0,
    intervalMs: 0,
  }),
  close: (): void => {},
});

function clampLoad(x: number): number {
  return x >= 1 ? 1 : x > 0 ? x : 0;
}

/**
 * The state: the thresholds in force (T1 and C fixed, T2 and T3 moving), the decision load
 * x = max(l, l_c) of the latest `update`, and from those the drop probabilities decide() reads.
 * They are recomputed on every update and every move, never per decision.
 *
 * The control loop (eq. 3 and 4): while x > T1 a timer runs with period T_i, starting at T_0 =
 * `intervalMs`. At each tick T2 and T3 move down by their load excess (eq. 4; nothing moves while x
 * is under them), and the next period is (1 - p) * T_i with p the new-session drop probability in
 * force during the period that ended (floored at `minIntervalMs`). When an update brings x to T1
 * or under, T2, T3 and the period are reset to their configured values and the timer stops.
 *
 * Events: every change of band (from an update, a move or a reset) is published on
 * `holdfast:admission:threshold`; every move or reset of T2 or T3 on `holdfast:admission:move`;
 * every refusal or degradation on `holdfast:admission:refuse` (a shared frozen object); every update
 * on `holdfast:admission:sample` (l, l_c, band: the trace that tells which input drives the decisions).
 *
 * Bounded: constant memory, one timer.
 */
export class AdmissionController implements AdmissionControl {
  private initial!: Thresholds;
  private params!: MoveParams;
  private baseIntervalMs!: number;
  private minIntervalMs!: number;
  private refuseVerdict!: AdmissionVerdict;
  /** Index band * 2 + (0 new, 1 established). */
  private readonly refuseEvents: readonly AdmissionRefuseEvent[];
  private th: Thresholds;
  private x = 0;
  /** l of the latest update, and the queue controller's new-session drop (NaN: none). */
  private l = 0;
  private newDrop = Number.NaN;
  private band = BAND_BELOW_T1;
  private pNew = 0;
  private pEstablished = 0;
  private intervalMs: number;
  private timer: TimerHandle | null = null;
  private closed = false;

  /** `random` returns values in [0, 1) (Math.random, or a seeded PRNG in tests and benchmarks). */
  constructor(
    readonly service: string,
    config: AdmissionConfig,
    private readonly clock: Clock,
    private readonly random: () => number = Math.random,
  ) {
    this.configure(config);
    this.th = this.initial;
    this.intervalMs = this.baseIntervalMs;
    const events: AdmissionRefuseEvent[] = [];
    for (const band of BANDS) {
      events.push(Object.freeze({ service, kind: 'new', verdict: 'refuse', band }));
      events.push(Object.freeze({ service, kind: 'established', verdict: 'degrade', band }));
    }
    this.refuseEvents = events;
  }

  private configure(config: AdmissionConfig): void {
    const initial = Object.freeze({ t1: config.t1, t2: config.t2, t3: config.t3, c: config.c });
    checkThresholds(initial);
    this.initial = initial;
    this.params = Object.freeze({ t2Gain: config.t2Gain, t3Gain: config.t3Gain, minGap: config.minGap });
    this.baseIntervalMs = config.intervalMs;
    this.minIntervalMs = Math.min(config.minIntervalMs, config.intervalMs);
    this.refuseVerdict = Object.freeze({ type: 'refuse', retryAfterS: config.retryAfterS });
  }

  reconfigure(config: AdmissionConfig): void {
    if (this.closed) return;
    this.configure(config);
    this.timer?.cancel();
    this.timer = null;
    this.intervalMs = this.baseIntervalMs;
    this.setThresholds(this.initial, 'reset');
    this.th = this.initial;
    this.rebuild();
    if (this.x > this.th.t1) this.timer = this.clock.setTimeout(() => this.tick(), this.intervalMs);
  }

  decide(kind: SessionKind): AdmissionVerdict {
    if (kind === 'new') {
      const p = this.pNew;
      if (p === 0 || (p < 1 && this.random() >= p)) return ADMIT;
      if (channels.admissionRefuse.hasSubscribers) channels.admissionRefuse.publish(this.refuseEvents[this.band * 2]);
      return this.refuseVerdict;
    }
    const p = this.pEstablished;
    if (p === 0 || (p < 1 && this.random() >= p)) return ADMIT;
    if (channels.admissionRefuse.hasSubscribers) channels.admissionRefuse.publish(this.refuseEvents[this.band * 2 + 1]);
    return DEGRADE;
  }

  update(estimate: LoadEstimate): void {
    if (this.closed) return;
    const x = decisionLoad(estimate.dispatcher, estimate.cluster);
    if (Number.isNaN(x)) return;
    this.x = clampLoad(x);
    this.l = clampLoad(estimate.dispatcher);
    this.newDrop = estimate.newDrop === undefined || Number.isNaN(estimate.newDrop) ? Number.NaN : clampLoad(estimate.newDrop);
    if (this.x <= this.th.t1) this.reset();
    else if (this.timer === null) this.timer = this.clock.setTimeout(() => this.tick(), this.intervalMs);
    this.rebuild();
    if (channels.admissionSample.hasSubscribers) {
      const event: AdmissionSampleEvent = {
        service: this.service,
        dispatcher: estimate.dispatcher,
        cluster: estimate.cluster,
        load: this.x,
        band: BANDS[this.band]!,
        t2: this.th.t2,
        t3: this.th.t3,
        pNew: this.pNew,
        pEstablished: this.pEstablished,
        at: this.clock.wallNow(),
      };
      if (!Number.isNaN(this.newDrop)) {
        event.queueDrop = this.newDrop;
        if (estimate.utilisation !== undefined) event.utilisation = estimate.utilisation;
        if (estimate.delayMs !== undefined) event.delayMs = estimate.delayMs;
      }
      channels.admissionSample.publish(event);
    }
  }

  status(): AdmissionStatus {
    return {
      enabled: true,
      load: this.x,
      band: BANDS[this.band]!,
      t1: this.th.t1,
      t2: this.th.t2,
      t3: this.th.t3,
      c: this.th.c,
      pNew: this.pNew,
      pEstablished: this.pEstablished,
      intervalMs: this.intervalMs,
    };
  }

  /** The thresholds in force (T2 and T3 as moved). */
  get thresholds(): Thresholds {
    return this.th;
  }

  close(): void {
    this.closed = true;
    this.timer?.cancel();
    this.timer = null;
  }

  /** One period of the control loop: eq. 4 at the current load, then eq. 3 for the next period. */
  private tick(): void {
    this.timer = null;
    if (this.closed || this.x <= this.th.t1) return;
    const p = this.pNew;
    const moved = moveThresholds(this.x, this.th, this.params);
    this.setThresholds(moved, 'move');
    this.intervalMs = nextInterval(this.intervalMs, p, this.minIntervalMs);
    this.rebuild();
    this.timer = this.clock.setTimeout(() => this.tick(), this.intervalMs);
  }

  /** SARA: "once the load gets below T1, both thresholds are reset to their initial values". */
  private reset(): void {
    this.timer?.cancel();
    this.timer = null;
    this.intervalMs = this.baseIntervalMs;
    this.setThresholds(this.initial, 'reset');
  }

  private setThresholds(next: Thresholds, reason: AdmissionMoveEvent['reason']): void {
    const before = this.th;
    if (next.t2 === before.t2 && next.t3 === before.t3) return;
    this.th = next;
    if (!channels.admissionMove.hasSubscribers) return;
    const at = this.clock.wallNow();
    if (next.t2 !== before.t2) this.publishMove('t2', before.t2, next.t2, reason, at);
    if (next.t3 !== before.t3) this.publishMove('t3', before.t3, next.t3, reason, at);
  }

  private publishMove(threshold: 't2' | 't3', from: number, to: number, reason: AdmissionMoveEvent['reason'], at: number): void {
    const event: AdmissionMoveEvent = { service: this.service, threshold, from, to, reason, load: this.x, at };
    channels.admissionMove.publish(event);
  }

  /** Recompute the band and the drop probabilities from x and the thresholds; publish a crossing. */
  private rebuild(): void {
    const th = this.th;
    const band = bandOf(this.x, th);
    if (Number.isNaN(this.newDrop)) this.pNew = newSessionDrop(this.x, th);
    else {
      const own = newSessionDrop(this.l, th);
      this.pNew = own > this.newDrop ? own : this.newDrop;
    }
    this.pEstablished = establishedDrop(this.x, th);
    const from = this.band;
    this.band = band;
    if (band === from || !channels.admissionThreshold.hasSubscribers) return;
    const event: AdmissionThresholdEvent = {
      service: this.service,
      from: BANDS[from]!,
      to: BANDS[band]!,
      load: this.x,
      t1: th.t1,
      t2: th.t2,
      t3: th.t3,
      c: th.c,
      at: this.clock.wallNow(),
    };
    channels.admissionThreshold.publish(event);
  }
}

/** The admission control `config` asks for: a controller, or ADMIT_ALL when disabled. */
export function createAdmission(
  service: string,
  config: AdmissionConfig,
  clock: Clock,
  random: () => number = Math.random,
): AdmissionControl {
  return config.enabled ? new AdmissionController(service, config, clock, random) : ADMIT_ALL;
}
