/** @module The JSON shape of /api/v1/status, produced by the dispatcher, served by admin/. */
import type { BackendState } from '../monitor/backend.js';

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
}

export interface ServiceStatus {
  name: string;
  protocol: 'http' | 'tcp' | 'udp' | 'sip';
  /** The bound address (port resolved when 0 was configured). */
  listen: string;
  balancer: string;
  backends: BackendStatus[];
  /** SARA eq. 1 over the backends that report load (0 when none does). */
  clusterLoad: number;
}

export interface StatusSnapshot {
  version: string;
  pid: number;
  /** Wall-clock ms. */
  startedAt: number;
  services: ServiceStatus[];
}
