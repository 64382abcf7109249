/**
 * @module A backend as the pipeline sees it: identity, address, weight, its live state and its
 * in-flight work count, and the seam through which a forwarder reports what it saw of one. The state
 * machine is owned by monitor/health.ts; the forwarder only reads `state` through the balancer's
 * snapshot and bumps `active`.
 */
import type { HostPort } from './address.js';
import type { BackendFailureKind } from './errors.js';

/** SARA/STYLE's explicit states. `suspect` is used by heartbeat detectors (issue 3). */
export type BackendState = 'unknown' | 'up' | 'suspect' | 'down' | 'draining';

export class Backend implements HostPort {
  state: BackendState = 'unknown';
  /** Connections (tcp) or requests (http) currently in flight on this backend. */
  active = 0;
  /** Wall-clock ms of the last state change. */
  since = 0;
  /** Why it is in this state (e.g. "refused", "probe ok"). */
  reason = 'configured';
  /** Latest load sample in [0, 1] from the agent (least-loaded reads it). */
  load = 0;
  /** The shell forecast of the next load sample in [0, 1] (SARA eq. 8; shell reads it). */
  forecast = 0;
  /** HANet: the agent's last announcement said a sibling relays this backend's packets. */
  viaSibling = false;
  /**
   * Removed from its service (a reload or the admin API): a tombstone. It keeps its `index` (never
   * reused: session pins and replicated records name backends by index), takes no new work, and is
   * left out of status and API listings.
   */
  removed = false;

  constructor(
    readonly service: string,
    readonly id: string,
    readonly host: string,
    readonly port: number,
    /** Changed live by a reload (the balancer's snapshot is rebuilt after). */
    public weight: number,
    /**
     * Position in the service's backend list: stable for the backend's life and never reused (a
     * removed backend stays in the list as a tombstone; added ones are appended). Balancers, the
     * session table's pins and replication name a backend by it.
     */
    readonly index: number,
    /** Host_Identity of its agent, if it has one. */
    readonly agent: number | null = null,
  ) {}

  /** Eligible for new work. `unknown` counts (a fresh backend is tried, not waited for), and so does
   * `suspect` (one late heartbeat must not move traffic; n of them make it `down`). */
  get eligible(): boolean {
    return (this.state === 'up' || this.state === 'unknown' || this.state === 'suspect') && this.weight > 0;
  }

  get label(): string {
    return `${this.service}/${this.id}`;
  }
}

/**
 * Passive detection input: the forwarder saw a backend refuse, reset or time out. Declared here, beside
 * the backend it speaks of, so that the health monitor (which implements it) and the pipeline (which
 * calls it) meet on shared ground instead of importing each other.
 */
export interface FailureSink {
  reportFailure(backend: Backend, kind: BackendFailureKind): void;
  /** The backend completed a connect or exchange. Called on the hot path: cheap when already up. */
  reportSuccess(backend: Backend): void;
}
