/**
 * @module The balancer contract and its registry. A balancer picks one backend for a new unit of
 * work from a read-only snapshot of the eligible backends, rebuilt whenever health or load changes
 * (grpc-js picker style). A pick is a value, never a side effect on the backend.
 */
import { UnknownBalancerError } from '../core/errors.js';

/** What a balancer may read of a backend. `active` is live (in-flight work), the rest is fixed. */
export interface Candidate {
  readonly id: string;
  readonly weight: number;
  readonly index: number;
  readonly active: number;
  /** Latest load sample in [0, 1] (live, like `active`). */
  readonly load: number;
  /** Forecast load in [0, 1] (live). */
  readonly forecast: number;
}

export type PickResult<T extends Candidate = Candidate> =
  | { readonly type: 'pick'; readonly backend: T }
  | { readonly type: 'none' };

export interface Balancer<T extends Candidate = Candidate> {
  readonly name: string;
  /** Replace the snapshot of eligible backends (called on every health or weight change). */
  update(eligible: readonly T[]): void;
  /**
   * Choose a backend for one new unit of work, or say there is none. `hash`: the unit's key hash
   * (`core/key-hash.ts`: a session key, else the flow's client address and port); only balancers
   * with `hashesKeys` read it, and the caller may skip computing it for the others.
   */
  pick(hash?: number): PickResult<T>;
  /** True when `pick(hash)` maps equal hashes to equal backends (Maglev): callers then pass one. */
  readonly hashesKeys?: boolean;
}

/** Per-service options a balancer may read (`services[].maglev`). */
export interface BalancerOptions {
  readonly maglevTableSize?: number;
}

export type BalancerFactory = <T extends Candidate>(options?: BalancerOptions) => Balancer<T>;

const registry = new Map<string, BalancerFactory>();

export function registerBalancer(name: string, factory: BalancerFactory): void {
  registry.set(name, factory);
}

export function createBalancer<T extends Candidate>(name: string, options?: BalancerOptions): Balancer<T> {
  const factory = registry.get(name);
  if (!factory) throw new UnknownBalancerError(name, balancerNames());
  return factory<T>(options);
}

export function balancerNames(): string[] {
  return [...registry.keys()].sort();
}
