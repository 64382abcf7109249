/**
 * @module The pipeline stage of DESIGN.md: session identifier -> admission control -> balancer, as
 * one `Router` per service (router.ts), with its failure entry (passive detection in, re-pin out).
 * Here too is what a forwarder is given and must implement (service-runtime.ts): the
 * `ServiceRuntime` the composition root assembles, and the `Forwarder` contract. Forwarders (forward/)
 * import this folder and nothing of sessions/, admission/ or balance/; the health monitor implements
 * the failure seam (`FailureSink`, declared in core/ beside `Backend`) without importing this folder.
 */
export { Router, type RefuseReason, type RouteDecision, type RouteHint, type RouterParts } from './router.js';
export { createServiceRuntime, routerOf, type Forwarder, type ServiceRuntime } from './service-runtime.js';
export type { FailureSink } from '../core/backend.js';
export { NO_FLOW, type FlowHandle } from '../sessions/flow-table.js';
export { NO_SESSION, type SessionHandle } from '../sessions/session-table.js';
