/** @module The JSON shape of /api/v1/status, produced by the dispatcher, served by admin/. */
import type { EdgeStats } from '../edge/edge.js';
import type { BackendState } from '../core/backend.js';

export interface BackendStatus {
  id: string;
  address: string;
  weight: number;
  state: BackendState;
  /** Wall-clock ms of the last state change. */
  since: number;
  reason: string;
  active: number;
  /** With an agent: its Host_Identity, latest load sample, shell forecast, heartbeats lost. */
  agent?: number;
  load?: number;
  forecast?: number;
  lostHeartbeats?: number;
  /** HANet: the agent says the backend's public links failed and a sibling relays its packets. */
  viaSibling?: boolean;
}

export interface ServiceStatus {
  name: string;
  protocol: 'http' | 'tcp' | 'udp' | 'sip' | 'rtsp';
  /** The bound address (port resolved when 0 was configured). */
  listen: string;
  balancer: string;
  backends: BackendStatus[];
  /** SARA eq. 1 over the backends that report load (0 when none does). */
  clusterLoad: number;
  /** Sessions pinned now, and the configured maximum. */
  sessions: { active: number; max: number };
  /** Flows tracked now (SARA III.A), and the configured maximum. */
  flows: { active: number; max: number };
  /** The listener's edge: connections refused by reason, TLS handshakes and failures, reloads. */
  edge?: EdgeStats;
}

/** One election group (issue 7) on this dispatcher: its VIP and whether this dispatcher is its master. */
export interface GroupStatus {
  name: string;
  id: number;
  vip: string;
  takeover: 'loopback' | 'linux';
  state: 'initialize' | 'backup' | 'master';
  /** Master: its epoch; backup: the highest epoch known. */
  epoch: number;
  /** Wall-clock ms of the last state change. */
  since: number;
  /** The master's dispatcher id when known. */
  master: number | null;
  priority: number;
  /** Whether this dispatcher answers on the VIP now (the group's services are bound there). */
  vipHeld: boolean;
}

export interface StatusSnapshot {
  version: string;
  pid: number;
  /** Wall-clock ms. */
  startedAt: number;
  services: ServiceStatus[];
  /** Election groups (empty when the dispatcher is not replicated). */
  groups?: GroupStatus[];
  /** `dispatcher.workers` > 1: the worker processes serving the spread services (issue 16). */
  workers?: WorkersStatus;
}

export interface WorkersStatus {
  count: number;
  /** Workers listening now. */
  alive: number;
  /** Workers replaced after they died. */
  restarts: number;
  /** In worker order; 0 while a worker is being replaced. */
  pids: number[];
  /** Services the workers share; the others are served by the primary (pid). */
  services: string[];
}
