/**
 * @module The agent's configuration schema (`holdfast agent --config FILE`): who the agent is
 * (Host_Identity), which dispatchers it reports to, how it watches the local application, how it
 * measures load and how it drains. Same rules as the dispatcher's file (config/schema.ts): camelCase,
 * unknown keys are errors, defaults filled in here, cross-field checks in AGENT_YAML_OPTIONS.
 */
import { z } from 'zod';
import { configSchema, hostPort } from './schema.js';


const HTTP_URL = 'expected an http:// URL';
const httpUrl = z
  .string({ invalid_type_error: HTTP_URL, required_error: HTTP_URL })
  .refine((s) => isHttpUrl(s), { message: HTTP_URL });

function isHttpUrl(text: string): boolean {
  try {
    const url = new URL(text);
    return url.protocol === 'http:' && url.hostname !== '' && url.username === '' && url.password === '';
  } catch {
    return false;
  }
}

/** Where the agent writes its pid unless told: one file per Host_Identity, so agents can share a host. */
export function defaultPidFile(id: number): string {
  return `/tmp/holdfast-agent-${id}.pid`;
}

export const agentSectionSchema = z
  .object({
    /** Host_Identity (SARA Fig. 6, u16): the dispatcher maps it to a backend (backends[].agent). */
    id: z.number().int().min(0).max(65535),
    /** The dispatchers' monitor.listen UDP addresses; every message goes to each of them. */
    dispatchers: z.array(hostPort).min(1),
    /** delta: one availability announcement per interval. The dispatcher's detector.intervalMs must match. */
    heartbeatIntervalMs: z.number().int().min(5).max(60_000).default(20),
    /** delta_load: one load vector per interval. The dispatcher's load.intervalMs must match. */
    loadIntervalMs: z.number().int().min(5).max(600_000).default(1000),
    /** `holdfast agent drain` finds the running agent here. Default: /tmp/holdfast-agent-<id>.pid. */
    pidFile: z.string().min(1).optional(),
  })
  .strict()
  .transform((a) => ({ ...a, pidFile: a.pidFile ?? defaultPidFile(a.id) }));

/**
 * The watchdog of the local application (survey: watchdogs; SARA III.E flag 2). Its verdict turns
 * the announcement's flag from "available" into "node available, application unavailable". Which of
 * url / address / pid / pidFile is required depends on `type` (checked in AGENT_YAML_OPTIONS).
 */
export const watchdogSchema = z
  .object({
    /** http: GET url, 2xx or 3xx = healthy; tcp: connect to address; pid: the process exists; none: always healthy. */
    type: z.enum(['http', 'tcp', 'pid', 'none']),
    url: httpUrl.optional(),
    address: hostPort.optional(),
    pid: z.number().int().min(1).max(2 ** 22).optional(),
    /** Read at every check, so a restarted application with a new pid is followed. */
    pidFile: z.string().min(1).optional(),
    /** One check per period. */
    periodMs: z.number().int().min(5).max(600_000).default(1000),
    /** A check that has not answered within this time failed. At most periodMs. */
    timeoutMs: z.number().int().min(1).max(600_000).default(500),
    /** Consecutive failed checks before a healthy application is declared unavailable. */
    failures: z.number().int().min(1).max(100).default(1),
  })
  .strict();

const weight = z.number().min(0).max(1000);

/**
 * Weights of the five load indicators in the node's scalar load (SARA III.G). Any non-negative
 * numbers; they are normalised here to sum 1, so `{ cpu: 2, memory: 1, ... }` means what it says.
 */
export const loadWeightsSchema = z
  .object({
    cpu: weight.default(0.4),
    memory: weight.default(0.2),
    network: weight.default(0.2),
    io: weight.default(0.1),
    backlog: weight.default(0.1),
  })
  .strict()
  // A negative weight is already reported on its own key.
  .refine((w) => Object.values(w).some((x) => x < 0) || w.cpu + w.memory + w.network + w.io + w.backlog > 0, {
    message: 'expected at least one weight above 0',
  })
  .transform((w) => {
    const sum = w.cpu + w.memory + w.network + w.io + w.backlog;
    return { cpu: w.cpu / sum, memory: w.memory / sum, network: w.network / sum, io: w.io / sum, backlog: w.backlog / sum };
  });

export const agentLoadSchema = z
  .object({
    weights: loadWeightsSchema.default({}),
    /** The application's stats endpoint: GET answers JSON {"backlog": n} or a plain number n. */
    statsUrl: httpUrl.optional(),
    /** The backlog counted as full load: backlog indicator = min(1, n / backlogCapacity). */
    backlogCapacity: z.number().int().min(1).max(1_000_000_000).default(100),
  })
  .strict();

export const drainSchema = z
  .object({
    /** After a planned failure is announced, the agent exits at the latest this long after. */
    deadlineMs: z.number().int().min(0).max(86_400_000).default(30_000),
    /**
     * The application's listening port. The node is idle, and the agent exits early, when no
     * ESTABLISHED TCP socket has this local port (/proc/net/tcp, /proc/net/tcp6). Without it the
     * agent waits for the deadline.
     */
    port: z.number().int().min(1).max(65535).optional(),
  })
  .strict();

export const agentConfigSchema = z
  .object({
    version: z.literal(1).default(1),
    logging: configSchema.shape.logging,
    /** The shared cluster key (HOLDFAST_CLUSTER_KEY, hex, overrides keyFile); the dispatchers hold the same. */
    cluster: configSchema.shape.cluster,
    agent: agentSectionSchema,
    watchdog: watchdogSchema,
    load: agentLoadSchema.default({}),
    drain: drainSchema.default({}),
  })
  .strict();

export type AgentConfig = z.infer<typeof agentConfigSchema>;
export type WatchdogConfig = AgentConfig['watchdog'];
export type AgentLoadConfig = AgentConfig['load'];
export type LoadWeights = AgentLoadConfig['weights'];
export type DrainConfig = AgentConfig['drain'];

// ---------------------------------------------------------------------------------------------
// What config/load.ts needs beyond the schema: cross-field checks and renamed-key hints

const WATCHDOG_FIELDS = { http: 'url', tcp: 'address', pid: 'pid' } as const;
const WATCHDOG_EXPECTED = { url: 'an http:// URL', address: 'host:port', pid: 'a process id (or pidFile)' } as const;

/** Checks that span keys: the watchdog's fields against its type, timeout against period, duplicates. */
function agentChecks(raw: unknown): string[] {
  const issues: string[] = [];
  const root = asRecord(raw);

  const agent = asRecord(root.agent);
  if (Array.isArray(agent.dispatchers)) {
    const seen = new Map<string, number>();
    agent.dispatchers.forEach((d, i) => {
      if (typeof d !== 'string') return;
      const first = seen.get(d);
      if (first !== undefined) issues.push(`agent.dispatchers[${i}]: duplicate of agent.dispatchers[${first}] (${d})`);
      else seen.set(d, i);
    });
  }

  const watchdog = asRecord(root.watchdog);
  const type = watchdog.type;
  if (type === 'http' || type === 'tcp' || type === 'pid') {
    const field = WATCHDOG_FIELDS[type];
    const given = type === 'pid' ? watchdog.pid !== undefined || watchdog.pidFile !== undefined : watchdog[field] !== undefined;
    if (!given) issues.push(`watchdog.${field}: required when type is "${type}", expected ${WATCHDOG_EXPECTED[field]}`);
    if (type === 'pid' && watchdog.pid !== undefined && watchdog.pidFile !== undefined) {
      issues.push('watchdog.pidFile: expected either pid or pidFile, received both');
    }
  }
  if (typeof type === 'string') {
    for (const key of ['url', 'address', 'pid', 'pidFile'] as const) {
      const owner = key === 'url' ? 'http' : key === 'address' ? 'tcp' : 'pid';
      if (watchdog[key] !== undefined && type !== owner) issues.push(`watchdog.${key}: only used when type is "${owner}", type is "${type}"`);
    }
  }
  const period = typeof watchdog.periodMs === 'number' ? watchdog.periodMs : 1000;
  const timeout = typeof watchdog.timeoutMs === 'number' ? watchdog.timeoutMs : 500;
  if (timeout > period) {
    issues.push(`watchdog.timeoutMs: expected at most periodMs (${period}), received ${timeout} (one verdict per period)`);
  }
  return issues;
}

function asRecord(value: unknown): Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
}

/** Keys users bring from keepalived, HAProxy checks and other agents, by object kind (last path key). */
const AGENT_RENAMED = {
  root: { healthcheck: 'watchdog', healthCheck: 'watchdog', check: 'watchdog', health: 'watchdog' },
  agent: {
    hostId: 'id',
    hostIdentity: 'id',
    host: 'id',
    managers: 'dispatchers',
    interval: 'heartbeatIntervalMs',
    intervalMs: 'heartbeatIntervalMs',
    heartbeatMs: 'heartbeatIntervalMs',
    delta: 'heartbeatIntervalMs',
  },
  watchdog: {
    interval: 'periodMs',
    intervalMs: 'periodMs',
    path: 'url',
    retries: 'failures',
    fall: 'failures',
    threshold: 'failures',
    host: 'address',
    port: 'address',
  },
  load: { stats: 'statsUrl', statsPath: 'statsUrl', capacity: 'backlogCapacity', intervalMs: 'agent.loadIntervalMs' },
  weights: { mem: 'memory', disk: 'io', net: 'network', queue: 'backlog' },
  drain: { timeout: 'deadlineMs', timeoutMs: 'deadlineMs', listenPort: 'port', appPort: 'port' },
} as const;

/** The options config/load.ts parses an agent file with (its YamlOptions, kept structural here). */
export const AGENT_YAML_OPTIONS = {
  checks: agentChecks,
  renamed: AGENT_RENAMED,
  expected: 'a mapping with an "agent" section',
} as const;
