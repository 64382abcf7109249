/**
 * @module A service's session layer, built from its configuration: the flow table, the session table
 * behind its router, and the purging process that sweeps both a slice at a time.
 */
import type { Balancer } from '../balance/balancer.js';
import type { Clock } from '../core/clock.js';
import { channels, type FlowPurgeEvent } from '../core/diagnostics.js';
import type { Backend } from '../core/backend.js';
import { FlowTable } from './flow-table.js';
import { SessionRouter } from './session-router.js';
import { SessionTable } from './session-table.js';

/** Slots visited per sweep tick: bounds the pause one tick adds to the event loop. */
export const SWEEP_BUDGET_SLOTS = 16_384;
/** Sweep ticks per timeout, and at most SWEEP_MAX_INTERVAL_MS apart: 65 536 slots a second, a million in 15 s. */
export const SWEEPS_PER_TIMEOUT = 8;
export const SWEEP_MAX_INTERVAL_MS = 250;

export interface SessionLayer {
  readonly flows: FlowTable;
  readonly sessions: SessionRouter;
  /** Start the purging process. */
  start(): void;
  close(): void;
}

/**
 * What the session layer needs of a service's configuration, as plain values (a validated
 * `services[]` entry is one): the layer does not depend on the configuration schema.
 */
export interface SessionLayerOptions {
  readonly name: string;
  readonly sessions: {
    readonly maxFlows: number;
    readonly maxSessions: number;
    readonly flowTimeoutMs: number;
    readonly sessionTimeoutMs: number;
  };
}

export function createSessionLayer(config: SessionLayerOptions, backends: readonly Backend[], balancer: Balancer<Backend>, clock: Clock): SessionLayer {
  const s = config.sessions;
  const flows = new FlowTable({ service: config.name, maxFlows: s.maxFlows, timeoutMs: s.flowTimeoutMs, clock });
  const table = new SessionTable({ service: config.name, maxSessions: s.maxSessions, timeoutMs: s.sessionTimeoutMs, clock });
  const sessions = new SessionRouter(config.name, table, backends, balancer);
  let timer: { cancel(): void } | null = null;
  const tick = () => {
    const purged = flows.sweep(SWEEP_BUDGET_SLOTS);
    table.sweep(SWEEP_BUDGET_SLOTS);
    if (purged > 0 && channels.flowPurge.hasSubscribers) {
      channels.flowPurge.publish({ service: config.name, count: purged } satisfies FlowPurgeEvent);
    }
  };
  return {
    flows,
    sessions,
    start() {
      const every = Math.min(SWEEP_MAX_INTERVAL_MS, Math.max(10, Math.floor(Math.min(s.flowTimeoutMs, s.sessionTimeoutMs) / SWEEPS_PER_TIMEOUT)));
      timer ??= clock.setInterval(tick, every);
    },
    close() {
      timer?.cancel();
      timer = null;
    },
  };
}
