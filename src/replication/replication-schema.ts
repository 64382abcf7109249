/**
 * @module The configuration of the replicated dispatcher (issue 7), as a fragment the dispatcher's
 * schema (config/schema.ts) merges in: who this dispatcher is (`dispatcher.id`) and the election
 * groups it belongs to (`groups[]`: one VIP each, with the services that move with it). Same rules
 * as the rest of the file: camelCase, unknown keys are errors, defaults filled in here, messages
 * start with "expected". Checks that need the services list are in `replicationIssues`.
 *
 * ```yaml
 * dispatcher: { id: 1 }
 * groups:
 *   - name: front
 *     id: 10
 *     vip: 127.0.0.10              # loopback (default); linux: 192.0.2.10/24 + interface
 *     priority: 200
 *     listen: 127.0.0.1:7701       # this dispatcher's election socket
 *     peers: [127.0.0.1:7702]      # the other dispatchers' election sockets
 *     services: [sip, web]
 * ```
 */
import net from 'node:net';
import { z } from 'zod';
import { parseHostPort } from '../core/address.js';
import { PRIORITY_OWNER } from '../wire/election-advert.js';

/** Messages that start with "expected" are the expectation config/load.ts prints (", received X"). */
const hostPort = z
  .string({ invalid_type_error: 'expected host:port', required_error: 'expected host:port' })
  .refine((s) => parseHostPort(s) !== null, { message: 'expected host:port' });

const NAME = /^[A-Za-z0-9_.-]{1,64}$/;

/** Default advertisement interval: the issue's 20 ms (master down after 3 × 20 ms + skew). */
export const ADVERT_INTERVAL_MS = 20;
/** Lowest advertisement interval accepted: below it a busy 2-core machine misses adverts. */
export const MIN_ADVERT_INTERVAL_MS = 5;
export const MAX_ADVERT_INTERVAL_MS = 1000;
/** Default priority (keepalived's and RFC 5798's). */
export const DEFAULT_PRIORITY = 100;

function isIPv4In(address: string, first: number, bits: number): boolean {
  if (!net.isIPv4(address)) return false;
  const top = Number(address.split('.')[0]);
  return top >>> (8 - bits) === first >>> (8 - bits);
}

/** An IPv4 address and prefix length: "192.0.2.10/24". Null when `text` is not one. */
export function parseCidr(text: string): { address: string; prefix: number } | null {
  const m = /^([0-9.]+)\/(\d{1,2})$/.exec(text);
  if (!m || !net.isIPv4(m[1]!)) return null;
  const prefix = Number(m[2]);
  return prefix <= 32 ? { address: m[1]!, prefix } : null;
}

/** This dispatcher's identity among its peers, and its processes. */
export const dispatcherIdentitySchema = z
  .object({
    /** u16: the `sender` of its election adverts; breaks priority ties (higher wins). Unique per cluster. Required with groups. */
    id: z.number().int().min(0).max(65535).optional(),
    /**
     * Event loops (issue 16): N > 1 runs N worker processes (node:cluster) sharing the listeners of
     * the services that can be spread (dispatcher/workers.ts says which); `auto`: one per core.
     */
    workers: z.union([z.number().int().min(1).max(256), z.literal('auto')]).default(1),
    /**
     * On SIGINT/SIGTERM (close()): listeners close at once, exchanges in flight get this long to
     * finish, then what is left is cut and the process exits.
     */
    drainTimeoutMs: z.number().int().min(0).max(3_600_000).default(5000),
  })
  .strict();

/** Multicast adverts (best effort, election-transport.ts), beside or instead of unicast peers. */
export const multicastSchema = z
  .object({
    /** Group address in 224.0.0.0/4 and port, the same on every dispatcher of the group. */
    group: hostPort.refine((s) => isIPv4In(parseHostPort(s)?.host ?? '', 224, 4), { message: 'expected a multicast group 224.0.0.0/4:port' }),
    /** Local address of the interface to join and send on (default: the kernel's choice). */
    interface: z.string().refine((s) => net.isIPv4(s), { message: 'expected an IPv4 address' }).optional(),
  })
  .strict();

/**
 * One election group: a VIP and the services that move with it (RFC 5798's virtual router).
 * A dispatcher can be master of some groups and backup of others (dual-role, CoRAL).
 */
export const groupSchema = z
  .object({
    name: z.string().regex(NAME, 'expected a name of letters, digits, "_", "." or "-"'),
    /** u16 group id on the wire (VRRP's VRID): the same on every dispatcher of the group, unique among groups. */
    id: z.number().int().min(1).max(65535),
    /** loopback: an IPv4 address in 127.0.0.0/8. linux: an IPv4 address with its prefix, "192.0.2.10/24". */
    vip: z.string({ invalid_type_error: 'expected an IPv4 address', required_error: 'expected an IPv4 address' }),
    /** loopback: bind the services on the VIP when master (no privileges). linux: `ip addr add` + gratuitous ARP. */
    takeover: z.enum(['loopback', 'linux']).default('loopback'),
    /** linux: the interface the VIP is added to. */
    interface: z.string().regex(/^[A-Za-z0-9_.:@-]{1,15}$/, 'expected an interface name').optional(),
    /** 1-254; 255 = this dispatcher owns the VIP and always preempts. The highest priority alive is master. */
    priority: z.number().int().min(1).max(PRIORITY_OWNER).default(DEFAULT_PRIORITY),
    /** The master advertises every this many ms; a backup takes over after 3 × this + skew of silence. */
    advertIntervalMs: z.number().int().min(MIN_ADVERT_INTERVAL_MS).max(MAX_ADVERT_INTERVAL_MS).default(ADVERT_INTERVAL_MS),
    /** Take over from a live master of lower priority (RFC 5798 Preempt_Mode). */
    preempt: z.boolean().default(true),
    /** This dispatcher's election socket (UDP); groups with the same listen share it. */
    listen: hostPort,
    /** The other dispatchers' election sockets; adverts go to each. */
    peers: z.array(hostPort).default([]),
    multicast: multicastSchema.optional(),
    /** Names of services[] that move with this VIP. */
    services: z.array(z.string()).min(1),
    /**
     * Stream the services' session state to the peers (state-replicator.ts, TCP on `listen`'s
     * host:port) so that calls in progress survive a takeover; false: takeover without state.
     */
    replicateState: z.boolean().default(true),
    /**
     * How long a state change may wait in the pending batch before it is framed, sealed and written
     * (state-replicator.ts). 0, the default (REPLICATION_FLUSH_MS): at the end of the event-loop
     * turn that made the changes — every change of a turn in one frame, no timer, and on the wire
     * before the replies that depend on them. 1-1000: at most every that many ms, one timer per
     * window; each flush has a fixed cost on the master (an HMAC, a socket write that wakes the
     * backup: issue 17), and a change made within the window before the master dies is lost.
     * Groups sharing a `listen` use the smallest of theirs.
     */
    replicationFlushMs: z.number().int().min(0).max(1000).default(0),
    /** linux: gratuitous ARPs per announcement burst (keepalived vrrp_garp_master_repeat). */
    garpCount: z.number().int().min(1).max(100).default(5),
    /** linux: the second burst this long after taking over; 0: none (keepalived vrrp_garp_master_delay). */
    garpDelayMs: z.number().int().min(0).max(60_000).default(5000),
    /**
     * linux: how gratuitous ARPs are sent — `auto`: a raw packet socket opened at start (the
     * garp-socket addon), arping when it cannot be had; `arping`: always start arping (the old way).
     */
    garp: z.enum(['auto', 'arping']).default('auto'),
  })
  .strict()
  .superRefine((g, ctx) => {
    if (g.takeover === 'loopback') {
      if (!isIPv4In(g.vip, 127, 8)) {
        ctx.addIssue({ code: 'custom', path: ['vip'], message: 'expected an IPv4 address in 127.0.0.0/8 (takeover: loopback)' });
      }
      if (g.interface !== undefined) ctx.addIssue({ code: 'custom', path: ['interface'], message: 'expected no interface with takeover: loopback' });
    } else {
      const cidr = parseCidr(g.vip);
      if (cidr === null) ctx.addIssue({ code: 'custom', path: ['vip'], message: 'expected an IPv4 address with its prefix, like 192.0.2.10/24 (takeover: linux)' });
      if (g.interface === undefined) ctx.addIssue({ code: 'custom', path: ['interface'], message: 'expected an interface name (takeover: linux needs one)' });
    }
    if (g.peers.length === 0 && g.multicast === undefined) {
      ctx.addIssue({ code: 'custom', path: ['peers'], message: 'expected at least one peer (or a multicast group)' });
    }
    if (g.peers.includes(g.listen)) ctx.addIssue({ code: 'custom', path: ['peers'], message: 'expected the other dispatchers, not this one’s own listen address' });
    const seen = new Set<string>();
    g.services.forEach((s, i) => {
      if (seen.has(s)) ctx.addIssue({ code: 'custom', path: ['services', i], message: `expected each service once, "${s}" is listed twice` });
      seen.add(s);
    });
  });

/** The fields config/schema.ts spreads into its top-level object. */
export const replicationShape = {
  /** Required as soon as `groups` is not empty. */
  dispatcher: dispatcherIdentitySchema.optional(),
  groups: z.array(groupSchema).default([]),
};

/** The fragment on its own (for tests, and for a schema that wants it as a whole). */
export const replicationSchema = z.object(replicationShape).strict();

export type DispatcherIdentity = z.infer<typeof dispatcherIdentitySchema>;
export type GroupConfig = z.infer<typeof groupSchema>;
export type ReplicationConfig = z.infer<typeof replicationSchema>;

/** The VIP as an address and prefix: loopback VIPs are /32 (one address on lo). */
export function vipOf(g: Pick<GroupConfig, 'vip' | 'takeover'>): { address: string; prefix: number } {
  if (g.takeover === 'loopback') return { address: g.vip, prefix: 32 };
  const cidr = parseCidr(g.vip);
  if (cidr === null) throw new RangeError(`vip: expected an IPv4 address with its prefix, received ${JSON.stringify(g.vip)}`);
  return cidr;
}

/**
 * Cross-field checks over the whole (parsed) configuration, as `<path>: <message>` lines for
 * ConfigInvalidError: `dispatcher` present when groups exist; group names, ids and VIPs unique;
 * every listed service exists and moves with one group only; a loopback group's services listen on
 * its VIP (that is where they are bound when it is master).
 */
export function replicationIssues(r: ReplicationConfig, services: ReadonlyArray<{ name: string; listen: string }>): string[] {
  const issues: string[] = [];
  if (r.groups.length > 0 && r.dispatcher?.id === undefined) issues.push('dispatcher: required, expected { id } when groups are configured');
  const byName = new Map(services.map((s) => [s.name, s]));
  const owner = new Map<string, string>();
  const unique = (what: 'name' | 'id' | 'vip', value: string | number, i: number, seen: Map<string | number, number>): void => {
    const first = seen.get(value);
    if (first !== undefined) issues.push(`groups[${i}].${what}: expected a unique ${what}, ${JSON.stringify(value)} is also groups[${first}]'s`);
    else seen.set(value, i);
  };
  const names = new Map<string | number, number>();
  const ids = new Map<string | number, number>();
  const vips = new Map<string | number, number>();
  r.groups.forEach((g, i) => {
    unique('name', g.name, i, names);
    unique('id', g.id, i, ids);
    unique('vip', vipOf(g).address, i, vips);
    g.services.forEach((name, j) => {
      const s = byName.get(name);
      if (s === undefined) {
        issues.push(`groups[${i}].services[${j}]: expected the name of a service, received ${JSON.stringify(name)}`);
        return;
      }
      const other = owner.get(name);
      if (other !== undefined) issues.push(`groups[${i}].services[${j}]: expected a service in one group only, "${name}" is also in ${other}`);
      else owner.set(name, g.name);
      const host = parseHostPort(s.listen)?.host;
      if (g.takeover === 'loopback' && host !== g.vip) {
        issues.push(`groups[${i}].services[${j}]: expected service "${name}" to listen on the VIP ${g.vip}, it listens on ${s.listen}`);
      }
    });
  });
  return issues;
}
