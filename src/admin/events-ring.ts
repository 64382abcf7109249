/**
 * @module The operator's event log (issue 14): the diagnostics events an operator watches (backend
 * transitions, failovers with strategy and recovery time, admission crossings and moves, elections
 * and takeovers, session re-pins, load-monitor failures), each given an increasing id and kept in a
 * bounded ring for `GET /api/v1/events/recent` and the SSE stream's `Last-Event-ID` resumption.
 *
 * Diagnostics channels are process-wide: two dispatchers in one process (the demo) each see the
 * events of both.
 */
import diagnostics_channel from 'node:diagnostics_channel';
import { channels } from '../core/diagnostics.js';
import type { Clock } from '../core/clock.js';

/** Events kept for resumption and the recent-events endpoint. */
export const EVENT_RING_CAPACITY = 1000;

/** The event types, named after their channel without the `holdfast:` prefix. */
export const EVENT_CHANNELS = {
  'backend:state': channels.backendState,
  failover: channels.failover,
  'admission:threshold': channels.admissionThreshold,
  'admission:move': channels.admissionMove,
  'election:state': channels.electionState,
  'session:repin': channels.sessionRepin,
  'load:monitor': channels.loadMonitor,
} as const;

export type EventType = keyof typeof EVENT_CHANNELS;

export interface RingEvent {
  /** Increasing from 1, without gaps, for the life of the ring. */
  id: number;
  type: EventType;
  /** Wall-clock ms when the ring received it. */
  at: number;
  data: unknown;
}

export type EventListener = (event: RingEvent) => void;

export class EventRing {
  private readonly buf: (RingEvent | undefined)[];
  private next = 1;
  private readonly listeners = new Set<EventListener>();
  private readonly unsubscribes: (() => void)[] = [];

  constructor(
    private readonly clock: Clock,
    readonly capacity: number = EVENT_RING_CAPACITY,
  ) {
    this.buf = new Array<RingEvent | undefined>(capacity);
  }

  /** Subscribes to every channel of EVENT_CHANNELS. Returns this. */
  subscribe(): this {
    for (const [type, channel] of Object.entries(EVENT_CHANNELS) as [EventType, diagnostics_channel.Channel][]) {
      const fn = (message: unknown): void => {
        this.push(type, message);
      };
      channel.subscribe(fn);
      this.unsubscribes.push(() => channel.unsubscribe(fn));
    }
    return this;
  }

  /** Records one event (a copy of `data`'s own fields: publishers may reuse their objects). */
  push(type: EventType, data: unknown): RingEvent {
    const event: RingEvent = { id: this.next++, type, at: this.clock.wallNow(), data: typeof data === 'object' && data !== null ? { ...data } : data };
    this.buf[event.id % this.capacity] = event;
    for (const l of this.listeners) l(event);
    return event;
  }

  /** The id of the newest event, 0 when none. */
  get lastId(): number {
    return this.next - 1;
  }

  /** The oldest id still held (lastId + 1 when empty). */
  get firstId(): number {
    return Math.max(1, this.next - this.capacity);
  }

  /** Events with an id above `afterId`, oldest first, at most `limit` (the newest ones when more). */
  since(afterId: number, limit: number = this.capacity): RingEvent[] {
    const from = Math.max(afterId + 1, this.firstId, this.next - limit);
    const out: RingEvent[] = [];
    for (let id = from; id < this.next; id++) out.push(this.buf[id % this.capacity]!);
    return out;
  }

  /** Called synchronously with every new event. Returns the unsubscribe function. */
  onEvent(listener: EventListener): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  close(): void {
    for (const u of this.unsubscribes.splice(0)) u();
    this.listeners.clear();
  }
}
