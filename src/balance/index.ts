/**
 * @module The balancer registry, filled: importing this module registers every built-in balancer
 * by the name the configuration uses (`services[].balancer`).
 */
import { registerBalancer } from './balancer.js';
import type { BalancerOptions, Candidate } from './balancer.js';
import { MaglevBalancer } from './balancer-maglev.js';
import { LeastConnectionsBalancer } from './balancer-least-connections.js';
import { LeastLoadedBalancer } from './balancer-least-loaded.js';
import { RoundRobinBalancer } from './balancer-round-robin.js';
import { ShellBalancer } from './balancer-shell.js';
import { WeightedRoundRobinBalancer } from './balancer-weighted-round-robin.js';

registerBalancer('round-robin', <T extends Candidate>() => new RoundRobinBalancer<T>());
registerBalancer('weighted-round-robin', <T extends Candidate>() => new WeightedRoundRobinBalancer<T>());
registerBalancer('least-connections', <T extends Candidate>() => new LeastConnectionsBalancer<T>());
registerBalancer('least-loaded', <T extends Candidate>() => new LeastLoadedBalancer<T>());
registerBalancer('shell', <T extends Candidate>() => new ShellBalancer<T>());
registerBalancer('maglev', <T extends Candidate>(options?: BalancerOptions) => new MaglevBalancer<T>(options?.maglevTableSize));

export { balancerNames, createBalancer, registerBalancer } from './balancer.js';
export type { Balancer, BalancerFactory, BalancerOptions, Candidate, PickResult } from './balancer.js';
export { MaglevBalancer, MAGLEV_DEFAULT_TABLE_SIZE } from './balancer-maglev.js';
export { LeastConnectionsBalancer } from './balancer-least-connections.js';
export { LeastLoadedBalancer } from './balancer-least-loaded.js';
export { RoundRobinBalancer } from './balancer-round-robin.js';
export { ShellBalancer } from './balancer-shell.js';
export { WeightedRoundRobinBalancer } from './balancer-weighted-round-robin.js';
export { ReplaceableBalancer } from './balancer-replaceable.js';
