/**
 * @module Recent SA2C decisions per service (SARA III.B), for the admin API and the dashboard's
 * "cluster load against T1/T2/T3/C" chart: each `holdfast:admission:sample` (the decision load
 * x = max(l, l_c), its band, and T2/T3 as moved by eq. 4) kept in a small ring per service.
 * Read-only observer of the admission controller.
 */
import { channels, type AdmissionSampleEvent } from '../core/diagnostics.js';

/** Samples kept per service (with 1 s load intervals: two minutes). */
export const ADMISSION_SERIES_SAMPLES = 120;

export type AdmissionPoint = Omit<AdmissionSampleEvent, 'service'>;

export class AdmissionSeries {
  private readonly series = new Map<string, AdmissionPoint[]>();
  private readonly onSample = (message: unknown): void => {
    const { service, ...point } = message as AdmissionSampleEvent;
    let s = this.series.get(service);
    if (!s) this.series.set(service, (s = []));
    s.push(point);
    if (s.length > this.samples) s.splice(0, s.length - this.samples);
  };

  constructor(private readonly samples: number = ADMISSION_SERIES_SAMPLES) {
    channels.admissionSample.subscribe(this.onSample);
  }

  /** Oldest first; empty when the service has admission control off (or no sample yet). */
  history(service: string): AdmissionPoint[] {
    return this.series.get(service)?.slice() ?? [];
  }

  close(): void {
    channels.admissionSample.unsubscribe(this.onSample);
  }
}
