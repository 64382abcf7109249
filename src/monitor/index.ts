/**
 * @module Availability monitoring, beside the pipeline (SARA III.E): the health monitor that owns every
 * backend's state machine and implements the pipeline's failure seam (passive detection), the failure
 * detectors behind one contract and registry (push and pull heartbeats, phi-accrual), the active
 * probes, and the receiver of the agents' authenticated UDP messages. It emits backend state events;
 * it never calls back into the pipeline.
 */
export { HealthMonitor } from './health.js';
export { HealthFollower, type HealthReport } from './health-follower.js';
export { AgentReceiver, type AgentHandlers, type ReceiverStats } from './agent-receiver.js';
export type { Detector, Verdict } from './detector.js';
export { createDetector, detectorNames } from './detector-registry.js';
