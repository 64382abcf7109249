/**
 * @module SA2C admission control (issue 8, SARA III.B): the equations (sa2c.ts), the stateful
 * per-service controller the forwarders ask (admission-controller.ts), its configuration
 * (admission-schema.ts) and what feeds it the loads (admission-feed.ts).
 */
export {
  ADMIT,
  ADMIT_ALL,
  AdmissionController,
  DEGRADE,
  createAdmission,
  type Admission,
  type AdmissionControl,
  type AdmissionStatus,
  type AdmissionVerdict,
  type LoadEstimate,
  type SessionKind,
} from './admission-controller.js';
export { admissionSchema, type AdmissionConfig } from './admission-schema.js';
export { EventLoopLoad, LoadSmoother, startAdmissionFeed, type FeedDelay, type FeedSmoothing, type LoadSources } from './admission-feed.js';
export { QUEUE_GAINS, QueueController, QueueDelay, StandingDelay, clusterDecisionLoad, delayLoad, littleDelay, median3, minDelay, type QueueControlParams } from './admission-delay.js';
export {
  BANDS,
  bandOf,
  dropProbability,
  establishedDrop,
  moveThresholds,
  newSessionDrop,
  nextInterval,
  type AdmissionBand,
  type MoveParams,
  type Thresholds,
} from './sa2c.js';
