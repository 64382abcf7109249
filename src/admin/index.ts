/**
 * @module Observability and control: Prometheus metrics (prom-client counters and gauges fed by the
 * diagnostics channels), the admin HTTP API and status snapshot, and the logs (pino) that subscribe to
 * the same channels. Nothing here is called by the pipeline.
 */
export { createMetrics } from './metrics.js';
export { startAdminServer, type AdminServer } from './admin-server.js';
export { subscribeLogs, type Logger } from './log.js';
export type { GroupStatus, ServiceStatus, StatusSnapshot, WorkersStatus } from './status.js';
