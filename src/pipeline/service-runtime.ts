/**
 * @module What a forwarder gets from the composition root: the service's configuration, its clock
 * and its pipeline stage (the Router, built from the service's session router, admission control and
 * balancer, with the failure seam to passive detection), and the Forwarder contract every protocol
 * implements. Forwarders route through the Router only.
 */
import type { Balancer } from '../balance/balancer.js';
import type { Clock } from '../core/clock.js';
import type { ServiceConfig } from '../config/schema.js';
import type { HostPort } from '../core/address.js';
import { ADMIT_ALL, type Admission } from '../admission/admission-controller.js';
import type { Backend, FailureSink } from '../core/backend.js';
import type { FlowTable } from '../sessions/flow-table.js';
import { createSessionLayer, type SessionLayer } from '../sessions/index.js';
import type { SessionRouter } from '../sessions/session-router.js';
import type { SessionLookup } from '../sessions/session-share.js';
import type { Edge } from '../edge/edge.js';
import { Router } from './router.js';


export interface ServiceRuntime {
  readonly config: ServiceConfig;
  readonly backends: readonly Backend[];
  readonly balancer: Balancer<Backend>;
  readonly failures: FailureSink;
  readonly clock: Clock;
  /** The service's session table behind its router (pins, re-pins on failure, events). */
  readonly sessions: SessionRouter;
  /** The service's flow table (SARA III.A). */
  readonly flows: FlowTable;
  /**
   * SA2C admission (issue 8): ask `decide('new')` before opening a session, `decide('established')` for
   * the traffic of an open one. ADMIT_ALL when services[].admission is off.
   */
  readonly admission: Admission;
  /**
   * The listener's edge (TLS, per-client limits): what a forwarder may ask about a client connection
   * (encrypted, client certificate, request budget). Null for datagram services and in unit rigs.
   */
  readonly edge?: Edge | null;
  /**
   * A dispatcher worker's replica of the primary's session table (issue 16): a request naming a key
   * the replica does not know waits for the primary's answer before it is routed. Absent: one process.
   */
  readonly sessionLookup?: SessionLookup | null;
}

/**
 * The runtime of one service over a new session layer (flow table, session router, sweep): the one
 * place it is assembled. The caller owns the layer (start() the sweep, close() it).
 */
export function createServiceRuntime(
  config: ServiceConfig,
  backends: readonly Backend[],
  balancer: Balancer<Backend>,
  failures: FailureSink,
  clock: Clock,
  admission: Admission = ADMIT_ALL,
  edge: Edge | null = null,
): { runtime: ServiceRuntime; layer: SessionLayer } {
  const layer = createSessionLayer(config, backends, balancer, clock);
  const runtime: ServiceRuntime = { config, backends, balancer, failures, clock, sessions: layer.sessions, flows: layer.flows, admission, edge };
  return { runtime, layer };
}

const routers = new WeakMap<ServiceRuntime, Router>();

/** The service's Router: one per runtime, built on first use from the runtime's parts. */
export function routerOf(rt: ServiceRuntime): Router {
  let router = routers.get(rt);
  if (router === undefined) {
    router = new Router(rt);
    routers.set(rt, router);
  }
  return router;
}

/** A forwarder takes accepted client sockets of one service (stream) and/or binds its own datagram socket. */
export interface Forwarder {
  handle(socket: import('node:net').Socket): void;
  /** Datagram services (udp, sip): bind the service's UDP socket at `at` (port 0: any), resolve the bound address. */
  bindDatagram?(at: HostPort): Promise<HostPort>;
  /**
   * Closes the datagram socket(s) bindDatagram opened, keeping flows and sessions, so that a later
   * bindDatagram serves them again: a replicated dispatcher releases its VIP on demotion (issue 7).
   */
  unbindDatagram?(): Promise<void>;
  /** Stop taking new work, let in-flight exchanges finish, then close. */
  close(): Promise<void>;
  /** Close everything now. */
  destroy(err?: Error): void;
  /** The health monitor declared a backend down: work waiting on it may move elsewhere. */
  backendDown?(backend: Backend): void;
}
