/**
 * @module The failure-detector registry: the configured detector type's name to its factory. Beside
 * the contract (detector.ts), which the detectors implement without knowing this file.
 */
import type { DetectorConfig } from '../config/schema.js';
import type { Detector, DetectorType, HeartbeatDetectorConfig } from './detector.js';
import { PhiAccrualDetector } from './detector-phi-accrual.js';
import { PullDetector } from './detector-pull.js';
import { PushDetector } from './detector-push.js';

type DetectorFactory = (cfg: DetectorConfig, now: number) => Detector;

/** Static: the configuration schema's enum is the list of names, so there is nothing to register. */
const registry: Readonly<Record<DetectorType, DetectorFactory>> = {
  push: (cfg, now) => new PushDetector(cfg, now),
  pull: (cfg, now) => new PullDetector(cfg, now),
  'phi-accrual': (cfg, now) => new PhiAccrualDetector(cfg, now),
};

export function detectorNames(): DetectorType[] {
  return (Object.keys(registry) as DetectorType[]).sort();
}

/** A detector of the configured type, created at clock time `now` (its start-up grace begins there). */
export function createDetector(cfg: HeartbeatDetectorConfig, now: number): Detector {
  const factory = registry[cfg.type] as DetectorFactory | undefined;
  if (!factory) throw new TypeError(`no failure detector "${cfg.type}", expected one of: ${detectorNames().join(', ')}`);
  return factory(cfg, now);
}

/** Narrows a detector configuration to one with a heartbeat stream. */
export function isHeartbeatDetector(cfg: DetectorConfig): cfg is HeartbeatDetectorConfig {
  return cfg.type !== 'passive';
}
