/**
 * @module The availability announcements (SARA III.E, Fig. 6): every delta one sealed Availability
 * message to every dispatcher, Seq_Nber +1 per message so that the dispatcher counts lost ones, the
 * Flag from the watchdog's verdict or the drain state. The body lives in one buffer written in place,
 * so a heartbeat costs one seal (the HMAC and the message buffer) and one send per dispatcher.
 * A scheduled announcement that goes out late because the agent was starved of CPU says so (flag
 * bit 6, issue 17), so that the dispatcher can tell a starved agent from a stopped one.
 */
import type { Clock } from '../core/clock.js';
import { ClosedError } from '../core/errors.js';
import { RunQueueMeter, StealMeter } from '../core/scheduling.js';
import { AVAILABILITY_BYTES, FLAG_STARVED, FLAG_VIA_SIBLING, type AvailabilityFlag } from '../wire/availability.js';
import { MessageType } from '../wire/envelope.js';
import { wireTimestamp } from '../wire/timestamp.js';
import type { MessageSink } from './dispatcher-link.js';
import { PeriodicSender } from './periodic-sender.js';

/** Flag values on the wire (wire/availability.ts, SARA Fig. 6). */
const FLAG_CODE: Readonly<Record<AvailabilityFlag, number>> = { available: 1, 'app-unavailable': 2, 'planned-failure': 3 };

export interface HeartbeatSenderOptions {
  /** Host_Identity. */
  host: number;
  /** delta. */
  intervalMs: number;
  key: Buffer;
  sink: MessageSink;
  clock?: Clock;
  /** The first Seq_Nber; default 0. */
  firstSeq?: number;
  /**
   * The time, cumulative in ms, the agent was runnable but not running: its event-loop thread's
   * run-queue wait plus the machine's CPU steal; null when unknown (never starved). `fresh`: the
   * tick is late and needs an exact reading (a cached steal reading serves otherwise). Default:
   * RunQueueMeter (/proc/thread-self/schedstat) + StealMeter (/proc/stat).
   */
  starvationMs?: (fresh: boolean) => number | null;
}

/**
 * A scheduled announcement is starved (flag bit 6) when it goes out at least STARVED_LATE_INTERVALS
 * intervals after it was due (the gap the dispatcher sees is at least twice the interval) and the
 * agent was runnable but not running (its thread's run-queue wait plus the machine's CPU steal) for
 * at least STARVED_WAIT_SHARE of that lateness since the previous one. A SIGSTOP, a debugger or a
 * blocking call is late without either: not starved. (The steal reading may be up to
 * STEAL_REFRESH_MS older than the previous tick: steal just before a stop would be counted.)
 */
export const STARVED_LATE_INTERVALS = 1;
export const STARVED_WAIT_SHARE = 0.5;

export class HeartbeatSender extends PeriodicSender {
  /** Host_Identity @0 (written once), Seq_Nber @2, Flag @6, Timestamp @7. */
  private readonly body = Buffer.alloc(AVAILABILITY_BYTES);
  private flagValue: AvailabilityFlag = 'app-unavailable';
  /** The planned failure time as sent (u32), once announced. */
  private plannedAt: number | null = null;
  /** Flag bit 7 (HANet): a sibling relays this node's packets. */
  private relayed = false;
  /** Flag bit 6 for the next announcement (set by a starved tick, cleared once sent). */
  private starvedNext = false;
  /** Clock time of the previous scheduled announcement and the run-queue wait then. */
  private lastTickAt: number | null = null;
  private lastWaitMs: number | null = null;
  private readonly meters: { close(): void }[] = [];
  private readonly starvationMs: (fresh: boolean) => number | null;
  private starvedCount = 0;

  constructor(private readonly opts: HeartbeatSenderOptions) {
    super(opts.sink, opts.key, opts.clock, opts.firstSeq ?? 0);
    this.body.writeUInt16BE(opts.host, 0);
    if (opts.starvationMs) {
      this.starvationMs = opts.starvationMs;
    } else {
      const runQueue = new RunQueueMeter();
      const steal = new StealMeter();
      this.meters.push(runQueue, steal);
      this.starvationMs = (fresh) => {
        const waited = runQueue.read();
        if (waited === null) return null;
        return waited + (steal.read(fresh) ?? 0);
      };
    }
  }

  /** Announcements sent with the starved bit. */
  get starvedSent(): number {
    return this.starvedCount;
  }

  override close(): void {
    super.close();
    for (const m of this.meters) m.close();
  }

  /**
   * The watchdog's verdict: flag 1 when the application is available, flag 2 when not. Ignored once
   * a planned failure is announced (a drain is not undone).
   */
  setAppAvailable(available: boolean): void {
    if (this.plannedAt === null) this.flagValue = available ? 'available' : 'app-unavailable';
  }

  /**
   * HANet: while a sibling relays this node's packets, every announcement carries flag bit 7, so the
   * dispatcher can show that the backend is reached through a sibling.
   */
  setViaSibling(via: boolean): void {
    this.relayed = via;
  }

  /** Whether the next announcement says the node is reached through a sibling. */
  get viaSibling(): boolean {
    return this.relayed;
  }

  /**
   * From now on every announcement is flag 3 with Timestamp = `atWallMs`, the planned failure time,
   * and one goes out at once rather than at the next tick: the dispatcher stops sending new work as
   * early as possible. The first call wins; later ones keep the original time.
   */
  announcePlannedFailure(atWallMs: number): void {
    if (this.closed) throw new ClosedError('heartbeat sender');
    if (this.plannedAt !== null) return;
    this.plannedAt = wireTimestamp(atWallMs);
    this.flagValue = 'planned-failure';
    this.sendNow();
  }

  /** Sends one announcement now and then one every intervalMs. */
  start(): void {
    if (this.closed) throw new ClosedError('heartbeat sender');
    if (this.scheduled) return;
    this.sendNow();
    this.lastTickAt = this.clock.now();
    this.lastWaitMs = this.starvationMs(false);
    this.schedule(this.opts.intervalMs);
  }

  /** Sends one announcement now, outside the schedule (which does not move). */
  sendNow(): void {
    if (this.closed) throw new ClosedError('heartbeat sender');
    const body = this.body;
    body.writeUInt32BE(this.seq, 2);
    body[6] = FLAG_CODE[this.flagValue] | (this.relayed ? FLAG_VIA_SIBLING : 0) | (this.starvedNext ? FLAG_STARVED : 0);
    if (this.starvedNext) this.starvedCount++;
    this.starvedNext = false;
    body.writeUInt32BE(this.plannedAt ?? wireTimestamp(this.clock.wallNow()), 7);
    this.emit(MessageType.Availability, body);
  }

  /** The flag the next announcement carries. */
  get flag(): AvailabilityFlag {
    return this.flagValue;
  }

  protected onTick(): void {
    const now = this.clock.now();
    const interval = this.opts.intervalMs;
    const lateMs = this.lastTickAt === null ? 0 : now - this.lastTickAt - interval;
    const late = lateMs >= STARVED_LATE_INTERVALS * interval;
    const waitMs = this.starvationMs(late);
    if (late && this.lastWaitMs !== null && waitMs !== null) {
      this.starvedNext = waitMs - this.lastWaitMs >= STARVED_WAIT_SHARE * lateMs;
    }
    this.lastTickAt = now;
    this.lastWaitMs = waitMs;
    this.sendNow();
  }
}
