/**
 * @module What the agent's two periodic senders share (heartbeats, load vectors): a schedule on the
 * injectable clock, a sequence number that moves on with every message sent, the count sent, and a
 * close() that stops the schedule. Each message is sealed with the cluster key and handed to the sink
 * (every dispatcher).
 */
import { realClock, type Clock, type TimerHandle } from '../core/clock.js';
import { MessageType, seal } from '../wire/envelope.js';
import type { MessageSink } from './dispatcher-link.js';

export abstract class PeriodicSender {
  protected readonly clock: Clock;
  /** The Seq_Nber the next message carries. */
  protected seq: number;
  protected closed = false;
  private timer: TimerHandle | null = null;
  private count = 0;

  constructor(
    private readonly sink: MessageSink,
    private readonly key: Buffer,
    clock: Clock | undefined,
    firstSeq = 0,
  ) {
    this.clock = clock ?? realClock;
    this.seq = firstSeq >>> 0;
  }

  /** Messages sent so far. */
  get sent(): number {
    return this.count;
  }

  /** Stops the schedule. Idempotent. */
  close(): void {
    this.closed = true;
    this.timer?.cancel();
    this.timer = null;
  }

  /** Whether the schedule runs. */
  protected get scheduled(): boolean {
    return this.timer !== null;
  }

  /** Runs `tick` every `intervalMs` until close(). */
  protected schedule(intervalMs: number): void {
    this.timer = this.clock.setInterval(this.tick, intervalMs);
  }

  /** One scheduled send. */
  protected abstract onTick(): void;

  /** Seals `body` as a `type` message and sends it; the sequence number moves on. */
  protected emit(type: MessageType, body: Uint8Array): void {
    this.sink.send(seal(type, body, this.key));
    this.seq = (this.seq + 1) >>> 0;
    this.count++;
  }

  private readonly tick = (): void => {
    this.onTick();
  };
}
