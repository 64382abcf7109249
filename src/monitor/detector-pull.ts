/**
 * @module The pull detector (survey Fig. 5): the monitor sends a hello every intervalMs and the
 * backend's replies are the heartbeats, judged by the same n x intervalMs rule as push. For backends
 * that run no agent; HealthMonitor sends the hellos (its Prober) and feeds the replies in here.
 */
import { PushDetector } from './detector-push.js';

/**
 * The push rule on replies. A reply lags its hello by the round trip, so the backend is judged on
 * the time of its reply, never on the time of the hello: a slow but alive backend stays up.
 */
export class PullDetector extends PushDetector {}
