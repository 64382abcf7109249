/**
 * @module The load history of one backend (SARA eq. 5): the last T load samples, oldest first, in a
 * fixed-size ring buffer so that a load vector costs no allocation.
 */

/**
 * SARA eq. 5, reading chosen: L_j = [l_j(i-T+1) … l_j(i)], the last T samples of node j. The OCR'd
 * equation indexes the samples l_j^{i*T} … l_j^{i*T+T-1}, i.e. consecutive windows of T samples;
 * we keep a sliding window instead (a ring buffer of capacity T = `load.history`), so a fresh
 * forecast is available after every sample rather than once per T samples. Before T samples have
 * arrived the history holds what there is.
 *
 * Storage is a Float64Array of length T with the oldest sample at `start`; `linearForecast` reads it
 * in place through `(values, count, first)`, which is why `values`/`first` are exposed read-only.
 */
export class LoadHistory {
  /** The ring: `length` valid samples starting at `first`, wrapping modulo `capacity`. */
  readonly values: Float64Array;
  private head = 0;
  private size = 0;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`load history capacity must be an integer >= 1, got ${capacity}`);
    this.values = new Float64Array(capacity);
  }

  /** Samples held, at most `capacity`. */
  get length(): number {
    return this.size;
  }

  /** Index in `values` of the oldest sample. */
  get first(): number {
    return this.size < this.capacity ? 0 : this.head;
  }

  /** Append a sample, overwriting the oldest once the ring is full. */
  push(sample: number): void {
    this.values[this.head] = sample;
    this.head = this.head + 1 === this.capacity ? 0 : this.head + 1;
    if (this.size < this.capacity) this.size++;
  }

  /** The `index`-th sample, oldest first (0 ≤ index < length). */
  at(index: number): number {
    if (!(index >= 0 && index < this.size)) throw new RangeError(`load history index ${index} out of [0, ${this.size})`);
    return this.values[(this.first + index) % this.capacity]!;
  }

  /** The newest sample, or 0 when empty. */
  get last(): number {
    if (this.size === 0) return 0;
    return this.values[this.head === 0 ? this.capacity - 1 : this.head - 1]!;
  }

  /** Forget every sample (after a gap, when the time axis of the regression no longer holds). */
  clear(): void {
    this.head = 0;
    this.size = 0;
  }

  /** A copy, oldest first (tests and status; allocates). */
  toArray(): number[] {
    const out: number[] = [];
    for (let i = 0; i < this.size; i++) out.push(this.at(i));
    return out;
  }
}
