/**
 * @module Load management, beside the pipeline (SARA III.G): the agents' load vectors kept per backend,
 * the shell forecast (eq. 5-8) the balancers read, and the cluster load (eq. 1) that feeds admission
 * control.
 */
export { LoadManager } from './load-manager.js';
