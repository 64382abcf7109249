/**
 * @module Live changes of a running dispatcher's services (issue 14): a reload's plan applied, and the
 * admin API's add / remove of a backend. Wiring only: each part (health monitor, load manager,
 * balancer, admission, listener) changes itself; this module calls them in the order that keeps
 * every established connection, session and pin.
 *
 * Backend identity: a backend's index in its service's list names it for the balancers, the session
 * table's pins and the replication stream, so the list is append-only. A removed backend stays in
 * it as a tombstone (`removed`, never reused, left out of listings); an added one is appended.
 */
import type { Clock } from '../core/clock.js';
import type { Backend } from '../core/backend.js';
import { HoldfastError } from '../core/errors.js';
import type { BackendConfig, Config } from '../config/schema.js';
import type { ReloadPlan, RestartNeeded, ServicePlan } from '../config/reload-plan.js';
import { listen } from '../forward/index.js';
import { newBackend, startAdmission, type AgentRoutes, type Service } from './service.js';

/** Backend indices are u16 on the replication wire (replication-frame.ts). */
export const MAX_BACKEND_SLOTS = 0xffff;

export interface LiveContext {
  readonly clock: Clock;
  readonly agents: AgentRoutes;
  /** An agent receiver runs (some backend had an agent at start): added backends with an agent can be heard. */
  readonly receiverRunning: boolean;
}

export type AddBackendResult =
  | { readonly type: 'added'; readonly backend: Backend }
  | { readonly type: 'conflict'; readonly message: string }
  | { readonly type: 'invalid'; readonly path: string; readonly message: string };

export type RemoveBackendResult = 'removed' | 'unknown' | 'last' | 'passthrough';

/** The backends of `s` that are not removed. */
export function liveBackends(s: Service): Backend[] {
  return s.backends.filter((b) => !b.removed);
}

/**
 * Appends a backend to `s`: watched by the health monitor (unknown until its detector speaks; a
 * passive one is probed at once) and the load manager, heard from its agent, in the balancer's
 * snapshot. Nothing else moves: the other backends keep their index and their sessions.
 */
export function addBackend(s: Service, cfg: BackendConfig, ctx: LiveContext): AddBackendResult {
  if (s.config.tlsPassthrough !== undefined) return { type: 'conflict', message: "the backends of a tlsPassthrough service change only with a restart" };
  if (liveBackends(s).some((b) => b.id === cfg.id)) return { type: 'conflict', message: `backend "${cfg.id}" already exists in service "${s.config.name}"` };
  if (s.backends.length >= MAX_BACKEND_SLOTS) return { type: 'conflict', message: `service "${s.config.name}" has used all ${MAX_BACKEND_SLOTS} backend slots: restart to reuse them` };
  if (cfg.tls !== undefined && s.config.protocol !== 'http' && s.config.protocol !== 'tcp') {
    return { type: 'invalid', path: 'tls', message: `expected only on an http or tcp service, received a ${s.config.protocol} service` };
  }
  if (cfg.serverNames !== undefined) return { type: 'invalid', path: 'serverNames', message: 'expected only on a tlsPassthrough service' };
  if (cfg.agent !== undefined && !ctx.receiverRunning) {
    return { type: 'invalid', path: 'agent', message: 'no agent receiver runs (no backend had an agent at start): restart the dispatcher to hear agents' };
  }
  let backend: Backend;
  try {
    backend = newBackend(s.config.name, cfg, s.backends.length);
  } catch (err) {
    if (err instanceof HoldfastError) return { type: 'invalid', path: 'tls', message: err.message };
    throw err;
  }
  s.backends.push(backend);
  s.monitor.add(backend);
  s.load.add(backend);
  ctx.agents.add(backend, s);
  s.rebuild();
  s.config = { ...s.config, backends: [...s.config.backends, cfg] };
  return { type: 'added', backend };
}

/**
 * Removes backend `id` from `s`: it is drained for good (no new sessions or requests; established
 * connections, exchanges and pinned sessions finish on it; a failure of it re-pins them as usual) and
 * becomes a tombstone. The last live backend of a service is never removed ('last').
 */
export function removeBackend(s: Service, id: string, ctx: LiveContext, allowLast = false): RemoveBackendResult {
  if (s.config.tlsPassthrough !== undefined) return 'passthrough';
  const live = liveBackends(s);
  const backend = live.find((b) => b.id === id);
  if (!backend) return 'unknown';
  if (live.length === 1 && !allowLast) return 'last';
  backend.removed = true;
  s.monitor.retire(backend);
  s.load.remove(backend);
  // Its agent's heartbeats still reach the monitor: a draining backend watched by push or
  // phi-accrual must not be declared dead for silence (its sessions would move for nothing).
  s.rebuild();
  s.config = { ...s.config, backends: s.config.backends.filter((b) => b.id !== id) };
  return 'removed';
}

/** What one service's reload changed, as the answer names it. */
export interface ServiceReloadReport {
  service: string;
  added: string[];
  removed: string[];
  reweighted: { id: string; weight: number }[];
  balancer?: string;
  health?: true;
  admission?: true;
  listen?: string;
}

export interface ReloadReport {
  /** The live changes made, per service (services with none are left out). */
  applied: ServiceReloadReport[];
  /** Differences from the file that were not applied: restart to have them. */
  restartRequired: RestartNeeded[];
  /** Live changes that failed (a new listen address that cannot be bound): the old value stays. */
  errors: { path: string; message: string }[];
}

/**
 * Applies one service's plan. Order: new backends first (the service never has fewer eligible
 * backends than it needs in between), weights, then removals, the balancer, detectors, admission,
 * and last the listen address (bound before the old one is closed: no moment without a listener;
 * accepted connections stay with the forwarder).
 */
export async function applyServicePlan(s: Service, plan: ServicePlan, ctx: LiveContext, at: string): Promise<{ report: ServiceReloadReport; errors: ReloadReport['errors'] }> {
  const report: ServiceReloadReport = { service: s.config.name, added: [], removed: [], reweighted: [] };
  const errors: ReloadReport['errors'] = [];
  // A changed address, agent or tls is a new backend under the same id: the old one goes first.
  for (const id of plan.remove) {
    if (plan.add.some((b) => b.id === id) && removeBackend(s, id, ctx, true) === 'removed') report.removed.push(id);
  }
  for (const cfg of plan.add) {
    const r = addBackend(s, cfg, ctx);
    if (r.type === 'added') report.added.push(cfg.id);
    else errors.push({ path: `${at}.backends`, message: `backend "${cfg.id}" not added: ${r.type === 'invalid' ? `${r.path}: ` : ''}${r.message}` });
  }
  for (const { id, weight } of plan.reweight) {
    const b = liveBackends(s).find((x) => x.id === id);
    if (!b) continue;
    b.weight = weight;
    report.reweighted.push({ id, weight });
  }
  for (const id of plan.remove) {
    if (plan.add.some((b) => b.id === id)) continue;
    // The file has at least one backend, and every backend it names was added above.
    if (removeBackend(s, id, ctx, true) === 'removed') report.removed.push(id);
  }
  if (plan.reweight.length > 0) {
    s.config = { ...s.config, backends: s.config.backends.map((b) => ({ ...b, weight: plan.reweight.find((r) => r.id === b.id)?.weight ?? b.weight })) };
  }
  s.rebuild();
  if (plan.balancer !== null) {
    try {
      s.balancer.replace(plan.balancer);
      s.config = { ...s.config, balancer: plan.balancer };
      report.balancer = plan.balancer;
    } catch (err) {
      errors.push({ path: `${at}.balancer`, message: (err as Error).message });
    }
  }
  if (plan.health !== null) {
    s.monitor.reconfigure(plan.health);
    s.config = { ...s.config, health: plan.health };
    report.health = true;
  }
  if (plan.admission !== null && s.admission.reconfigure !== undefined) {
    s.admission.reconfigure(plan.admission);
    s.config = { ...s.config, admission: plan.admission };
    s.admissionFeed?.cancel();
    s.admissionFeed = startAdmission(s, ctx.clock);
    report.admission = true;
  }
  if (plan.listen !== null) {
    try {
      const next = await listen(plan.listen, s.forwarder, s.edge);
      const old = s.listener;
      s.listener = next;
      await old?.close();
      s.config = { ...s.config, listen: plan.listen };
      report.listen = plan.listen;
    } catch (err) {
      errors.push({ path: `${at}.listen`, message: `${(err as Error).message}; still listening on ${s.config.listen}` });
    }
  }
  return { report, errors };
}

/** Applies a reload plan to the running services; returns the report and the configuration now in force. */
export async function applyReload(services: readonly Service[], next: Config, plan: ReloadPlan, ctx: LiveContext): Promise<ReloadReport> {
  const report: ReloadReport = { applied: [], restartRequired: [...plan.restart], errors: [] };
  for (const p of plan.services) {
    const s = services.find((x) => x.config.name === p.name);
    if (!s) continue;
    const at = `services[${next.services.findIndex((x) => x.name === p.name)}]`;
    const { report: r, errors } = await applyServicePlan(s, p, ctx, at);
    report.applied.push(r);
    report.errors.push(...errors);
  }
  return report;
}
