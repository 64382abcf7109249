/**
 * @module Recent load samples per backend, for the admin API and the dashboard's load charts: each
 * `holdfast:load:sample` (the measured load beside the shell forecast, SARA eq. 8) kept in a small
 * ring per service/backend. Read-only observer: it never touches the load manager.
 */
import { channels, type LoadSampleEvent } from '../core/diagnostics.js';
import type { Clock } from '../core/clock.js';

/** Samples kept per backend (with 1 s load intervals: two minutes). */
export const LOAD_SERIES_SAMPLES = 120;

export interface LoadPoint {
  /** Wall-clock ms. */
  at: number;
  load: number;
  forecast: number;
}

export class LoadSeries {
  private readonly series = new Map<string, LoadPoint[]>();
  private readonly onSample = (message: unknown): void => {
    const e = message as LoadSampleEvent;
    const key = `${e.service}/${e.backend}`;
    let s = this.series.get(key);
    if (!s) this.series.set(key, (s = []));
    s.push({ at: this.clock.wallNow(), load: e.load, forecast: e.forecast });
    if (s.length > this.samples) s.splice(0, s.length - this.samples);
  };

  constructor(
    private readonly clock: Clock,
    private readonly samples: number = LOAD_SERIES_SAMPLES,
  ) {
    channels.loadSample.subscribe(this.onSample);
  }

  /** Oldest first; empty when the backend reports no load (no agent). */
  history(service: string, backend: string): LoadPoint[] {
    return this.series.get(`${service}/${backend}`)?.slice() ?? [];
  }

  close(): void {
    channels.loadSample.unsubscribe(this.onSample);
  }
}
