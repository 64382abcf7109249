/**
 * @module The health view of a dispatcher worker (issue 16, `dispatcher.workers` > 1): backend states
 * are decided by the primary's HealthMonitor (detectors, probes, agents, drains) and copied here;
 * what this worker's forwarders see (refused, reset, timed out; a success) is reported to the primary.
 * One view of health for every worker, without N copies of the detectors probing the backends.
 */
import type { Backend, BackendState, FailureSink } from '../core/backend.js';
import type { Clock } from '../core/clock.js';
import type { BackendFailureKind } from '../core/errors.js';
import type { BackendListener } from './health.js';

/** What a follower tells the primary: a failure it saw, or a success on a not-yet-up backend. */
export type HealthReport =
  | { readonly kind: 'failure'; readonly backend: string; readonly failure: BackendFailureKind }
  | { readonly kind: 'success'; readonly backend: string };

export class HealthFollower implements FailureSink {
  private readonly listeners = new Set<BackendListener>();
  /** Backends whose success was reported since their last state change (one report per state). */
  private readonly successSent = new Set<Backend>();

  constructor(
    readonly backends: readonly Backend[],
    private readonly report: (r: HealthReport) => void,
    private readonly clock: Clock,
  ) {}

  /**
   * A failure seen here takes the backend out of this worker's rotation at once (the primary's
   * verdict arrives a message later) and goes to the primary, which runs its detectors on it.
   */
  reportFailure(backend: Backend, kind: BackendFailureKind): void {
    if (backend.state === 'down' || backend.state === 'draining') return;
    this.set(backend, 'down', kind, this.clock.wallNow());
    this.report({ kind: 'failure', backend: backend.id, failure: kind });
  }

  /** Hot path: nothing while up; otherwise one report per state, the primary decides. */
  reportSuccess(backend: Backend): void {
    if (backend.state === 'up' || this.successSent.has(backend)) return;
    this.successSent.add(backend);
    this.report({ kind: 'success', backend: backend.id });
  }

  /** The primary's state of backend `id`. Unknown ids are ignored (a message from another config). */
  apply(id: string, state: BackendState, reason: string, since: number): void {
    const backend = this.backends.find((b) => b.id === id);
    if (!backend || (backend.state === state && backend.reason === reason)) return;
    this.set(backend, state, reason, since);
  }

  /** Called synchronously after every state change, as HealthMonitor.onChange. */
  onChange(listener: BackendListener): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  private set(backend: Backend, state: BackendState, reason: string, since: number): void {
    backend.state = state;
    backend.reason = reason;
    backend.since = since;
    this.successSent.delete(backend);
    for (const listener of this.listeners) listener(backend);
  }
}
