/**
 * @module The election of one group's master among dispatchers (issue 7): RFC 5798's (VRRPv3)
 * state machine — Initialize, Backup, Master; Master_Down_Timer, Skew_Time, Preempt_Mode, priority 0
 * for a resigning master — over holdfast's authenticated UDP adverts instead of IP protocol 112, plus
 * an epoch that grows at each takeover so that a healed partition never keeps two masters (survey,
 * seed 000: "fencing"; the epoch is the token later state replication fences with).
 *
 * Pure: no sockets and no real time. Inputs are `receive(advert)` (from election-transport.ts) and
 * the timers of the injected Clock; outputs are the adverts handed to `send` and one event per state
 * change (listeners and `channels.electionState`). One instance per group, so a dispatcher is master
 * of some VIPs and backup of others at once (CoRAL's dual-role replicas).
 *
 * ## Rules
 *
 * Timers (RFC 5798 §6.1): Skew_Time = (256 − priority) × Master_Adver_Interval / 256 with this node's
 * priority; Master_Down_Interval = 3 × Master_Adver_Interval + Skew_Time, where Master_Adver_Interval
 * is the interval the current master advertises (this node's own until it hears one). A master sends
 * an advert at once when it takes over and then every `intervalMs`.
 *
 * Start: every node, the owner (priority 255) included, enters Backup and arms the Master_Down_Timer.
 * RFC 5798 §6.4.1 lets the owner become master at once; here a starting node knows no epoch yet, so
 * taking the VIP at once would take it from a live master only to hand it back at that master's
 * first advert. Waiting one Master_Down_Interval (3 × interval + interval/256 for the owner) lets
 * it learn the current epoch first.
 *
 * Backup, on an advert (any epoch):
 * - priority 0 (the master resigns) and an epoch ≥ the highest known: Master_Down_Timer = Skew_Time,
 *   so the backup with the highest priority takes over first (RFC §6.4.2). A resigning master with an
 *   older epoch is a stale one and changes nothing;
 * - otherwise, when preempt is off or the advert's priority ≥ this node's: adopt its interval and
 *   restart the Master_Down_Timer;
 * - otherwise (preempt on, this node's priority is higher): discard it; the timer runs out and this
 *   node preempts the live lower-priority master. The owner (255) always preempts (RFC §6.4.2).
 * An advert with an epoch lower than the highest known still counts as a live master here: that
 * master steps down as soon as it hears the newer one, and until then it may be the only one alive.
 *
 * Master_Down_Timer expiry: become Master with epoch = highest epoch ever seen + 1 (saturating at
 * 2^32 − 1, which 4·10^9 takeovers would take to reach).
 *
 * Master, on an advert:
 * - higher epoch than its own: step down to Backup at once, whatever the priorities — a newer
 *   master took over while this one was cut off (or stalled), and only one of them can be right;
 *   then handle the advert as a Backup would (a preempting node keeps its timer running);
 * - lower epoch: ignore it; its sender steps down when it hears this node;
 * - same epoch (two nodes took over at once): priority 0 → send an advert at once (RFC §6.4.3);
 *   a higher priority, or an equal one from a higher sender id (RFC: the higher primary IP), wins:
 *   step down; else ignore.
 *
 * ## Why a healed partition converges to one master (and cannot flap)
 *
 * After the heal every master hears every other. Those with an epoch below the highest step down
 * at the first advert of a highest-epoch master (≤ one interval); highest-epoch masters that tie
 * resolve by (priority, id) the same way. One master X remains. From then on the epoch grows only
 * when some Backup's timer runs out, which, while X lives and the links hold, happens only to a
 * Backup that preempts: preempt on and priority strictly above X's. It takes over with a higher
 * epoch, X steps down, and the master's priority has strictly increased; backups that fire at the
 * same instant tie on the epoch and resolve by priority, keeping the higher. So with N nodes there
 * are at most N − 1 preemptions, each within one Master_Down_Interval (≤ 4 intervals), and then no
 * Backup's timer runs out again: one master within about (N + 1) × 4 intervals of the heal, stable
 * afterwards (election.test.ts checks this bound on random partitions). Epochs never decrease and
 * only the steps above change them, so a step-down on a higher epoch cannot start a cycle.
 *
 * Planned switchover: `resign()` sends a priority-0 advert, goes to Backup and turns preemption off
 * (else a higher-priority node would take the VIP straight back); if nobody takes over, it still
 * becomes master again after a Master_Down_Interval: availability first. `setPreempt(true)` undoes it.
 */
import type { Clock, TimerHandle } from '../core/clock.js';
import { channels, type ElectionStateEvent } from '../core/diagnostics.js';
import { PRIORITY_OWNER, PRIORITY_RESIGN, type AdvertFields } from '../wire/election-advert.js';

export type ElectionState = 'initialize' | 'backup' | 'master';
export type ElectionReason = ElectionStateEvent['reason'];
export type MasterReason = Extract<ElectionReason, 'no-master' | 'master-down' | 'master-resigned' | 'preempt'>;

/** What a listener receives at each state change (the channel message adds the node id). */
export interface ElectionEvent {
  type: 'master' | 'backup';
  /** The group's name. */
  group: string;
  /** Master: its new epoch. Backup: the highest epoch known. */
  epoch: number;
  reason: ElectionReason;
  /** The master's id when known (this node's own when master), else null. */
  master: number | null;
}

export type ElectionListener = (event: ElectionEvent) => void;

export interface ElectionOptions {
  /** The group's name (events and logs). */
  group: string;
  /** u16 group id on the wire (the advert's `group`). */
  groupId: number;
  /** u16: this dispatcher's id; breaks priority ties. */
  node: number;
  /** 1-254, or 255 for the owner (always preempts). */
  priority: number;
  /** Advertisement interval in ms (1-65535; the config allows 5-1000). */
  intervalMs: number;
  /** Preempt_Mode: take over from a live master of lower priority. */
  preempt: boolean;
  clock: Clock;
  /** Hands an advert to the transport; the transport adds seq and timestamp. Must not throw. */
  send: (advert: AdvertFields) => void;
}

/** Master_Down_Interval = 3 adverts missed + Skew_Time (RFC 5798 §6.1). */
export const MASTER_DOWN_ADVERTS = 3;
const MAX_EPOCH = 0xffff_ffff;

/** Skew_Time (RFC 5798 §6.1): a higher priority waits less, so it wins the race to take over. */
export function skewMs(priority: number, masterIntervalMs: number): number {
  return ((256 - priority) * masterIntervalMs) / 256;
}

/** Master_Down_Interval (RFC 5798 §6.1). */
export function masterDownMs(priority: number, masterIntervalMs: number): number {
  return MASTER_DOWN_ADVERTS * masterIntervalMs + skewMs(priority, masterIntervalMs);
}

function checkPriority(p: number): void {
  if (!Number.isInteger(p) || p < 1 || p > PRIORITY_OWNER) throw new RangeError(`priority: expected an integer 1-255, received ${p}`);
}

/** One group's state machine on one dispatcher. See the module comment for the rules. */
export class Election {
  readonly group: string;
  readonly groupId: number;
  readonly node: number;
  readonly intervalMs: number;
  readonly #clock: Clock;
  readonly #send: (advert: AdvertFields) => void;
  readonly #listeners = new Set<ElectionListener>();
  #state: ElectionState = 'initialize';
  #priority: number;
  #preempt: boolean;
  /** The highest epoch seen in any advert of the group, or taken as master. */
  #epoch = 0;
  #master: number | null = null;
  /** Master_Adver_Interval: the current master's, this node's own until one is heard. */
  #masterIntervalMs: number;
  #advertTimer: TimerHandle | null = null;
  #downTimer: TimerHandle | null = null;
  /** What the Master_Down_Timer's expiry will mean. */
  #downReason: MasterReason = 'no-master';
  /** An advert of a live lower-priority master was discarded since the timer was armed. */
  #preempting = false;

  constructor(o: ElectionOptions) {
    checkPriority(o.priority);
    if (!Number.isInteger(o.intervalMs) || o.intervalMs < 1 || o.intervalMs > 65535) {
      throw new RangeError(`intervalMs: expected an integer 1-65535, received ${o.intervalMs}`);
    }
    if (!Number.isInteger(o.groupId) || o.groupId < 0 || o.groupId > 65535) throw new RangeError(`groupId: expected u16, received ${o.groupId}`);
    if (!Number.isInteger(o.node) || o.node < 0 || o.node > 65535) throw new RangeError(`node: expected u16, received ${o.node}`);
    this.group = o.group;
    this.groupId = o.groupId;
    this.node = o.node;
    this.intervalMs = o.intervalMs;
    this.#priority = o.priority;
    this.#preempt = o.preempt;
    this.#masterIntervalMs = o.intervalMs;
    this.#clock = o.clock;
    this.#send = o.send;
  }

  get state(): ElectionState {
    return this.#state;
  }

  /** The highest epoch known: this node's own while it is master. */
  get epoch(): number {
    return this.#epoch;
  }

  /** The current master's id (this node's when master), null when none is known. */
  get master(): number | null {
    return this.#master;
  }

  get priority(): number {
    return this.#priority;
  }

  get preempt(): boolean {
    return this.#preempt;
  }

  /** The Master_Down_Interval a Backup waits now (with the interval last advertised by a master). */
  get masterDownMs(): number {
    return masterDownMs(this.#priority, this.#masterIntervalMs);
  }

  /** Adds a state-change listener; returns its removal. */
  on(listener: ElectionListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Initialize → Backup (see the module comment on why even the owner starts as Backup). */
  start(): void {
    if (this.#state !== 'initialize') return;
    this.#masterIntervalMs = this.intervalMs;
    this.#master = null;
    this.#state = 'backup';
    this.#armDown(masterDownMs(this.#priority, this.#masterIntervalMs), 'no-master');
    this.#emit('backup', 'startup');
  }

  /**
   * An authentic, fresh advert (the transport checked MAC, replay and freshness). Adverts of
   * another group, from this node itself, or arriving before start() / after stop() are ignored.
   */
  receive(a: AdvertFields): void {
    if (this.#state === 'initialize' || a.group !== this.groupId || a.sender === this.node) return;
    if (this.#state === 'master') {
      if (a.epoch > this.#epoch) {
        this.#epoch = a.epoch;
        this.#stepDown(a, 'higher-epoch');
        return;
      }
      if (a.epoch < this.#epoch) return;
      if (a.priority === PRIORITY_RESIGN) {
        this.#advertise();
        this.#advertTimer?.refresh();
        return;
      }
      if (a.priority > this.#priority || (a.priority === this.#priority && a.sender > this.node)) this.#stepDown(a, 'higher-priority');
      return;
    }
    this.#backupReceive(a);
  }

  /**
   * Planned switchover (RFC 5798 §6.4.3, priority 0): a master advertises priority 0, becomes
   * Backup and stops preempting, so the best backup takes over after its Skew_Time. Returns whether
   * this node was master. A backup only stops preempting.
   */
  resign(): boolean {
    this.#preempt = false;
    if (this.#state !== 'master') return false;
    this.#advertise(PRIORITY_RESIGN);
    this.#becomeBackup(null, this.#masterIntervalMs, 'resigned');
    return true;
  }

  /** Changes this node's priority (1-255); a master's next advert carries it. */
  setPriority(priority: number): void {
    checkPriority(priority);
    this.#priority = priority;
  }

  /** Turns Preempt_Mode on or off (resign() turns it off). */
  setPreempt(on: boolean): void {
    this.#preempt = on;
  }

  /**
   * Shutdown (RFC 5798 §6.4.3): a master advertises priority 0 so that the backups take over after
   * Skew_Time instead of a whole Master_Down_Interval, and reports `backup`/`stopped` so that its
   * VIP is released. Back to Initialize; start() may run it again.
   */
  stop(): void {
    if (this.#state === 'master') this.#advertise(PRIORITY_RESIGN);
    this.#halt();
  }

  /** Stops at once, sending nothing (a crash, as far as peers can tell); a master still reports `stopped`. */
  destroy(): void {
    this.#halt();
  }

  #halt(): void {
    const wasMaster = this.#state === 'master';
    this.#cancelTimers();
    this.#state = 'initialize';
    if (wasMaster) {
      this.#master = null;
      this.#emit('backup', 'stopped');
    }
  }

  #backupReceive(a: AdvertFields): void {
    const known = this.#epoch;
    if (a.epoch > this.#epoch) this.#epoch = a.epoch;
    if (a.priority === PRIORITY_RESIGN) {
      if (a.epoch < known) return;
      this.#master = null;
      this.#masterIntervalMs = a.intervalMs;
      this.#armDown(skewMs(this.#priority, a.intervalMs), 'master-resigned');
      return;
    }
    const preempts = this.#preempt || this.#priority === PRIORITY_OWNER;
    if (!preempts || a.priority >= this.#priority) {
      this.#master = a.sender;
      this.#masterIntervalMs = a.intervalMs;
      this.#armDown(masterDownMs(this.#priority, a.intervalMs), 'master-down');
      return;
    }
    // Discarded: the timer keeps running from the last accepted advert, and this node preempts.
    this.#preempting = true;
  }

  #stepDown(a: AdvertFields, reason: 'higher-epoch' | 'higher-priority'): void {
    this.#becomeBackup(a.sender, a.intervalMs, reason);
    if (this.#state === 'backup') this.#backupReceive(a);
  }

  #becomeBackup(master: number | null, masterIntervalMs: number, reason: ElectionReason): void {
    this.#cancelTimers();
    this.#state = 'backup';
    this.#master = master;
    this.#masterIntervalMs = masterIntervalMs;
    this.#armDown(masterDownMs(this.#priority, masterIntervalMs), 'master-down');
    this.#emit('backup', reason);
  }

  #becomeMaster(reason: MasterReason): void {
    this.#cancelTimers();
    this.#state = 'master';
    this.#master = this.node;
    this.#epoch = Math.min(this.#epoch + 1, MAX_EPOCH);
    this.#advertise();
    this.#advertTimer = this.#clock.setInterval(() => this.#advertise(), this.intervalMs);
    this.#emit('master', reason);
  }

  #armDown(ms: number, reason: MasterReason): void {
    this.#downTimer?.cancel();
    this.#downReason = reason;
    this.#preempting = false;
    this.#downTimer = this.#clock.setTimeout(() => {
      this.#downTimer = null;
      if (this.#state !== 'backup') return;
      // Drain before deciding (issue 17, as the failure detectors do): libuv runs due timers before
      // it polls, so a backup starved until just past its Master_Down_Interval would take over
      // while the master's adverts wait unread in its socket. Decide after one turn of the loop has
      // read them: an advert that arrives re-arms the timer, and this node stays backup.
      this.#clock.immediate(() => {
        if (this.#state !== 'backup' || this.#downTimer !== null) return;
        this.#becomeMaster(this.#preempting ? 'preempt' : this.#downReason);
      });
    }, ms);
  }

  #cancelTimers(): void {
    this.#downTimer?.cancel();
    this.#downTimer = null;
    this.#advertTimer?.cancel();
    this.#advertTimer = null;
  }

  #advertise(priority = this.#priority): void {
    try {
      this.#send({
        group: this.groupId,
        sender: this.node,
        priority,
        preempt: this.#preempt,
        intervalMs: this.intervalMs,
        epoch: this.#epoch,
      });
    } catch (error) {
      rethrow(error);
    }
  }

  #emit(type: 'master' | 'backup', reason: ElectionReason): void {
    const event: ElectionEvent = { type, group: this.group, epoch: this.#epoch, reason, master: this.#master };
    if (channels.electionState.hasSubscribers) {
      const message: ElectionStateEvent = { ...event, node: this.node };
      channels.electionState.publish(message);
    }
    for (const listener of this.#listeners) {
      try {
        listener(event);
      } catch (error) {
        rethrow(error);
      }
    }
  }
}

/** A listener's or the transport's bug surfaces as an uncaught exception, not as a broken state machine. */
function rethrow(error: unknown): void {
  queueMicrotask(() => {
    throw error;
  });
}
