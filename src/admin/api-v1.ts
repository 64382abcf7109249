/**
 * @module Admin API v1 (issue 14): services, backends (state, since, reason, load history and
 * forecast), sessions (paged, filterable), election groups, recent events, and the actions drain /
 * undrain a backend, plus named extra actions a composition root registers (the demo's "kill a
 * backend", "kill the master dispatcher"). Every input is validated (400 with its path); unknown
 * routes are 404, wrong methods 405. The dispatcher provides the model; this module only reads it
 * and calls its actions.
 */
import type http from 'node:http';
import { z } from 'zod';
import type { SessionTable } from '../sessions/session-table.js';
import type { Clock } from '../core/clock.js';
import { ApiError, queryObject, readJsonBody, sendJson, validate } from './api-http.js';
import type { EventRing } from './events-ring.js';
import { serveEventStream } from './events-stream.js';
import type { LoadSeries } from './load-series.js';
import type { AdmissionSeries } from './admission-series.js';
import { OPENAPI_DOCUMENT } from './api-openapi.js';
import { backendSchema, type BackendConfig } from '../config/schema.js';
import type { BackendStatus, StatusSnapshot } from './status.js';

/** One service as the API sees it, beside its status: its session table and its drain actions. */
export interface AdminServiceModel {
  readonly name: string;
  readonly protocol: string;
  readonly table: SessionTable;
  /** The configured SA2C thresholds (T2 and T3 move under load; the samples say where they are). */
  readonly admission: { enabled: boolean; t1: number; t2: number; t3: number; c: number };
  /** The backend id at a session table's backend index. */
  backendId(index: number): string | undefined;
  /** null: no such backend; false: nothing to do (already draining / not draining). */
  drain(backend: string, reason: string | undefined): boolean | null;
  undrain(backend: string): boolean | null;
  /** Adds a backend at run time (not written to the file: a reload resets the service to the file). */
  addBackend(backend: BackendConfig): { type: 'added' } | { type: 'conflict'; message: string } | { type: 'invalid'; path: string; message: string };
  /** Removes (drains for good) a backend at run time; 'last': it is the service's last one. */
  removeBackend(backend: string): 'removed' | 'unknown' | 'last' | 'passthrough';
  /** The flows of the open session `h` (SIP signalling and its media, RTSP and its RTP/RTCP...). */
  sessionFlows(h: number): AdminFlowView[];
}

/** One flow of a session. */
export interface AdminFlowView {
  proto: 'tcp' | 'udp';
  /** host:port of each end, as the flow table keys the flow. */
  src: string;
  dst: string;
  role: string;
  status: string;
  idleMs: number;
}

/** What a live reload answers (the dispatcher's ReloadOutcome). */
export type AdminReloadOutcome = { readonly type: 'invalid'; readonly issues: readonly string[] } | ({ readonly type: 'applied' } & object);

/** An action registered by a composition root, served at POST /api/v1/actions/{name}. */
export interface AdminAction {
  description: string;
  /** Validates its own body (ApiError 400 on bad input) and returns what to answer. */
  run(body: unknown): Promise<unknown>;
}

export interface ApiV1Deps {
  status(): StatusSnapshot;
  services: readonly AdminServiceModel[];
  events: EventRing;
  loads: LoadSeries;
  /** SA2C samples; absent: /api/v1/admission answers with the configuration only. */
  admission?: AdmissionSeries;
  clock: Clock;
  actions?: ReadonlyMap<string, AdminAction>;
  /** Planned switchover of a group's VIP (Groups.switchover); absent: not replicated. */
  switchover?: (group: string) => 'resigned' | 'not-master' | null;
  /** Counters of the election transports and state replicators (Groups' stats), as they are. */
  replication?: () => { transports: unknown[]; replicators: unknown[] };
  /** Live reload from the dispatcher's configuration file; absent: no file to reload from (404). */
  reload?: () => Promise<AdminReloadOutcome>;
}

export const SESSIONS_DEFAULT_LIMIT = 100;
export const SESSIONS_MAX_LIMIT = 1000;
/** A handle's slot: the low 24 bits (session-table.ts). */
const SLOT_SPAN = 0x1000000;

const name = z.string().min(1).max(200);
const sessionsQuery = z
  .object({
    service: name.optional(),
    backend: name.optional(),
    protocol: z.enum(['http', 'tcp', 'udp', 'sip', 'rtsp']).optional(),
    /** Exact session key (a Call-ID, a cookie value). */
    key: z.string().min(1).max(4096).optional(),
    limit: z.coerce.number().int().min(1).max(SESSIONS_MAX_LIMIT).default(SESSIONS_DEFAULT_LIMIT),
    cursor: z
      .string()
      .regex(/^\d{1,6}\.\d{1,9}$/, 'expected a cursor returned by a previous page')
      .optional(),
  })
  .strict();
const backendsQuery = z.object({ service: name.optional() }).strict();
const eventsQuery = z
  .object({
    after: z.coerce.number().int().min(0).default(0),
    limit: z.coerce.number().int().min(1).max(1000).default(100),
  })
  .strict();
const drainBody = z
  .object({ reason: z.string().min(1).max(200).optional() })
  .strict()
  .optional();

export interface SessionView {
  service: string;
  /** The session's handle in its table: stable while it is open. */
  id: number;
  /** Its key (Call-ID, cookie value...), null when anonymous. */
  key: string | null;
  backend: string | null;
  idleMs: number;
  /** Its flows in the flow table (a TCP-only session of a stream service may have none). */
  flows: AdminFlowView[];
}

type Method = 'GET' | 'POST' | 'DELETE';
type Handler = (ctx: { req: http.IncomingMessage; res: http.ServerResponse; url: URL; params: string[] }) => Promise<unknown> | unknown;

interface Route {
  method: Method;
  pattern: RegExp;
  handler: Handler;
  /** The handler wrote the response itself (SSE). */
  raw?: boolean;
}

/**
 * The API's request handler: answers every path under /api/v1/ (404 when none matches) and returns
 * true, or returns false for other paths.
 */
export function createApiV1(deps: ApiV1Deps): (req: http.IncomingMessage, res: http.ServerResponse, path: string, url: URL) => Promise<boolean> {
  const service = (id: string): StatusSnapshot['services'][number] => {
    const s = deps.status().services.find((x) => x.name === id);
    if (!s) throw new ApiError(404, 'no such service', [{ path: 'path.service', message: `no service "${id}"` }]);
    return s;
  };
  const backendView = (svc: string, b: BackendStatus) => ({ service: svc, ...b, history: deps.loads.history(svc, b.id) });
  const backend = (svcId: string, id: string) => {
    const b = service(svcId).backends.find((x) => x.id === id);
    if (!b) throw new ApiError(404, 'no such backend', [{ path: 'path.backend', message: `no backend "${id}" in service "${svcId}"` }]);
    return backendView(svcId, b);
  };
  const drainAction = (undo: boolean): Handler => async ({ req, params }) => {
    const [svcId, id] = params as [string, string];
    const body = validate(drainBody, await readJsonBody(req), 'body');
    const model = deps.services.find((s) => s.name === svcId);
    if (!model) service(svcId); // throws 404
    const changed = undo ? model!.undrain(id) : model!.drain(id, body?.reason);
    if (changed === null) backend(svcId, id); // throws 404
    return { changed, backend: backend(svcId, id) };
  };

  const model = (svcId: string): AdminServiceModel => {
    const m = deps.services.find((s) => s.name === svcId);
    if (!m) throw new ApiError(404, 'no such service', [{ path: 'path.service', message: `no service "${svcId}"` }]);
    return m;
  };
  const addBackendRoute: Handler = async ({ req, params }) => {
    const svcId = params[0]!;
    const m = model(svcId);
    const body = validate(backendSchema, await readJsonBody(req), 'body');
    const r = m.addBackend(body);
    if (r.type === 'invalid') throw new ApiError(400, 'bad request', [{ path: `body.${r.path}`, message: r.message }]);
    if (r.type === 'conflict') throw new ApiError(409, r.message, [{ path: 'body.id', message: r.message }]);
    return { added: body.id, runtimeOnly: true, backend: backend(svcId, body.id) };
  };
  const removeBackendRoute: Handler = ({ params }) => {
    const [svcId, id] = params as [string, string];
    const r = model(svcId).removeBackend(id);
    if (r === 'unknown') throw new ApiError(404, 'no such backend', [{ path: 'path.backend', message: `no backend "${id}" in service "${svcId}"` }]);
    if (r === 'last') throw new ApiError(409, 'the last backend of a service cannot be removed', [{ path: 'path.backend', message: `"${id}" is the last backend of "${svcId}": add another first` }]);
    if (r === 'passthrough') throw new ApiError(409, "the backends of a tlsPassthrough service change only with a restart", [{ path: 'path.service', message: `"${svcId}" routes by TLS server name` }]);
    return { removed: id, runtimeOnly: true, draining: true };
  };
  const reloadRoute: Handler = async ({ req }) => {
    validate(z.object({}).strict().optional(), await readJsonBody(req), 'body');
    if (!deps.reload) throw new ApiError(404, 'no configuration file to reload from', [{ path: 'path.action', message: 'this dispatcher was not started from a file' }]);
    const outcome = await deps.reload();
    if (outcome.type === 'invalid') throw new ApiError(400, 'invalid configuration: nothing changed', outcome.issues.map(configIssue));
    return outcome;
  };

  const routes: Route[] = [
    { method: 'GET', pattern: /^\/api\/v1\/openapi\.json$/, handler: () => OPENAPI_DOCUMENT },
    { method: 'GET', pattern: /^\/api\/v1\/status$/, handler: () => deps.status() },
    {
      method: 'GET',
      pattern: /^\/api\/v1\/services$/,
      handler: () => deps.status().services.map(({ backends, ...s }) => ({ ...s, backends: backends.map((b) => b.id) })),
    },
    { method: 'GET', pattern: /^\/api\/v1\/services\/([^/]+)$/, handler: ({ params }) => service(params[0]!) },
    {
      method: 'GET',
      pattern: /^\/api\/v1\/backends$/,
      handler: ({ url }) => {
        const q = validate(backendsQuery, queryObject(url), 'query');
        if (q.service !== undefined) service(q.service);
        return deps
          .status()
          .services.filter((s) => q.service === undefined || s.name === q.service)
          .flatMap((s) => s.backends.map((b) => backendView(s.name, b)));
      },
    },
    { method: 'GET', pattern: /^\/api\/v1\/services\/([^/]+)\/backends\/([^/]+)$/, handler: ({ params }) => backend(params[0]!, params[1]!) },
    { method: 'DELETE', pattern: /^\/api\/v1\/services\/([^/]+)\/backends\/([^/]+)$/, handler: removeBackendRoute },
    { method: 'POST', pattern: /^\/api\/v1\/services\/([^/]+)\/backends$/, handler: addBackendRoute },
    { method: 'POST', pattern: /^\/api\/v1\/services\/([^/]+)\/backends\/([^/]+)\/drain$/, handler: drainAction(false) },
    { method: 'POST', pattern: /^\/api\/v1\/services\/([^/]+)\/backends\/([^/]+)\/undrain$/, handler: drainAction(true) },
    { method: 'GET', pattern: /^\/api\/v1\/sessions$/, handler: ({ url }) => sessionsPage(deps, validate(sessionsQuery, queryObject(url), 'query')) },
    { method: 'GET', pattern: /^\/api\/v1\/groups$/, handler: () => deps.status().groups ?? [] },
    { method: 'GET', pattern: /^\/api\/v1\/replication$/, handler: () => deps.replication?.() ?? { transports: [], replicators: [] } },
    {
      method: 'POST',
      pattern: /^\/api\/v1\/groups\/([^/]+)\/switchover$/,
      handler: async ({ req, params }) => {
        validate(z.object({}).strict().optional(), await readJsonBody(req), 'body');
        const group = params[0]!;
        const result = deps.switchover?.(group) ?? null;
        if (result === null) throw new ApiError(404, 'no such group', [{ path: 'path.group', message: `no election group "${group}" on this dispatcher` }]);
        if (result === 'not-master') throw new ApiError(409, 'not the master of this group: ask the master\'s admin API', [{ path: 'path.group', message: `this dispatcher is not the master of "${group}"` }]);
        return { group, resigned: true, groups: deps.status().groups ?? [] };
      },
    },
    {
      method: 'GET',
      pattern: /^\/api\/v1\/admission$/,
      handler: () =>
        deps.services.map((s) => {
          const history = deps.admission?.history(s.name) ?? [];
          const last = history.at(-1);
          return {
            service: s.name,
            configured: s.admission,
            ...(last ? { band: last.band, load: last.load, dispatcher: last.dispatcher, cluster: last.cluster, t2: last.t2, t3: last.t3, pNew: last.pNew, pEstablished: last.pEstablished, at: last.at } : {}),
            history,
          };
        }),
    },
    {
      method: 'GET',
      pattern: /^\/api\/v1\/events\/recent$/,
      handler: ({ url }) => {
        const q = validate(eventsQuery, queryObject(url), 'query');
        return { lastId: deps.events.lastId, events: deps.events.since(q.after, q.limit) };
      },
    },
    { method: 'GET', pattern: /^\/api\/v1\/events$/, raw: true, handler: ({ req, res }) => serveEventStream(req, res, deps.events, { clock: deps.clock }) },
    {
      method: 'GET',
      pattern: /^\/api\/v1\/actions$/,
      handler: () => [
        ...(deps.reload ? [{ name: 'reload', description: 'Reload the configuration file: validated first, then applied live; the answer names what needs a restart' }] : []),
        ...[...(deps.actions ?? new Map<string, AdminAction>())].map(([n, a]) => ({ name: n, description: a.description })),
      ],
    },
    { method: 'POST', pattern: /^\/api\/v1\/actions\/reload$/, handler: reloadRoute },
    {
      method: 'POST',
      pattern: /^\/api\/v1\/actions\/([^/]+)$/,
      handler: async ({ req, params }) => {
        const action = deps.actions?.get(params[0]!);
        if (!action) throw new ApiError(404, 'no such action', [{ path: 'path.action', message: `no action "${params[0]!}"` }]);
        return action.run(await readJsonBody(req));
      },
    },
  ];

  return async (req, res, path, url) => {
    if (!path.startsWith('/api/v1/')) return false;
    try {
      let params: string[] | null = null;
      const allowed: Method[] = [];
      let match: Route | null = null;
      for (const r of routes) {
        const m = r.pattern.exec(path);
        if (!m) continue;
        allowed.push(r.method);
        const method = req.method === 'HEAD' ? 'GET' : req.method;
        if (r.method === method) {
          match = r;
          params = m.slice(1).map((p) => decodeURIComponent(p));
          break;
        }
      }
      if (!match) {
        if (allowed.length === 0) throw new ApiError(404, 'not found', [{ path: 'path', message: `no route ${path}` }]);
        const allow = [...new Set(allowed.flatMap((m) => (m === 'GET' ? ['GET', 'HEAD'] : [m])))].join(', ');
        throw new ApiError(405, 'method not allowed', [], { allow });
      }
      const value = await match.handler({ req, res, url, params: params! });
      if (!match.raw) sendJson(req, res, 200, value);
    } catch (err) {
      if (res.headersSent) {
        res.destroy();
      } else if (err instanceof ApiError) {
        sendJson(req, res, err.status, err.body(), err.headers);
        if (err.headers.connection === 'close') res.once('finish', () => req.socket.destroy());
      } else if (err instanceof URIError) {
        sendJson(req, res, 400, { error: 'bad request', issues: [{ path: 'path', message: 'malformed percent-encoding' }] });
      } else {
        throw err;
      }
    }
    return true;
  };
}

/** One page of sessions over every service in order, by slot: the cursor is "<service index>.<slot>". */
function sessionsPage(deps: ApiV1Deps, q: z.infer<typeof sessionsQuery>): { sessions: SessionView[]; nextCursor: string | null } {
  if (q.service !== undefined && !deps.services.some((s) => s.name === q.service)) {
    throw new ApiError(404, 'no such service', [{ path: 'query.service', message: `no service "${q.service}"` }]);
  }
  const [fromService, fromSlot] = q.cursor ? q.cursor.split('.').map(Number) as [number, number] : [0, -1];
  const now = deps.clock.now();
  const out: SessionView[] = [];
  let nextCursor: string | null = null;
  let lastPos = '';
  for (let i = fromService; i < deps.services.length && nextCursor === null; i++) {
    const s = deps.services[i]!;
    if (q.service !== undefined && s.name !== q.service) continue;
    if (q.protocol !== undefined && s.protocol !== q.protocol) continue;
    const after = i === fromService ? fromSlot : -1;
    const visit = (h: number): void => {
      if (nextCursor !== null) return;
      const slot = h % SLOT_SPAN;
      if (slot <= after) return;
      const backend = s.backendId(s.table.backend(h)) ?? null;
      if (q.backend !== undefined && backend !== q.backend) return;
      if (out.length === q.limit) {
        nextCursor = lastPos;
        return;
      }
      lastPos = `${i}.${slot}`;
      out.push({ service: s.name, id: h, key: s.table.key(h), backend, idleMs: Math.max(0, Math.round(now - s.table.lastSeen(h))), flows: s.sessionFlows(h) });
    };
    if (q.key === undefined) {
      s.table.forEach(visit);
    } else {
      const h = s.table.find(q.key);
      if (h >= 0) visit(h);
    }
  }
  return { sessions: out, nextCursor };
}

/**
 * A configuration issue ("file: services[0].listen: expected host:port, received ...") as an API
 * issue with its path; one without a path (unreadable file, YAML syntax) is at path "file".
 */
export function configIssue(issue: string): { path: string; message: string } {
  const m = /^(?:[^:]*: )?((?:[A-Za-z_][\w-]*|\[\d+\])(?:\.[A-Za-z_][\w-]*|\[\d+\])*): (.*)$/s.exec(issue);
  return m ? { path: m[1]!, message: m[2]! } : { path: 'file', message: issue };
}
