/**
 * @module The OpenAPI 3 document of the admin API v1, served at /api/v1/openapi.json. Written by
 * hand beside the routes (api-v1.ts); api-v1.test.ts checks that every route is in it.
 */

const json = (schema: object) => ({ content: { 'application/json': { schema } } });
const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const errors = {
  '400': { description: 'Bad input: `issues` lists each problem with its path', ...json(ref('Error')) },
  '401': { description: 'No bearer token (when a token is configured)', ...json(ref('Error')) },
  '403': { description: 'Wrong bearer token', ...json(ref('Error')) },
  '404': { description: 'No such route, service or backend', ...json(ref('Error')) },
};
const pathParam = (name: string) => ({ name, in: 'path', required: true, schema: { type: 'string' } });
const queryParam = (name: string, schema: object, description: string) => ({ name, in: 'query', required: false, schema, description });
const ok = (description: string, schema: object) => ({ '200': { description, ...json(schema) }, ...errors });
const drainBody = { required: false, ...json({ type: 'object', additionalProperties: false, properties: { reason: { type: 'string', minLength: 1, maxLength: 200 } } }) };

export const OPENAPI_DOCUMENT = {
  openapi: '3.0.3',
  info: {
    title: 'holdfast admin API',
    version: '1',
    description:
      'Served by the dispatcher admin listener. When a token is configured (admin.tokenFile or HOLDFAST_ADMIN_TOKEN), every path but /healthz, the dashboard files, this document and (on loopback) /metrics needs `Authorization: Bearer <token>`. Request bodies are limited to 64 KiB (413).',
  },
  components: {
    securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
    schemas: {
      Error: {
        type: 'object',
        required: ['error'],
        properties: {
          error: { type: 'string' },
          issues: { type: 'array', items: { type: 'object', properties: { path: { type: 'string', example: 'query.limit' }, message: { type: 'string' } } } },
        },
      },
      Backend: {
        type: 'object',
        properties: {
          service: { type: 'string' },
          id: { type: 'string' },
          address: { type: 'string' },
          weight: { type: 'number' },
          state: { type: 'string', enum: ['unknown', 'up', 'suspect', 'down', 'draining'] },
          since: { type: 'number', description: 'wall-clock ms of the last state change' },
          reason: { type: 'string' },
          active: { type: 'integer' },
          load: { type: 'number' },
          forecast: { type: 'number', description: 'shell forecast of the next load sample (SARA eq. 8)' },
          history: { type: 'array', items: { type: 'object', properties: { at: { type: 'number' }, load: { type: 'number' }, forecast: { type: 'number' } } } },
        },
      },
      Service: { type: 'object', description: 'name, protocol, listen, balancer, clusterLoad, sessions, flows, backends' },
      Group: { type: 'object', description: 'election group: name, vip, state (master/backup), epoch, master, vipHeld' },
      Event: {
        type: 'object',
        properties: {
          id: { type: 'integer' },
          type: { type: 'string', enum: ['backend:state', 'failover', 'admission:threshold', 'admission:move', 'election:state', 'session:repin', 'load:monitor'] },
          at: { type: 'number' },
          data: { type: 'object' },
        },
      },
      Flow: {
        type: 'object',
        properties: {
          proto: { type: 'string', enum: ['tcp', 'udp'] },
          src: { type: 'string', description: 'host:port' },
          dst: { type: 'string', description: 'host:port' },
          role: { type: 'string', enum: ['signalling', 'announced', 'secondary'] },
          status: { type: 'string', enum: ['new', 'established', 'inactive'] },
          idleMs: { type: 'number' },
        },
      },
      Session: {
        type: 'object',
        properties: {
          service: { type: 'string' },
          id: { type: 'integer' },
          key: { type: 'string', nullable: true },
          backend: { type: 'string', nullable: true },
          idleMs: { type: 'number' },
          flows: { type: 'array', items: ref('Flow'), description: "the session's flows in the flow table (SIP signalling and announced media, RTSP and its RTP/RTCP)" },
        },
      },
      NewBackend: {
        type: 'object',
        required: ['id', 'address'],
        additionalProperties: false,
        properties: {
          id: { type: 'string', pattern: '^[A-Za-z0-9_.-]{1,64}$' },
          address: { type: 'string', example: '127.0.0.1:9003' },
          weight: { type: 'integer', minimum: 0, maximum: 1000, default: 1 },
          agent: { type: 'integer', minimum: 0, maximum: 65535 },
          tls: { type: 'object' },
        },
      },
      ReloadResult: {
        type: 'object',
        properties: {
          type: { type: 'string', enum: ['applied'] },
          applied: { type: 'array', items: { type: 'object', description: 'service, added, removed, reweighted, balancer, health, admission, listen' } },
          restartRequired: { type: 'array', items: { type: 'object', properties: { path: { type: 'string' }, reason: { type: 'string' } } } },
          errors: { type: 'array', items: { type: 'object', properties: { path: { type: 'string' }, message: { type: 'string' } } } },
          certificates: { type: 'array', items: { type: 'object', properties: { service: { type: 'string' }, error: { type: 'string' } } } },
        },
      },
    },
  },
  security: [{ bearer: [] }],
  paths: {
    '/healthz': { get: { security: [], responses: { '200': { description: 'ok' } } } },
    '/metrics': { get: { description: 'Prometheus text format', responses: { '200': { description: 'metrics' } } } },
    '/api/v1/openapi.json': { get: { security: [], responses: { '200': { description: 'this document' } } } },
    '/api/v1/status': { get: { responses: ok('Everything at once', { type: 'object' }) } },
    '/api/v1/services': { get: { responses: ok('Services (backends by id)', { type: 'array', items: ref('Service') }) } },
    '/api/v1/services/{service}': { get: { parameters: [pathParam('service')], responses: ok('One service', ref('Service')) } },
    '/api/v1/backends': {
      get: { parameters: [queryParam('service', { type: 'string' }, 'only this service')], responses: ok('Backends with load history', { type: 'array', items: ref('Backend') }) },
    },
    '/api/v1/services/{service}/backends': {
      post: {
        description:
          'Adds a backend at run time (appended: no other backend changes identity). Runtime only: the file is not written, and a later reload resets the service to the file. 409 when the id exists or the service uses tlsPassthrough.',
        parameters: [pathParam('service')],
        requestBody: { required: true, ...json(ref('NewBackend')) },
        responses: { ...ok('Added', { type: 'object', properties: { added: { type: 'string' }, runtimeOnly: { type: 'boolean' }, backend: ref('Backend') } }), '409': { description: 'Id exists, or tlsPassthrough', ...json(ref('Error')) } },
      },
    },
    '/api/v1/services/{service}/backends/{backend}': {
      get: { parameters: [pathParam('service'), pathParam('backend')], responses: ok('One backend', ref('Backend')) },
      delete: {
        description:
          'Removes a backend at run time: drained for good (no new sessions or requests; established ones finish on it, or re-pin if it fails), then gone from listings. Runtime only (a reload resets to the file). 409 for the last backend of a service.',
        parameters: [pathParam('service'), pathParam('backend')],
        responses: { ...ok('Removed (draining)', { type: 'object', properties: { removed: { type: 'string' }, runtimeOnly: { type: 'boolean' }, draining: { type: 'boolean' } } }), '409': { description: 'The last backend of its service, or tlsPassthrough', ...json(ref('Error')) } },
      },
    },
    '/api/v1/services/{service}/backends/{backend}/drain': {
      post: {
        description: 'No new sessions or requests go to the backend; established ones finish. No detector moves it until undrain.',
        parameters: [pathParam('service'), pathParam('backend')],
        requestBody: drainBody,
        responses: ok('changed: false when it was already drained', { type: 'object', properties: { changed: { type: 'boolean' }, backend: ref('Backend') } }),
      },
    },
    '/api/v1/services/{service}/backends/{backend}/undrain': {
      post: {
        description: 'Ends a drain: the backend is unknown (eligible) until its detector speaks.',
        parameters: [pathParam('service'), pathParam('backend')],
        requestBody: drainBody,
        responses: ok('changed: false when it was not draining', { type: 'object', properties: { changed: { type: 'boolean' }, backend: ref('Backend') } }),
      },
    },
    '/api/v1/sessions': {
      get: {
        parameters: [
          queryParam('service', { type: 'string' }, 'only this service'),
          queryParam('backend', { type: 'string' }, 'only sessions pinned to this backend id'),
          queryParam('protocol', { type: 'string', enum: ['http', 'tcp', 'udp', 'sip', 'rtsp'] }, 'only services of this protocol'),
          queryParam('key', { type: 'string' }, 'only the session with this exact key (Call-ID, cookie value)'),
          queryParam('limit', { type: 'integer', minimum: 1, maximum: 1000, default: 100 }, 'page size'),
          queryParam('cursor', { type: 'string' }, 'nextCursor of the previous page'),
        ],
        responses: ok('One page', { type: 'object', properties: { sessions: { type: 'array', items: ref('Session') }, nextCursor: { type: 'string', nullable: true } } }),
      },
    },
    '/api/v1/replication': {
      get: {
        description:
          'Counters of the election transports and of the session-state replicators: peers streaming and inbound, frames/ops/bytes sent and applied, snapshots, overflows (a peer too slow), rejections by reason, foreign sessions and flows held, duration of the last snapshot sync (lastSyncMs); replication lag as a time: per replicator `lagMs` (the largest over its peers) and `peers[].lagMs` = age in ms of the oldest own change a peer has not yet acknowledged as applied (an unacked live frame, else a change still batched; 0 when all is acked, null while the peer is not streaming; acks come every 50 ms, so it may read that much high), and `inbound[].sinceLastFrameMs` = time since the last frame from a peer was applied here',
        responses: ok('Replication counters', { type: 'object', properties: { transports: { type: 'array', items: { type: 'object' } }, replicators: { type: 'array', items: { type: 'object' } } } }),
      },
    },
    '/api/v1/groups/{group}/switchover': {
      post: {
        description:
          'Planned switchover: this dispatcher, master of the group, resigns (priority-0 advert, preemption off) and the best backup takes over the VIP after its Skew_Time. 409 when this dispatcher is not the master.',
        parameters: [pathParam('group')],
        responses: { ...ok('Resigned; the groups as they are now', { type: 'object', properties: { group: { type: 'string' }, resigned: { type: 'boolean' }, groups: { type: 'array', items: ref('Group') } } }), '409': { description: 'Not the master', ...json(ref('Error')) } },
      },
    },
    '/api/v1/admission': {
      get: {
        description: 'Per service: the configured T1 < T2 < T3 < C, the last SA2C decision (band, decision load max(l, l_c), moved T2/T3, drop probabilities) and the recent samples',
        responses: ok('SA2C admission control', { type: 'array', items: { type: 'object' } }),
      },
    },
    '/api/v1/groups': { get: { responses: ok('Election groups and this dispatcher\'s role in each', { type: 'array', items: ref('Group') }) } },
    '/api/v1/events/recent': {
      get: {
        parameters: [queryParam('after', { type: 'integer', minimum: 0 }, 'events with a greater id'), queryParam('limit', { type: 'integer', minimum: 1, maximum: 1000, default: 100 }, 'newest ones when more')],
        responses: ok('From the ring of the last 1000 events', { type: 'object', properties: { lastId: { type: 'integer' }, events: { type: 'array', items: ref('Event') } } }),
      },
    },
    '/api/v1/events': {
      get: {
        description:
          'Server-Sent Events: `id`, `event` (the type) and `data` (an Event). Send Last-Event-ID (or ?lastEventId=) to resume from the ring; an `event: gap` says events were lost. Slow readers are disconnected.',
        parameters: [{ name: 'Last-Event-ID', in: 'header', required: false, schema: { type: 'integer' } }],
        responses: { '200': { description: 'stream', content: { 'text/event-stream': { schema: { type: 'string' } } } }, ...errors },
      },
    },
    '/api/v1/actions': { get: { responses: ok('Extra actions of this process (the demo registers some)', { type: 'array', items: { type: 'object' } }) } },
    '/api/v1/actions/reload': {
      post: {
        description:
          'Live reload of the configuration file the dispatcher was started with (as SIGHUP and `holdfast reload`). The file is validated first: an invalid one changes nothing and answers 400 with each issue and its path. Otherwise what can change live is applied (backends added, removed, re-weighted; balancer; detector and probe; admission thresholds; a stream service\'s listen address, rebound) and `restartRequired` names every other difference. 404 when the dispatcher was not started from a file.',
        responses: ok('Applied', ref('ReloadResult')),
      },
    },
    '/api/v1/actions/{action}': { post: { parameters: [pathParam('action')], responses: ok('What the action did', { type: 'object' }) } },
  },
} as const;
