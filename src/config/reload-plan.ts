/**
 * @module What a reload changes (issue 14): the difference between the configuration in force and a
 * new, already validated one, split into what can change live — a service's backends (added, removed,
 * re-weighted), its balancer, its detector and probe settings, its admission thresholds, a stream
 * service's listen address — and what needs a restart, named by path. Pure: the dispatcher applies
 * the plan.
 */
import type { AdmissionConfig, BackendConfig, Config, HealthConfig, ServiceConfig } from './schema.js';

/** One service's live changes; null / empty: unchanged. */
export interface ServicePlan {
  /** The service's name (services are matched by name, not by position). */
  readonly name: string;
  /** Backends to add (appended: new ids, or ids whose address, agent or tls changed). */
  readonly add: readonly BackendConfig[];
  /** Ids of backends to remove (drained: see the dispatcher's reload). */
  readonly remove: readonly string[];
  /** Backends kept whose weight changed. */
  readonly reweight: readonly { readonly id: string; readonly weight: number }[];
  readonly balancer: string | null;
  readonly health: HealthConfig | null;
  readonly admission: AdmissionConfig | null;
  /** A new listen address (stream services outside any group): bound first, then the old one closed. */
  readonly listen: string | null;
}

/** A difference that a reload does not apply: the running value stays until a restart. */
export interface RestartNeeded {
  /** Where in the new file (`services[1].http`, `admin`). */
  readonly path: string;
  readonly reason: string;
}

export interface ReloadPlan {
  /** Services with at least one live change. */
  readonly services: readonly ServicePlan[];
  readonly restart: readonly RestartNeeded[];
  /** The configuration in force once the plan is applied: the running one with the live parts of the new one. */
  readonly effective: Config;
}

/** Keys of a service that change live (each handled by the plan), beside the rest that do not. */
const LIVE_SERVICE_KEYS = new Set<keyof ServiceConfig>(['backends', 'balancer', 'health', 'admission', 'listen']);

const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);

/** A backend kept under its id: everything but its weight is its identity. */
function sameBackend(a: BackendConfig, b: BackendConfig): boolean {
  return same({ ...a, weight: 0 }, { ...b, weight: 0 });
}

/**
 * The live changes and the restart-only differences from `running` to `next` (both validated). A
 * service that moves with a group's VIP keeps its listen address (the VIP's) until a restart.
 */
export function planReload(running: Config, next: Config): ReloadPlan {
  const restart: RestartNeeded[] = [];
  for (const key of Object.keys({ ...running, ...next }) as (keyof Config)[]) {
    if (key === 'services') continue;
    if (!same(running[key], next[key])) restart.push({ path: key, reason: `${key} changes only with a restart` });
  }
  const grouped = new Set(running.groups.flatMap((g) => g.services));
  const byName = new Map(next.services.map((s, i) => [s.name, { s, i }]));
  const plans: ServicePlan[] = [];
  const effective: ServiceConfig[] = [];
  running.services.forEach((old) => {
    const found = byName.get(old.name);
    if (!found) {
      restart.push({ path: 'services', reason: `service "${old.name}" is not in the new file: a service is removed only by a restart (it keeps running)` });
      effective.push(old);
      return;
    }
    const { s: neu, i } = found;
    const at = `services[${i}]`;
    for (const key of Object.keys({ ...old, ...neu }) as (keyof ServiceConfig)[]) {
      if (LIVE_SERVICE_KEYS.has(key) || same(old[key], neu[key])) continue;
      restart.push({ path: `${at}.${key}`, reason: `services[].${key} changes only with a restart` });
    }
    const eff: { -readonly [K in keyof ServiceConfig]: ServiceConfig[K] } = { ...old };
    let add: BackendConfig[] = [];
    let remove: string[] = [];
    let reweight: { id: string; weight: number }[] = [];
    if (!same(old.backends, neu.backends)) {
      if (old.tlsPassthrough !== undefined || neu.tlsPassthrough !== undefined) {
        restart.push({ path: `${at}.backends`, reason: 'the backends of a tlsPassthrough service change only with a restart' });
      } else {
        const before = new Map(old.backends.map((b) => [b.id, b]));
        const after = new Set(neu.backends.map((b) => b.id));
        remove = old.backends.filter((b) => !after.has(b.id) || !sameBackend(b, neu.backends.find((n) => n.id === b.id)!)).map((b) => b.id);
        add = neu.backends.filter((b) => !before.has(b.id) || remove.includes(b.id));
        reweight = neu.backends.filter((b) => before.has(b.id) && !remove.includes(b.id) && before.get(b.id)!.weight !== b.weight).map((b) => ({ id: b.id, weight: b.weight }));
        eff.backends = neu.backends;
      }
    }
    const balancer = old.balancer !== neu.balancer ? neu.balancer : null;
    if (balancer !== null) eff.balancer = balancer;
    let health: HealthConfig | null = null;
    if (!same(old.health, neu.health)) {
      // Forwarders read the connect timeout from the configuration they were built with.
      if (old.health.connectTimeoutMs !== neu.health.connectTimeoutMs) {
        restart.push({ path: `${at}.health.connectTimeoutMs`, reason: 'health.connectTimeoutMs changes only with a restart' });
      }
      const h = { ...neu.health, connectTimeoutMs: old.health.connectTimeoutMs };
      if (!same(old.health, h)) eff.health = health = h;
    }
    let admission: AdmissionConfig | null = null;
    if (!same(old.admission, neu.admission)) {
      if (old.admission.enabled !== neu.admission.enabled) {
        restart.push({ path: `${at}.admission.enabled`, reason: 'switching admission control on or off needs a restart' });
      } else if (neu.admission.enabled) {
        eff.admission = admission = neu.admission;
      } else {
        eff.admission = neu.admission; // off: nothing runs that would read it
      }
    }
    let listen: string | null = null;
    if (old.listen !== neu.listen) {
      if (grouped.has(old.name)) restart.push({ path: `${at}.listen`, reason: "a grouped service's listen address changes only with a restart" });
      else if (old.protocol === 'udp' || old.protocol === 'sip') {
        restart.push({ path: `${at}.listen`, reason: `the listen address of a ${old.protocol} service changes only with a restart (its flows answer from the bound socket)` });
      } else eff.listen = listen = neu.listen;
    }
    effective.push(eff);
    if (add.length + remove.length + reweight.length > 0 || balancer !== null || health !== null || admission !== null || listen !== null) {
      plans.push({ name: old.name, add, remove, reweight, balancer, health, admission, listen });
    }
  });
  next.services.forEach((s, i) => {
    if (!running.services.some((o) => o.name === s.name)) restart.push({ path: `services[${i}]`, reason: `service "${s.name}" is new: a service is added only by a restart` });
  });
  return { services: plans, restart, effective: { ...running, services: effective } };
}
