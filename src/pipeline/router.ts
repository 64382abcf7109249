/**
 * @module The pipeline of DESIGN.md as one stage: session identifier -> admission control (SA2C) ->
 * balancer, for one service. A forwarder asks `route()` once per unit of work (a connection, a
 * request, a datagram of a new flow, a SIP request) and gets a decision as a value; when a backend
 * fails under it, it calls `failed()` once, which tells passive detection and routes the unit again
 * (the re-pin). Forwarders hold no other way to the session tables, the admission controller or the
 * balancer.
 */
import type { Backend, FailureSink } from '../core/backend.js';
import type { BackendFailureKind } from '../core/errors.js';
import type { SessionKind } from '../admission/sa2c.js';
import { ADMIT_ALL, type Admission } from '../admission/admission-controller.js';
import type { Balancer } from '../balance/balancer.js';
import { keyHash, mix32 } from '../core/key-hash.js';
import { NO_FLOW, type FlowHandle } from '../sessions/flow-table.js';
import type { SessionChange, SessionRoute, SessionRouter } from '../sessions/session-router.js';
import { NO_SESSION, type SessionEndReason, type SessionHandle } from '../sessions/session-table.js';

/** What the router answers for one unit of work (STYLE: a decision is a value, not a side effect). */
export type RouteDecision =
  /**
   * Send it to `backend`; `session` is the session it belongs to (NO_SESSION: none, e.g. a TCP
   * splice); `how` says whether that session was followed on its pin, opened, or moved.
   */
  | { readonly type: 'forward'; readonly backend: Backend; readonly session: SessionHandle; readonly how: ForwardHow }
  /**
   * Do not send it. 'overload': SA2C refused a new session (answer with `retryAfterS`, RFC 9110
   * §10.2.3 / RFC 3261 §21.5.4); 'sessions-full': the session table could not open it; 'closed': the
   * session the unit named ended under it (timed out, torn down).
   */
  | { readonly type: 'refuse'; readonly reason: RefuseReason; readonly retryAfterS: number | null; readonly routed?: Routed }
  /** SA2C dropped this unit of an established session; the session keeps its pin. */
  | { readonly type: 'degrade'; readonly routed?: Routed }
  /** No backend can take it. */
  | { readonly type: 'none' };

export type RefuseReason = 'overload' | 'sessions-full' | 'closed';

/** 'unpinned': the balancer's pick, no session (or the session table was full). */
export type ForwardHow = 'pinned' | 'opened' | 'repinned' | 'unpinned';

/**
 * Where an established unit was routed before admission control dropped it (the 'session' hint: the
 * session identifier runs first), so that the forwarder keeps its flow on the session's pin.
 */
export interface Routed {
  readonly backend: Backend;
  readonly session: SessionHandle;
}

/** What the forwarder knows of the unit of work, beyond its flow. */
export type RouteHint =
  /**
   * No session: the balancer's pick, never `avoid` and never one of `tried` (a TCP splice, a request
   * on a service without session keys, a stateless SIP ACK/BYE).
   */
  | {
      readonly via: 'balancer';
      readonly admit?: SessionKind;
      readonly avoid?: Backend | null;
      readonly tried?: ReadonlySet<Backend>;
      /** The flow's hash (`core/key-hash.ts` flowHash), for a balancer that `hashesKeys` (Maglev). */
      readonly hash?: number;
    }
  /**
   * A unit of the open session `session` (omitted: the flow's session): follow its pin,
   * then ask admission control (`admit`). A session that ended under its flow is answered 'closed',
   * unless `reopen` is given: then a new anonymous session takes its place, on `reopen` (the backend
   * the flow still talks to, whose state lives there) unless that one is down or null; or, with
   * `orNew`, the unit is routed as the first of a new anonymous session (admission 'new').
   */
  | {
      readonly via: 'session';
      readonly admit?: SessionKind;
      /** Omitted: the session of the unit's flow. */
      readonly session?: SessionHandle;
      readonly reopen?: Backend | null;
      readonly orNew?: boolean;
    }
  /**
   * A unit of the session named `key` (a Call-ID, a cookie or header value; null: anonymous, always
   * new): its pin when the session is open; otherwise, when `open`, a new session on the balancer's
   * choice. `avoid` just failed this unit and may not be marked down (a timeout, a draining backend):
   * it is never returned, and an open session moves to the backend that takes over (a re-pin). An
   * unknown key with `open` false gets the balancer's pick and leaves no session behind. `admit`
   * 'auto': 'established' when the session is open, 'new' otherwise.
   */
  | {
      readonly via: 'key';
      readonly admit?: SessionKind | 'auto';
      readonly key: string | null;
      readonly open: boolean;
      readonly avoid?: Backend | null;
      /** A full session table serves the unit unpinned (HTTP) instead of refusing it. */
      readonly unpinnedWhenFull?: boolean;
      /**
       * The flow's hash when `key` is null (a new UDP flow: its client address and port), for a
       * balancer that `hashesKeys`; a non-null key is hashed by the router itself.
       */
      readonly hash?: number;
      /**
       * The forwarder's own capacity (flow table, sockets), checked after admission and before a
       * session is opened or followed; false: the unit is answered 'none' (the forwarder counted why).
       * `established`: the unit's session is open.
       */
      readonly gate?: (established: boolean) => boolean;
    };

const NONE: RouteDecision = Object.freeze({ type: 'none' });
const DEGRADE: RouteDecision = Object.freeze({ type: 'degrade' });
const SESSIONS_FULL: RouteDecision = Object.freeze({ type: 'refuse', reason: 'sessions-full', retryAfterS: null });
const CLOSED: RouteDecision = Object.freeze({ type: 'refuse', reason: 'closed', retryAfterS: null });

function forward(backend: Backend, session: SessionHandle, how: ForwardHow): RouteDecision {
  return { type: 'forward', backend, session, how };
}

function fromSession(r: Exclude<SessionRoute, { readonly type: 'refused' }>): RouteDecision {
  return forward(r.backend, r.session, r.type);
}

/** What a router is built from: the parts of a ServiceRuntime it owns the use of. */
export interface RouterParts {
  readonly backends: readonly Backend[];
  readonly balancer: Balancer<Backend>;
  readonly sessions: SessionRouter;
  readonly admission: Admission;
  readonly failures: FailureSink;
  readonly flows: { session(h: FlowHandle): SessionHandle };
}

/** One service's pipeline stage. */
export class Router {
  constructor(private readonly parts: RouterParts) {}

  /**
   * Whether the balancer maps a key's hash to a backend (Maglev): forwarders then pass a flow's hash
   * in their hints, which they may skip computing otherwise.
   */
  get hashesKeys(): boolean {
    return this.parts.balancer.hashesKeys === true;
  }

  /** One identity test when admission is off: nothing else on the hot path. */
  private get admissionOn(): boolean {
    return this.parts.admission !== ADMIT_ALL;
  }

  /** Routes one unit of work of `flow` (NO_FLOW: the unit has no flow entry). */
  route(flow: FlowHandle, hint: RouteHint): RouteDecision {
    switch (hint.via) {
      case 'balancer': {
        if (hint.admit !== undefined) {
          const refused = this.admit(hint.admit);
          if (refused !== null) return refused;
        }
        return this.pick(hint.avoid ?? null, hint.tried, hint.hash);
      }
      case 'session': {
        const h = hint.session ?? (flow === NO_FLOW ? NO_SESSION : this.parts.flows.session(flow));
        const routed = this.follow(h, hint.reopen);
        if (routed === CLOSED && hint.orNew === true) {
          const refused = this.admit('new');
          return refused ?? this.open();
        }
        if (hint.admit === undefined || !this.admissionOn) return routed;
        // A unit of an identified session is judged even when its pin found no backend (orNew: RTSP
        // counts it); a relayed datagram is judged only once it has somewhere to go.
        if (routed.type !== 'forward' && !(hint.orNew === true && routed === NONE)) return routed;
        const verdict = this.parts.admission.decide(hint.admit);
        if (verdict.type === 'admit') return routed;
        const at = routed.type === 'forward' ? routed : undefined;
        if (verdict.type === 'degrade') return { type: 'degrade', routed: at };
        return { type: 'refuse', reason: 'overload', retryAfterS: verdict.retryAfterS, routed: at };
      }
      case 'key':
        return this.byKey(hint);
    }
  }

  /**
   * The failure entry. `backend` failed a unit of work (refused, reset, timed out, closed): passive
   * detection is told at once (the balancer's snapshot excludes a backend taken down before this
   * returns). With a hint the unit is routed again, its session re-pinned; without one nothing more.
   */
  failed(backend: Backend, kind: BackendFailureKind, hint?: RouteHint, flow: FlowHandle = NO_FLOW): RouteDecision {
    this.parts.failures.reportFailure(backend, kind);
    return hint === undefined ? NONE : this.route(flow, hint);
  }

  /** `backend` completed a connect or exchange (passive detection's good news). */
  succeeded(backend: Backend): void {
    this.parts.failures.reportSuccess(backend);
  }

  /**
   * Pins the session named `key` to `backend`, which the protocol chose (an HTTP Set-Cookie names a
   * session its backend created; a flow that outlived its session stays on its backend).
   */
  pin(key: string | null, backend: Backend): RouteDecision {
    const r = this.parts.sessions.pin(key, backend);
    return r.type === 'refused' ? SESSIONS_FULL : fromSession(r);
  }

  /** Traffic of the open session `h` that needed no routing (a reply): it keeps its pin. */
  touch(h: SessionHandle): void {
    this.parts.sessions.table.touch(h);
  }

  /** Ends the session `h` (torn down by its protocol, or its flow was purged). */
  close(h: SessionHandle, reason: SessionEndReason): void {
    this.parts.sessions.close(h, reason);
  }

  /** Ends the session named `key`, if one is open (an expired HTTP session cookie). */
  end(key: string): void {
    const h = this.parts.sessions.table.find(key);
    if (h !== NO_SESSION) this.parts.sessions.close(h, 'ended');
  }

  // --- The session identifier's reads and writes that are not routing: a protocol's own state
  // (a SIP dialog's record, an RTSP session's name) kept beside the session it belongs to.

  /** The open session named `key`, or NO_SESSION. */
  find(key: string): SessionHandle {
    return this.parts.sessions.table.find(key);
  }

  /** The backend the open session `h` is pinned to, read without routing (no touch, no re-pin). */
  backendOf(h: SessionHandle): Backend | undefined {
    return this.parts.backends[this.parts.sessions.table.backend(h)];
  }

  /** The backend the session named `key` is pinned to, if it is open; read without routing. */
  backendOfKey(key: string): Backend | undefined {
    const h = this.parts.sessions.table.find(key);
    return h === NO_SESSION ? undefined : this.backendOf(h);
  }

  /** The protocol's own data kept with session `h` (replicated with it), or null. */
  data(h: SessionHandle): string | null {
    return this.parts.sessions.table.data(h);
  }

  setData(h: SessionHandle, data: string): void {
    this.parts.sessions.table.setData(h, data);
  }

  /** Called when any session of the service closes (timed out, ended, removed). Returns an unsubscribe. */
  onClose(fn: (h: SessionHandle) => void): () => void {
    return this.parts.sessions.table.onClose(fn);
  }

  /** Whether `h` is still open (a stale handle: the session timed out or ended under its caller). */
  isOpen(h: SessionHandle): boolean {
    return this.parts.sessions.table.isOpen(h);
  }

  /** Session changes (open, re-pin, close) as they happen: media relays follow re-pins. Returns an unsubscribe. */
  onChange(fn: (change: SessionChange) => void): () => void {
    return this.parts.sessions.onChange(fn);
  }

  /** Opens a new anonymous session on the balancer's choice. */
  private open(): RouteDecision {
    const r = this.parts.sessions.open(null);
    if (r.type !== 'refused') return fromSession(r);
    return r.reason === 'sessions-full' ? SESSIONS_FULL : NONE;
  }

  /** Opens a new session pinned where the open session `beside` is (a second RTSP session on one connection). */
  openBeside(beside: SessionHandle): RouteDecision {
    const r = this.open();
    if (r.type !== 'forward') return r;
    // Pinned before any traffic of its own: the backend the connection already talks to.
    const table = this.parts.sessions.table;
    const at = table.backend(beside);
    if (table.backend(r.session) !== at) table.repin(r.session, at);
    return forward(this.parts.backends[at] ?? r.backend, r.session, 'opened');
  }

  /** SA2C's verdict as a decision: null when admitted. */
  private admit(kind: SessionKind): RouteDecision | null {
    if (!this.admissionOn) return null;
    const verdict = this.parts.admission.decide(kind);
    if (verdict.type === 'admit') return null;
    if (verdict.type === 'degrade') return DEGRADE;
    return { type: 'refuse', reason: 'overload', retryAfterS: verdict.retryAfterS };
  }

  private follow(h: SessionHandle, reopen: Backend | null | undefined): RouteDecision {
    const sessions = this.parts.sessions;
    let r = sessions.follow(h);
    if (r.type === 'refused' && r.reason === 'closed') {
      if (reopen === undefined) return CLOSED;
      r = reopen !== null && reopen.state !== 'down' ? sessions.pin(null, reopen) : sessions.open(null);
    }
    if (r.type !== 'refused') return fromSession(r);
    return r.reason === 'sessions-full' ? SESSIONS_FULL : NONE;
  }

  /**
   * SARA III.C for a keyed unit (see RouteHint 'key'). A full session table serves the unit unpinned
   * (the session router counts the refusal).
   */
  private byKey(hint: RouteHint & { readonly via: 'key' }): RouteDecision {
    const { key, admit, gate } = hint;
    const avoid = hint.avoid ?? null;
    const sessions = this.parts.sessions;
    const h = key === null ? NO_SESSION : sessions.table.find(key);
    if (admit !== undefined) {
      const refused = this.admit(admit === 'auto' ? (h !== NO_SESSION ? 'established' : 'new') : admit);
      if (refused !== null) return refused;
    }
    if (gate !== undefined && !gate(h !== NO_SESSION)) return NONE;
    const opens = h !== NO_SESSION || hint.open;
    // Maglev: the same key picks the same backend on every dispatcher (issue 20).
    const hash = this.parts.balancer.hashesKeys !== true ? undefined : key !== null ? keyHash(key) : hint.hash;
    if (h !== NO_SESSION || (opens && avoid === null)) {
      // One lookup: follow the session found, or open the one this key names.
      const r = h !== NO_SESSION ? sessions.follow(h) : sessions.open(key, hash);
      if (r.type === 'refused') {
        if (r.reason !== 'sessions-full') return NONE;
        return hint.unpinnedWhenFull === true ? this.pick(avoid, undefined, hash) : SESSIONS_FULL;
      }
      if (r.backend !== avoid) return fromSession(r);
    }
    // Workers (issue 16): a session moves off `avoid` where every process would move it.
    const moved = h !== NO_SESSION && key !== null && sessions.rendezvousRepins ? sessions.rendezvous(key, avoid) : undefined;
    const picked = moved === undefined ? this.pick(avoid, undefined, hash) : moved === null ? NONE : forward(moved, NO_SESSION, 'unpinned');
    if (picked.type !== 'forward' || !opens) return picked;
    const pinned = sessions.pin(key, picked.backend);
    return pinned.type === 'refused' ? picked : fromSession(pinned);
  }

  /**
   * The balancer's pick, never `avoid` nor one of `tried`. A failure sink that does not take a backend
   * out at once (a threshold detector, a timeout) may let the balancer offer it again: skip it, within
   * a bounded loop. With a key hash, a retry asks for a hash derived from it (the same sequence on
   * every dispatcher), since the key's own hash would name the excluded backend again.
   */
  private pick(avoid: Backend | null, tried?: ReadonlySet<Backend>, hash?: number): RouteDecision {
    const balancer = this.parts.balancer;
    for (let i = 0; i <= this.parts.backends.length; i++) {
      const p = balancer.pick(hash === undefined ? undefined : i === 0 ? hash : mix32(hash + i));
      if (p.type === 'none') return NONE;
      if (p.backend === avoid || (tried !== undefined && tried.has(p.backend))) continue;
      return forward(p.backend, NO_SESSION, 'unpinned');
    }
    // A balancer that keeps offering an excluded backend (least-connections when the excluded one is
    // the least loaded; tlsPassthrough excludes every backend of other names): the least busy
    // eligible backend that is not excluded.
    let best: Backend | null = null;
    for (const b of this.parts.backends) {
      if (!b.eligible || b.weight <= 0 || b === avoid || (tried !== undefined && tried.has(b))) continue;
      if (best === null || b.active < best.active) best = b;
    }
    return best === null ? NONE : forward(best, NO_SESSION, 'unpinned');
  }
}
