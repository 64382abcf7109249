/**
 * @module The agent's configuration schema (`holdfast agent --config FILE`): who the agent is
 * (Host_Identity), which dispatchers it reports to, how it watches the local application, how it
 * measures load and how it drains. Same rules as the dispatcher's file (config/schema.ts): camelCase,
 * unknown keys are errors, defaults filled in here, cross-field checks in AGENT_YAML_OPTIONS.
 */
import { isIPv4 } from 'node:net';
import { z } from 'zod';
import { configSchema, hostPort, schedulingSchema } from './schema.js';


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

const IPV4 = 'expected an IPv4 address';
const ipv4 = z
  .string({ invalid_type_error: IPV4, required_error: IPV4 })
  .refine((s) => isIPv4(s), { message: IPV4 });
const IPV4_CIDR = 'expected an IPv4 address with a prefix length, e.g. 10.0.0.21/24';
const ipv4Cidr = z
  .string({ invalid_type_error: IPV4_CIDR, required_error: IPV4_CIDR })
  .refine((s) => {
    const [ip, prefix, extra] = s.split('/');
    return extra === undefined && ip !== undefined && isIPv4(ip) && prefix !== undefined && /^\d{1,2}$/.test(prefix) && Number(prefix) <= 32;
  }, { message: IPV4_CIDR });
const IFNAME = 'expected an interface name (1-15 characters)';
const ifName = z
  .string({ invalid_type_error: IFNAME, required_error: IFNAME })
  .regex(/^[A-Za-z0-9_.:@-]{1,15}$/, { message: IFNAME });

/** Period, timeout and misses, shared by every link monitor (HANet §3.2; the bonding driver's miimon/arp_interval). */
const monitorTiming = {
  /** One check per period. */
  periodMs: z.number().int().min(5).max(60_000).default(100),
  /** A check that has not answered within this time failed. At most periodMs. */
  timeoutMs: z.number().int().min(1).max(60_000).default(50),
  /** Consecutive failed checks before the interface loses its GOOD flag; one good check restores it. */
  misses: z.number().int().min(1).max(100).default(2),
};

/**
 * One fault detection method of an interface (HANet §3.2): carrier (/sys/class/net/IF/carrier and
 * operstate, the MII monitor's job), arp (ARP requests to targets on the link, via arping: good
 * when any answers), ping (ICMP echo to a list of hosts through the interface, the "host ping
 * file": good when any answers).
 */
export const hanetMonitorSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('carrier'), ...monitorTiming, misses: monitorTiming.misses.default(1) }).strict(),
  z.object({ type: z.literal('arp'), targets: z.array(ipv4).min(1), ...monitorTiming }).strict(),
  z.object({ type: z.literal('ping'), hosts: z.array(ipv4).min(1), ...monitorTiming }).strict(),
]);

export const hanetInterfaceSchema = z
  .object({
    name: ifName,
    /** public: to the outside world; private: a link to sibling servers only (HANet §2.1). */
    role: z.enum(['public', 'private']),
    /** Configured speed: among GOOD interfaces of the same role the fastest is chosen (HANet §2.2.2). */
    speedMbps: z.number().positive().max(10_000_000),
    /** Every monitor must say good for the interface to be GOOD. Default: carrier only. */
    monitors: z.array(hanetMonitorSchema).min(1).default([{ type: 'carrier' }]),
  })
  .strict();

export const hanetSiblingSchema = z
  .object({
    /** The sibling agent's agent.id (Host_Identity). */
    id: z.number().int().min(0).max(65535),
    /** The sibling's hanet.listen, reached over the private link (`via`). */
    address: hostPort,
    /** Its service address: the only one this agent relays for it when it asks. */
    serviceAddress: ipv4,
    /** This server's private interface that leads to the sibling. */
    via: ifName,
    /** This server's own address on that private link: where the sibling routes our service address. */
    localAddress: ipv4,
  })
  .strict();

/**
 * HANet (seed 002) on Linux: link monitors, the interface manager that keeps exactly one public
 * interface ACTIVE and moves the service address with it, and the packet transmission agent
 * (requester when every public link failed, responder for siblings). Needs root and iproute2,
 * arping (and ping for ping monitors).
 */
export const hanetSchema = z
  .object({
    /** This server's service address with its prefix: moved to the ACTIVE interface (/32 on a private one). */
    address: ipv4Cidr,
    /** The default gateway on the public LAN; without it only the service address's own subnet is routed. */
    gateway: ipv4.optional(),
    interfaces: z.array(hanetInterfaceSchema).min(1),
    /** A better interface must stay GOOD this long before the manager fails back to it (no flapping). */
    failbackHoldMs: z.number().int().min(0).max(3_600_000).default(2000),
    /** UDP address the transmission agent listens on, on the private link. */
    listen: hostPort,
    siblings: z.array(hanetSiblingSchema).default([]),
    /** The requester repeats an unanswered request this often. */
    requestIntervalMs: z.number().int().min(5).max(60_000).default(20),
    /** While relayed, the requester refreshes its request this often... */
    keepaliveMs: z.number().int().min(10).max(60_000).default(200),
    /** ...and either side gives the other up after this long without a message (responder: undo; requester: next sibling). */
    siblingTimeoutMs: z.number().int().min(20).max(600_000).default(1000),
    /** Gratuitous ARPs sent when an address moves (HANet §3.5). */
    garpCount: z.number().int().min(1).max(20).default(3),
    /** Routing table for the service address's traffic (an `ip rule from <address>` points at it); owned by holdfast. */
    routeTable: z.number().int().min(1).max(252).default(218),
    /** Priority of that `ip rule`. */
    rulePriority: z.number().int().min(1).max(32765).default(2180),
    /** Route protocol number that marks every route holdfast adds (`ip route ... proto N`). */
    routeProtocol: z.number().int().min(5).max(254).default(218),
    /** Every change not yet undone, so a restart after a crash removes it. Default: /run/holdfast-hanet-<agent.id>.json. */
    stateFile: z.string().min(1).optional(),
  })
  .strict();

export type HanetConfig = z.infer<typeof hanetSchema>;
export type HanetInterfaceConfig = HanetConfig['interfaces'][number];
export type HanetMonitorConfig = HanetInterfaceConfig['monitors'][number];
export type HanetSiblingConfig = HanetConfig['siblings'][number];

export const agentConfigSchema = z
  .object({
    version: z.literal(1).default(1),
    logging: configSchema.shape.logging,
    /** The agent's own CPU priority under starvation (schema.ts's `scheduling`; raised at start by default). */
    scheduling: schedulingSchema('at-start'),
    /** The shared cluster key (HOLDFAST_CLUSTER_KEY, hex, overrides keyFile); the dispatchers hold the same. */
    cluster: z
      .object({ keyFile: z.string().min(1).optional() })
      .strict()
      .default({}),
    agent: agentSectionSchema,
    watchdog: watchdogSchema,
    load: agentLoadSchema.default({}),
    drain: drainSchema.default({}),
    /** Link failover and the sibling transmission agent (HANet, Linux only). Absent: not used. */
    hanet: hanetSchema.optional(),
  })
  .strict();

export type AgentConfig = z.infer<typeof agentConfigSchema>;
export type WatchdogConfig = AgentConfig['watchdog'];
export type AgentLoadConfig = AgentConfig['load'];
export type LoadWeights = AgentLoadConfig['weights'];
export type DrainConfig = AgentConfig['drain'];

/** Where the HANet state file lives unless told: one per Host_Identity. */
export function defaultHanetStateFile(id: number): string {
  return `/run/holdfast-hanet-${id}.json`;
}

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
  issues.push(...hanetChecks(asRecord(root.hanet), root.hanet !== undefined));
  const period = typeof watchdog.periodMs === 'number' ? watchdog.periodMs : 1000;
  const timeout = typeof watchdog.timeoutMs === 'number' ? watchdog.timeoutMs : 500;
  if (timeout > period) {
    issues.push(`watchdog.timeoutMs: expected at most periodMs (${period}), received ${timeout} (one verdict per period)`);
  }
  return issues;
}

/** HANet cross-field checks: names unique, one public interface at least, siblings via private interfaces, timeouts. */
function hanetChecks(hanet: Record<string, unknown>, present: boolean): string[] {
  if (!present) return [];
  const issues: string[] = [];
  const roles = new Map<string, unknown>();
  if (Array.isArray(hanet.interfaces)) {
    hanet.interfaces.forEach((raw, i) => {
      const iface = asRecord(raw);
      if (typeof iface.name !== 'string') return;
      if (roles.has(iface.name)) issues.push(`hanet.interfaces[${i}].name: duplicate interface ${iface.name}`);
      else roles.set(iface.name, iface.role);
      if (Array.isArray(iface.monitors)) {
        iface.monitors.forEach((m, j) => {
          const mon = asRecord(m);
          const period = typeof mon.periodMs === 'number' ? mon.periodMs : 100;
          const timeout = typeof mon.timeoutMs === 'number' ? mon.timeoutMs : 50;
          if (timeout > period) issues.push(`hanet.interfaces[${i}].monitors[${j}].timeoutMs: expected at most periodMs (${period}), received ${timeout}`);
        });
      }
    });
    if (roles.size > 0 && ![...roles.values()].includes('public')) issues.push('hanet.interfaces: expected at least one interface with role "public"');
  }
  if (Array.isArray(hanet.siblings)) {
    hanet.siblings.forEach((raw, i) => {
      const sib = asRecord(raw);
      if (typeof sib.via !== 'string') return;
      const role = roles.get(sib.via);
      if (role === undefined) issues.push(`hanet.siblings[${i}].via: expected one of hanet.interfaces, received "${sib.via}"`);
      else if (role !== 'private') issues.push(`hanet.siblings[${i}].via: expected a private interface, "${sib.via}" is ${String(role)}`);
    });
  }
  const keepalive = typeof hanet.keepaliveMs === 'number' ? hanet.keepaliveMs : 200;
  const silence = typeof hanet.siblingTimeoutMs === 'number' ? hanet.siblingTimeoutMs : 1000;
  if (silence < 2 * keepalive) issues.push(`hanet.siblingTimeoutMs: expected at least 2 x keepaliveMs (${2 * keepalive}), received ${silence}`);
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
  hanet: { vip: 'address', serviceAddress: 'address', holdMs: 'failbackHoldMs', failbackMs: 'failbackHoldMs', links: 'interfaces', peers: 'siblings' },
} as const;

/** The options config/load.ts parses an agent file with (its YamlOptions, kept structural here). */
export const AGENT_YAML_OPTIONS = {
  checks: agentChecks,
  renamed: AGENT_RENAMED,
  expected: 'a mapping with an "agent" section',
} as const;
