/**
 * @module The configuration schema: one YAML file, one zod schema, defaults filled in here.
 * Every key is camelCase; unknown keys are errors; renamed keys get a hint (config/load.ts).
 */
import { z } from 'zod';
import { isPrime, MAGLEV_DEFAULT_TABLE_SIZE, MAGLEV_MAX_TABLE_SIZE, MAGLEV_MIN_TABLE_SIZE } from '../balance/balancer-maglev.js';
import { parseHostPort } from '../core/address.js';
import { admissionSchema } from '../admission/admission-schema.js';
import { replicationShape } from '../replication/replication-schema.js';
import { backendTlsSchema, limitsSchema, tlsPassthroughSchema, tlsSchema } from '../edge/edge-schema.js';

/**
 * host:port, shared by the dispatcher's and the agent's schema. Messages that start with "expected"
 * are the expectation config/load.ts prints (", received X"); a well-formed address whose port is
 * past 65535 says so rather than "expected host:port".
 */
export const hostPort = z
  .string({ invalid_type_error: 'expected host:port', required_error: 'expected host:port' })
  .superRefine((s, ctx) => {
    if (parseHostPort(s) !== null) return;
    const port = /:(\d+)$/.exec(s);
    const outOfRange = port !== null && Number(port[1]) > 65535 && parseHostPort(s.slice(0, port.index) + ':1') !== null;
    ctx.addIssue({ code: z.ZodIssueCode.custom, message: outOfRange ? 'expected a port from 1 to 65535' : 'expected host:port' });
  });

const positiveMs = z.number().int().positive();

export const probeSchema = z
  .object({
    /**
     * tcp: a connect; http: GET path; sip: OPTIONS over UDP, any SIP response is up; udp: an empty
     * datagram, up unless ICMP port unreachable comes back (a dead host sends none: use agents).
     * Default by protocol: tcp for http and tcp services, udp for udp and sip (tcp when SIP is TCP-only).
     */
    type: z.enum(['tcp', 'http', 'udp', 'sip']).default('tcp'),
    /** HTTP probe path; a 2xx or 3xx answer means up. */
    path: z.string().startsWith('/').default('/'),
    intervalMs: positiveMs.default(1000),
    timeoutMs: positiveMs.default(1000),
  })
  .strict();

/**
 * Active failure detection (issue 3). `passive` relies on the forwarder's refused/reset/timeout
 * reports and on probing down backends; `push` expects agent heartbeats every intervalMs and calls a
 * backend down after n silent intervals (SARA Fig. 7); `pull` sends hello probes every intervalMs with
 * the same n x intervalMs rule (survey Fig. 5), for backends without an agent; `phi-accrual`
 * (Hayashibara et al.) suspects a backend when phi of the time since its last heartbeat exceeds
 * phiThreshold.
 */
export const detectorSchema = z
  .object({
    type: z.enum(['passive', 'push', 'pull', 'phi-accrual']).default('passive'),
    /** delta: the heartbeat (push, phi-accrual) or hello (pull) interval. */
    intervalMs: z.number().int().min(5).max(60_000).default(20),
    /** A backend is down after n x intervalMs without a valid heartbeat or reply. */
    n: z.number().int().min(1).max(100).default(3),
    /** phi-accrual: suspicion level at which the backend is declared down. */
    phiThreshold: z.number().positive().max(100).default(8),
    /** phi-accrual: heartbeat inter-arrival samples kept. */
    phiWindow: z.number().int().min(2).max(10_000).default(200),
    /**
     * push / phi-accrual: after a refused or reset connection took a backend down, its agent's
     * 'available' heartbeats are ignored this long (the watchdog may not have noticed yet).
     */
    holdDownMs: z.number().int().min(0).max(600_000).default(1000),
    /**
     * push / pull: how long a stall seen in the heartbeats (a gap of 2 x intervalMs or more that
     * ended with a heartbeat: the agent or the path was starved, not dead) widens the down timeout
     * to 1.5 x that gap (detector-push.ts). 0 (the default): never, always n x intervalMs. Off by
     * default because a SIGSTOPped agent or a cut link healed within 10 intervals looks the same as
     * a stall: bench/detection's SIGSTOP and cut trials taught it, and their p99 rose to 160-210 ms.
     */
    stallMemoryMs: z.number().int().min(0).max(3_600_000).default(0),
    /**
     * push / phi-accrual: how long a heartbeat its agent flags as starved (flag bit 6: sent one
     * interval late or more after waiting for a CPU) widens the down timeout to 1.5 x the gap it
     * ended (at most 1.5 x 100 intervals; detector-deadline.ts), counted from the latest such
     * heartbeat. A stopped agent or a cut link never sends the flag, so it does not slow their
     * detection. 0: off.
     */
    starvationMemoryMs: z.number().int().min(0).max(3_600_000).default(10_000),
  })
  .strict();

/** Load management (SARA III.C, III.G): load vectors from agents feed the shell forecast. */
export const loadSchema = z
  .object({
    /** delta_load: the agents' load vector interval; 3 x this without a vector = failed load monitor. */
    intervalMs: z.number().int().min(5).max(600_000).default(1000),
    /** T: load samples kept per backend for the forecast (SARA eq. 5). */
    history: z.number().int().min(2).max(1000).default(8),
    /** alpha of SARA eq. 1: weight of the mean against the variance in the cluster load. */
    alpha: z.number().min(0).max(1).default(0.5),
  })
  .strict();

export const healthSchema = z
  .object({
    detector: detectorSchema.default({}),
    /** How long a backend connect may take before the backend counts as timed out (down). */
    connectTimeoutMs: positiveMs.default(2000),
    /** Probing of down backends: they return to rotation when a probe succeeds. */
    probe: probeSchema.default({}),
  })
  .strict();

/**
 * Client-transparent failover of in-progress requests (issue 4, CoRAL): requests are logged until
 * their reply is complete and replayed on another backend when theirs fails; replies already partly
 * sent are completed by hold, range resume or verified replay.
 */
export const failoverSchema = z
  .object({
    enabled: z.boolean().default(true),
    /** A request (head and body) larger than this is not logged, so not recoverable. */
    maxRequestLogBytes: z.number().int().min(0).max(1024 * 1024 * 1024).default(1024 * 1024),
    /** All logged requests of the service together; past it new requests are not recoverable. */
    maxTotalLogBytes: z.number().int().min(0).max(64 * 1024 * 1024 * 1024).default(64 * 1024 * 1024),
    /** Replies up to this size are held until complete before their first byte is released. */
    holdReplyBytes: z.number().int().min(0).max(64 * 1024 * 1024).default(64 * 1024),
    /** Replay POST, PATCH and other non-idempotent requests that carry no Idempotency-Key. */
    replayUnsafe: z.boolean().default(false),
    /**
     * Backends tried for one request, the first one included, in a row without progress: a backend
     * that gave the client new reply bytes before failing starts the count again.
     */
    maxAttempts: z.number().int().min(1).max(16).default(3),
    /** Finish a partly sent reply with Range + If-Range from another backend. */
    rangeResume: z.boolean().default(true),
    /** Finish a partly sent reply by replaying and checking the sent prefix by SHA-256. */
    verifiedReplay: z.boolean().default(true),
  })
  .strict();

/**
 * HTTP/2 to clients (issue 19, RFC 9113): ALPN `h2` over TLS and prior-knowledge `h2c` in cleartext.
 * The SETTINGS holdfast advertises, and the bounds of its defences against the known HTTP/2 attacks
 * (each counted; a connection over a bound is closed with GOAWAY ENHANCE_YOUR_CALM).
 */
export const http2Schema = z
  .object({
    enabled: z.boolean().default(true),
    /** SETTINGS_MAX_CONCURRENT_STREAMS: streams a client may have open at once (more are refused). */
    maxConcurrentStreams: z.number().int().min(1).max(10_000).default(100),
    /** SETTINGS_INITIAL_WINDOW_SIZE: request body bytes a stream may have in flight (flow control). */
    initialWindowSize: z.number().int().min(1024).max(2 ** 31 - 1).default(65_535),
    /** SETTINGS_MAX_FRAME_SIZE (RFC 9113 §6.5.2: 16 KiB to 16 MiB - 1). */
    maxFrameSize: z.number().int().min(16_384).max(16_777_215).default(16_384),
    /** SETTINGS_MAX_HEADER_LIST_SIZE: decoded header bytes of one block (HPACK bombs stop here). */
    maxHeaderListSize: z.number().int().min(1024).max(1024 * 1024).default(32 * 1024),
    /** Rapid reset (CVE-2023-44487): streams the client may reset per second before GOAWAY. */
    maxResetsPerSecond: z.number().int().min(1).max(100_000).default(200),
    /** SETTINGS frames a client may send per second before GOAWAY (settings flood). */
    maxSettingsPerSecond: z.number().int().min(1).max(100_000).default(50),
    /** PING frames a client may send per second before GOAWAY (ping flood). */
    maxPingsPerSecond: z.number().int().min(1).max(100_000).default(50),
    /** Streams refused for a bad header block (too large: HPACK bomb, CONTINUATION flood) before GOAWAY. */
    maxBadHeaderBlocks: z.number().int().min(1).max(100_000).default(16),
    /** A reply that cannot move for this long because the client gives no window: GOAWAY (zero-window stall). */
    stallTimeoutMs: positiveMs.default(30_000),
    /** nghttp2's memory bound per connection (its own state, HPACK tables, queued frames), MiB. */
    maxSessionMemoryMiB: z.number().int().min(1).max(1024).default(10),
  })
  .strict();

/** `http2: true` is the defaults; an object without `enabled` is on. */
function http2Shorthand(v: unknown): unknown {
  if (v === undefined || v === false) return { enabled: false };
  if (v === true) return { enabled: true };
  if (typeof v === 'object' && v !== null && !Array.isArray(v) && !('enabled' in v)) return { enabled: true, ...v };
  return v;
}

export const httpSchema = z
  .object({
    /** Largest request or response head (request line + headers); above it the client gets 431. */
    maxHeaderBytes: z.number().int().min(1024).max(1024 * 1024).default(16 * 1024),
    /** More header fields than this in a request head is a 431 (HAProxy's tune.http.maxhdr is 101). */
    maxHeaderCount: z.number().int().min(8).max(10_000).default(100),
    /** A client must send a whole request head within this time, or gets 408. */
    headerTimeoutMs: positiveMs.default(10_000),
    /** An idle client keep-alive connection is closed after this. */
    idleTimeoutMs: positiveMs.default(60_000),
    /** A backend must start its reply within this time, or the exchange fails with 504. */
    responseTimeoutMs: positiveMs.default(60_000),
    /** Idle keep-alive connections to a backend are closed after this. */
    backendIdleTimeoutMs: positiveMs.default(30_000),
    /** Idle keep-alive connections kept per backend. */
    maxIdlePerBackend: z.number().int().min(0).max(100_000).default(128),
    /** Add X-Forwarded-For, X-Forwarded-Proto and Forwarded to requests. */
    forwardedHeaders: z.boolean().default(true),
    /** Bytes buffered per direction before the source is paused (backpressure). */
    highWaterMarkBytes: z.number().int().min(1024).max(64 * 1024 * 1024).default(64 * 1024),
    failover: failoverSchema.default({}),
    /** HTTP/2 to clients (issue 19): `true`, or an object of settings and defence bounds. */
    http2: z.preprocess(http2Shorthand, http2Schema),
  })
  .strict();

export const tcpSchema = z
  .object({
    /** A spliced connection with no traffic either way for this long is closed. 0: never. */
    idleTimeoutMs: z.number().int().min(0).default(0),
  })
  .strict();

/**
 * Session awareness (issue 5, SARA III.A): the flow table and the session table of a service. Both
 * are preallocated lazily and never grow past their maximum: when full, new flows and new sessions
 * are refused (counted) and established ones keep being served.
 */
/** `services[].maglev`: the Maglev balancer's lookup table (read only when `balancer: maglev`). */
export const maglevSchema = z
  .object({
    /** Entries of the lookup table: a prime, much larger than the number of backends (paper: M ≥ 100·N). */
    tableSize: z
      .number()
      .int()
      .min(MAGLEV_MIN_TABLE_SIZE)
      .max(MAGLEV_MAX_TABLE_SIZE)
      .refine(isPrime, { message: 'expected a prime number (e.g. 65537, 655373)' })
      .default(MAGLEV_DEFAULT_TABLE_SIZE),
  })
  .strict();

export const sessionsSchema = z
  .object({
    /** Flows tracked at once (<src, dst, proto>; signalling, announced and secondary). */
    maxFlows: z.number().int().min(16).max(16 * 1024 * 1024).default(1_000_000),
    /** Sessions pinned at once (a SIP call, an HTTP cookie value, a UDP client flow). */
    maxSessions: z.number().int().min(16).max(16 * 1024 * 1024).default(1_000_000),
    /** A flow without traffic for this long is inactive; it is purged after twice this (SARA III.A). */
    flowTimeoutMs: z.number().int().min(100).max(3_600_000).default(30_000),
    /** A session without traffic for this long is closed (a SIP call whose BYE was lost, an idle cookie). */
    sessionTimeoutMs: z.number().int().min(100).max(7 * 24 * 3_600_000).default(3_600_000),
    /** HTTP virtual sessions: the cookie whose value names the client's session (e.g. JSESSIONID). */
    cookie: z.string().regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$/, 'expected a cookie name (an HTTP token)').optional(),
    /** HTTP virtual sessions: the request header whose value names the session (instead of a cookie). */
    header: z.string().regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$/, 'expected a header name (an HTTP token)').optional(),
  })
  .strict()
  .refine((s) => !(s.cookie !== undefined && s.header !== undefined), {
    message: 'expected either cookie or header, not both',
  });

export const udpSchema = z
  .object({
    /** Datagrams larger than this are dropped and counted (65507 is the IPv4 UDP maximum). */
    maxDatagramBytes: z.number().int().min(512).max(65507).default(65507),
    /**
     * Upstream sockets (file descriptors: one per client flow) the relay holds open at most. At the
     * cap a new client is refused (sessionRefuse 'sockets-full') and established flows go on, so a
     * flood of spoofed sources cannot use up the process's descriptors (`ulimit -n`), which every
     * other service, probe and the admin server need. Keep the sum over udp services well under it.
     */
    maxUpstreamSockets: z.number().int().min(1).max(1_000_000).default(16_384),
  })
  .strict();

/** SIP (RFC 3261) over UDP and TCP: sessions are Call-IDs pinned to one backend. */
export const sipSchema = z
  .object({
    /** The transports the service listens on, both on the service's listen address. */
    transports: z.array(z.enum(['udp', 'tcp'])).min(1).default(['udp', 'tcp']),
    /** A message holdfast cannot parse is dropped (and counted), or forwarded unparsed on the flow's pin. */
    malformed: z.enum(['drop', 'forward']).default('drop'),
    /** Largest SIP message accepted (UDP datagram or TCP head + body). */
    maxMessageBytes: z.number().int().min(1024).max(1024 * 1024).default(65_535),
    /**
     * Largest UDP datagram accepted, on top of maxMessageBytes. A datagram carries at most 65 507
     * bytes, so with maxMessageBytes alone an oversized datagram could never be 'too-large'; real SIP
     * over UDP stays near the path MTU (RFC 3261 §18.1.1 moves messages over 1300 bytes to TCP).
     */
    maxDatagramBytes: z.number().int().min(1024).max(65_507).default(16_384),
    /** Add a Record-Route so that in-dialog requests of standard user agents come back through holdfast. */
    recordRoute: z.boolean().default(true),
    /**
     * Answers of holdfast's own (503, 483, 400) sent over UDP per second at most, burst one second's
     * worth; past it they are dropped and counted (drop reason 'answer-throttled'). A UDP source is
     * not verified: this bounds what a flood with spoofed sources can make holdfast send to a victim.
     * The refusal itself still happens (the request is not forwarded); a real client retransmits.
     */
    udpAnswersPerSecond: z.number().int().min(1).max(1_000_000).default(1000),
    /** A client TCP connection with no message for this long is closed. */
    tcpIdleTimeoutMs: z.number().int().min(1000).max(24 * 3_600_000).default(600_000),
  })
  .strict();

/**
 * The media relay (issue 6): RTP/RTCP flows announced by SDP (sip) or RTSP's Transport header are
 * relayed through UDP port pairs (RTP even, RTCP the next odd port) allocated from this range; the
 * announcements are rewritten to them. An exhausted range refuses the new session (SIP 503, RTSP 453).
 */
export const mediaSchema = z
  .object({
    enabled: z.boolean().default(true),
    /** First relay port (even). */
    portMin: z.number().int().min(1024).max(65534).default(20_000),
    /** Last relay port. The range holds (portMax - portMin + 1) / 2 pairs. */
    portMax: z.number().int().min(1025).max(65535).default(29_999),
    /** The address written into rewritten SDP / Transport (default: the service's listen host). */
    advertise: z
      .string()
      .refine((s) => /^[0-9.]+$|:/.test(s), { message: 'expected an IP address' })
      .optional(),
  })
  .strict()
  .refine((m) => m.portMin < m.portMax, { message: 'expected portMin < portMax', path: ['portMax'] });

export const backendSchema = z
  .object({
    id: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'expected an id of letters, digits, "_", "." or "-"'),
    address: hostPort,
    weight: z.number().int().min(0).max(1000).default(1),
    /** Host_Identity of the agent beside this backend (SARA Fig. 6), when it runs one. */
    agent: z.number().int().min(0).max(65535).optional(),
    /** TLS to this backend (http and tcp services). */
    tls: backendTlsSchema.optional(),
    /** tlsPassthrough: the server names (SNI) this backend takes; `*.x` covers one label. */
    serverNames: z.array(z.string().min(1)).optional(),
  })
  .strict();

/** The probe a service gets when its configuration names none: one its backends can answer. */
function defaultProbeType(service: Record<string, unknown>): string {
  switch (service['protocol']) {
    case 'udp':
      return 'udp';
    case 'sip': {
      const sip = service['sip'] as { transports?: unknown } | undefined;
      const t = sip && Array.isArray(sip.transports) ? sip.transports : ['udp'];
      // Not 'sip': many SIP test peers (sipp's uas) never answer OPTIONS outside a scenario.
      return t.includes('udp') ? 'udp' : 'tcp';
    }
    default:
      return 'tcp';
  }
}

/** Fills services[].health.probe.type from the protocol when absent (zod defaults cannot see siblings). */
function withProbeDefault(input: unknown): unknown {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) return input;
  const service = input as Record<string, unknown>;
  const health = service['health'] ?? {};
  if (typeof health !== 'object' || health === null || Array.isArray(health)) return input;
  const probe = (health as Record<string, unknown>)['probe'] ?? {};
  if (typeof probe !== 'object' || probe === null || Array.isArray(probe)) return input;
  if ((probe as Record<string, unknown>)['type'] !== undefined) return input;
  return { ...service, health: { ...health, probe: { ...probe, type: defaultProbeType(service) } } };
}

const serviceObject = z
  .object({
    name: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'expected a name of letters, digits, "_", "." or "-"'),
    protocol: z.enum(['http', 'tcp', 'udp', 'sip', 'rtsp']),
    listen: hostPort,
    balancer: z.string().default('round-robin'),
    maglev: maglevSchema.default({}),
    backends: z.array(backendSchema).min(1),
    health: healthSchema.default({}),
    load: loadSchema.default({}),
    http: httpSchema.default({}),
    tcp: tcpSchema.default({}),
    udp: udpSchema.default({}),
    sip: sipSchema.default({}),
    sessions: sessionsSchema.default({}),
    media: mediaSchema.default({}),
    admission: admissionSchema.default({}),
    /** TLS termination (http and tcp services). */
    tls: tlsSchema.optional(),
    /** Route TLS by its server name without decrypting it (tcp services). */
    tlsPassthrough: tlsPassthroughSchema.optional(),
    /** Per-client-address bounds of the listener (http, tcp, rtsp and SIP over TCP). */
    limits: limitsSchema.default({}),
  })
  .strict();

export const serviceSchema = z.preprocess(withProbeDefault, serviceObject);

/** `cluster.etcd`: where this dispatcher registers and what it reads (cluster.membership: etcd). */
export const etcdSchema = z
  .object({
    /** etcd's client API, host:port each. */
    endpoints: z.array(hostPort).min(1),
    /** Key prefix of this cluster: dispatchers/, backends/<service>/<id>, config. */
    prefix: z.string().regex(/^\/([A-Za-z0-9_.-]+\/)*$/, 'expected a key prefix like "/holdfast/"').default('/holdfast/'),
    /** This dispatcher's id in the cluster (unique). */
    id: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'expected a name of letters, digits, "_", "." or "-"'),
    /** The address others learn for this dispatcher (default: the first service's listen address). */
    address: hostPort.optional(),
    /** A dispatcher silent for this long (crashed, partitioned) leaves the others' view. */
    leaseTtlS: z.number().int().min(2).max(60).default(5),
    /** How long a start waits for etcd. */
    dialTimeoutMs: z.number().int().min(100).max(60_000).default(2000),
    /** The view is saved here; etcd unreachable at start then starts from it (with a warning) instead of failing. */
    lastKnownFile: z.string().min(1).optional(),
    /** etcd's own authentication: a user, and a file holding its password (HOLDFAST_ETCD_PASSWORD overrides). */
    username: z.string().min(1).optional(),
    passwordFile: z.string().min(1).optional(),
    /** TLS to etcd (https endpoints): the CA of etcd's certificate; a client pair when etcd requires one. */
    tls: z
      .object({ caFile: z.string().min(1), certFile: z.string().min(1).optional(), keyFile: z.string().min(1).optional() })
      .strict()
      .refine((t) => (t.certFile === undefined) === (t.keyFile === undefined), { message: 'expected certFile and keyFile together', path: ['keyFile'] })
      .optional(),
  })
  .strict()
  .refine((e) => e.passwordFile === undefined || e.username !== undefined, { message: 'expected a username with passwordFile', path: ['username'] });

/**
 * `scheduling` (dispatcher and agent): the process raises its own CPU priority — SCHED_RR at
 * `realtimePriority`, else nice `nice` — when allowed (root, CAP_SYS_NICE or RLIMIT_RTPRIO), at its
 * first event-loop stall of `stallMs` or more (`on-stall`), at start (`at-start`), or never.
 * A starved agent misses heartbeats that nothing can make up for: the agent's default is at-start
 * (it uses little CPU, so real-time costs the machine nothing; on-stall, the earlier default, cost
 * one false down at the first stall, measured in bench/detection: issue 17). A starved dispatcher only reads
 * heartbeats late, which its detectors compensate (monitor/health.ts): its default is never, since
 * a real-time data path under a flood could starve everything else on the machine.
 * (core/scheduling.ts; bench/detection.)
 */
export function schedulingSchema(raise: 'on-stall' | 'at-start' | 'never') {
  return z
    .object({
      raise: z.enum(['on-stall', 'at-start', 'never']).default(raise),
      realtimePriority: z.number().int().min(1).max(99).default(10),
      nice: z.number().int().min(-20).max(0).default(-10),
      stallMs: z.number().int().min(2).max(10_000).default(10),
    })
    .strict()
    .default({});
}

export const configSchema = z
  .object({
    version: z.literal(1).default(1),
    scheduling: schedulingSchema('never'),
    logging: z
      .object({
        level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
        /** json for machines; pretty for a terminal. */
        format: z.enum(['json', 'pretty']).default('json'),
        /**
         * Write the log to this file (appended) instead of stdout. SIGUSR1 reopens it (after logrotate
         * renamed it); a line that cannot be written (disk full) is dropped and counted.
         */
        file: z.string().min(1).optional(),
      })
      .strict()
      .default({}),
    admin: z
      .object({
        enabled: z.boolean().default(true),
        /** Loopback by default. Anywhere else needs a token (tokenFile or HOLDFAST_ADMIN_TOKEN). */
        listen: hostPort.default('127.0.0.1:9900'),
        /** A file holding the admin API's bearer token (at least 16 characters); HOLDFAST_ADMIN_TOKEN overrides. */
        tokenFile: z.string().min(1).optional(),
      })
      .strict()
      .default({}),
    /**
     * The shared cluster key that authenticates every control message (HMAC-SHA256). Required as
     * soon as agents are used. keyFile holds at least 32 bytes; HOLDFAST_CLUSTER_KEY (hex) overrides.
     */
    cluster: z
      .object({
        keyFile: z.string().min(1).optional(),
        /**
         * How dispatchers know each other: 'groups' (the VRRP-like groups[], the default) or 'etcd'
         * (N active dispatchers registered on etcd v3, issue 20; needs `etcd`).
         */
        membership: z.enum(['groups', 'etcd']).default('groups'),
        etcd: etcdSchema.optional(),
      })
      .strict()
      .refine((c) => c.membership !== 'etcd' || c.etcd !== undefined, { message: 'expected an etcd section when membership is "etcd"', path: ['etcd'] })
      .default({}),
    /** Where the dispatcher receives agent heartbeats and load vectors (UDP). */
    monitor: z
      .object({
        listen: hostPort.default('127.0.0.1:7600'),
      })
      .strict()
      .default({}),
    services: z.array(serviceSchema).min(1),
    ...replicationShape,
  })
  .strict();

export type Config = z.infer<typeof configSchema>;
export type ServiceConfig = z.infer<typeof serviceObject>;
export type BackendConfig = z.infer<typeof backendSchema>;
export type HttpConfig = z.infer<typeof httpSchema>;
export type FailoverConfig = z.infer<typeof failoverSchema>;
export type Http2Config = z.infer<typeof http2Schema>;
export type HealthConfig = z.infer<typeof healthSchema>;
export type DetectorConfig = z.infer<typeof detectorSchema>;
export type LoadConfig = z.infer<typeof loadSchema>;
export type SessionsConfig = z.infer<typeof sessionsSchema>;
export type UdpConfig = z.infer<typeof udpSchema>;
export type SipConfig = z.infer<typeof sipSchema>;
export type MediaConfig = z.infer<typeof mediaSchema>;
export type { BackendTlsConfig, LimitsConfig, TlsServiceConfig } from '../edge/edge-schema.js';
export type { AdmissionConfig } from '../admission/admission-schema.js';
export type { GroupConfig, ReplicationConfig } from '../replication/replication-schema.js';
