/**
 * @module The load monitor side of SARA Fig. 8: "catch the load vector, send it over the UDP channel
 * to the dispatcher, wait delta" — every loadIntervalMs one sealed LoadVector to every dispatcher,
 * seq +1 per vector (its own counter, apart from the heartbeats').
 */
import type { Clock } from '../core/clock.js';
import { ClosedError } from '../core/errors.js';
import { MessageType } from '../wire/envelope.js';
import { encodeLoadVector, type LoadVector } from '../wire/load-vector.js';
import { wireTimestamp } from '../wire/timestamp.js';
import type { MessageSink } from './dispatcher-link.js';
import type { LoadSample } from './load-collector.js';
import { PeriodicSender } from './periodic-sender.js';

/** What the sender needs of a collector (LoadCollector; a stub in unit tests). */
export interface LoadSource {
  prime(): Promise<void>;
  sample(): Promise<LoadSample>;
}

export interface LoadSenderOptions {
  host: number;
  /** delta_load. */
  intervalMs: number;
  key: Buffer;
  sink: MessageSink;
  source: LoadSource;
  clock?: Clock;
  /** A sample that failed (should not happen: the collector reports what it cannot read as missing). */
  onError?: (err: unknown) => void;
  /** Every vector sent, for logs at debug level. */
  onSent?: (vector: LoadVector, sample: LoadSample) => void;
}

export class LoadSender extends PeriodicSender {
  private busy = false;

  constructor(private readonly opts: LoadSenderOptions) {
    super(opts.sink, opts.key, opts.clock);
  }

  /**
   * Primes the collector (the rate indicators need a first reading), then samples and sends every
   * intervalMs. A sample still running when the next interval starts (a slow stats URL) makes that
   * interval skip rather than pile up; the dispatcher tolerates 3 x delta_load of silence.
   */
  async start(): Promise<void> {
    if (this.closed) throw new ClosedError('load sender');
    if (this.scheduled) return;
    await this.opts.source.prime();
    if (this.closed) return;
    this.schedule(this.opts.intervalMs);
  }

  /** Samples and sends one vector now. Resolves when it has gone out (or was skipped). */
  async sendNow(): Promise<void> {
    if (this.busy || this.closed) return;
    this.busy = true;
    try {
      const sample = await this.opts.source.sample();
      if (this.closed) return;
      const vector: LoadVector = {
        host: this.opts.host,
        seq: this.seq,
        timestamp: wireTimestamp(this.clock.wallNow()),
        cpu: sample.cpu,
        memory: sample.memory,
        network: sample.network,
        io: sample.io,
        backlog: sample.backlog,
        load: sample.load,
      };
      this.emit(MessageType.LoadVector, encodeLoadVector(vector));
      this.opts.onSent?.(vector, sample);
    } catch (err) {
      this.opts.onError?.(err);
    } finally {
      this.busy = false;
    }
  }

  protected onTick(): void {
    void this.sendNow();
  }
}
