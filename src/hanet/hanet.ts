/**
 * @module HANet's composition (seed 002) inside `holdfast agent`: the link monitors of every
 * configured interface feed the interface manager; its choice is carried out here (§3.7): a public
 * interface becomes ACTIVE by moving the service address to it, pointing the service's routing
 * table at it and announcing the address with gratuitous ARP; when no public interface is GOOD the
 * transmission agent requester moves the address to a private link and asks a sibling to relay.
 * The same agent is the responder for its siblings. Every change goes through the change journal
 * (undone on close and, after a crash, at the next start).
 *
 * Routing: the service address's traffic follows `ip rule from <address> lookup <routeTable>`; the
 * table holds the ACTIVE public interface's subnet and default route, or, while relayed, a default
 * route via the sibling. While relayed a second rule sends all of this host's other traffic (the
 * agent's own heartbeats) through the table too, so the dispatcher hears the node via the sibling.
 * Interface-bound probes (arping, ping -I) are unaffected: a route whose device is not theirs is
 * skipped.
 */
import type { Logger } from '../admin/log.js';
import { parseHostPort } from '../core/address.js';
import type { Clock } from '../core/clock.js';
import { channels } from '../core/diagnostics.js';
import { HanetInterfaceError } from '../core/errors.js';
import { defaultHanetStateFile, type HanetConfig, type HanetSiblingConfig } from '../config/agent-schema.js';
import { Serial } from '../takeover/identity-takeover.js';
import { ChangeJournal } from './change-journal.js';
import type { HostSystem } from './host-system.js';
import { chooseActive, InterfaceManager, type ManagedInterface } from './interface-manager.js';
import { createMonitor } from './link-monitor-probes.js';
import { TransmissionAgentChannel, type ChannelStats } from './transmission-agent-channel.js';
import { TransmissionAgentRequester, type RequesterState } from './transmission-agent-requester.js';
import { TransmissionAgentResponder, type ResponderCounts } from './transmission-agent-responder.js';

/** After a change that failed (an ip command refused), the manager decides again this much later. */
export const RETRY_MS = 1000;

export interface HanetOptions {
  /** agent.id. */
  host: number;
  key: Buffer;
  clock: Clock;
  sys: HostSystem;
  log?: Logger;
  /** Called when the node starts or stops being reached through a sibling (the heartbeat's flag bit 7). */
  onViaSibling?(via: boolean): void;
}

export interface HanetStatus {
  active: string | null;
  interfaces: { name: string; role: string; good: boolean }[];
  requester: RequesterState;
  sibling: number | null;
  relaying: { sibling: number; address: string; iface: string }[];
  channel: ChannelStats;
  responder: ResponderCounts;
}

export interface Hanet {
  readonly viaSibling: boolean;
  status(): HanetStatus;
  /** Stops monitoring, releases a sibling, undoes every change. Idempotent. */
  close(): Promise<void>;
}

function parseCidr(cidr: string): { ip: string; prefix: number; network: string } {
  const [ip, p] = cidr.split('/') as [string, string];
  const prefix = Number(p);
  const n = ip.split('.').reduce((acc, o) => acc * 256 + Number(o), 0);
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  const net = (n & mask) >>> 0;
  const network = `${net >>> 24}.${(net >>> 16) & 0xff}.${(net >>> 8) & 0xff}.${net & 0xff}`;
  return { ip, prefix, network };
}

/** `ip -4 -o addr show` lines → interfaces holding `ip`, with the prefix each has it with. */
function holders(out: string, ip: string): Map<string, string> {
  const found = new Map<string, string>();
  for (const line of out.split('\n')) {
    const m = /^\d+:\s+(\S+)\s+inet\s+(\d+\.\d+\.\d+\.\d+\/\d+)/.exec(line);
    if (m && m[2]!.startsWith(`${ip}/`)) found.set(m[1]!.split('@')[0]!, m[2]!);
  }
  return found;
}

export async function startHanet(cfg: HanetConfig, o: HanetOptions): Promise<Hanet> {
  const { sys, clock, log } = o;
  for (const i of cfg.interfaces) {
    if (!sys.interfaceExists(i.name)) throw new HanetInterfaceError(i.name, 'no such interface on this host (hanet.interfaces)');
  }
  const listen = parseHostPort(cfg.listen)!;
  const service = parseCidr(cfg.address);
  const S = service.ip;
  const table = String(cfg.routeTable);
  const proto = String(cfg.routeProtocol);
  const stateFile = cfg.stateFile ?? defaultHanetStateFile(o.host);
  const journal = new ChangeJournal(stateFile, sys, log);
  await journal.recover();

  const present = holders(await sys.ipQuery(['-4', '-o', 'addr', 'show']), S);
  const managed = new Set(cfg.interfaces.map((i) => i.name));
  for (const name of present.keys()) if (!managed.has(name)) present.delete(name);

  // The service address's own routing: a rule to a table that belongs to holdfast.
  await journal.ip(
    'rule:service',
    `rule from ${S} lookup ${table}`,
    [['rule', 'add', 'from', S, 'lookup', table, 'priority', String(cfg.rulePriority)]],
    [['rule', 'del', 'from', S, 'lookup', table, 'priority', String(cfg.rulePriority)]],
  );

  const serial = new Serial();
  let active: string | null = null;
  let closed = false;
  let viaSibling = false;
  const setVia = (via: boolean): void => {
    if (via === viaSibling) return;
    viaSibling = via;
    o.onViaSibling?.(via);
  };
  const publish = (event: Parameters<typeof channels.hanet.publish>[0]): void => {
    if (channels.hanet.hasSubscribers) channels.hanet.publish(event);
  };

  type Change = { key: string; what: string; lines: string[][]; undo: string[][] };
  /**
   * What makes `target` the one managed interface holding the service address (/32 on it; an
   * address found at start is restored where it was): reverts of earlier changes, and new changes.
   */
  const placeAddress = (target: string): { reverts: string[]; changes: Change[] } => {
    const reverts: string[] = [];
    const changes: Change[] = [];
    if (journal.has(`addr:-${target}`)) {
      reverts.push(`addr:-${target}`);
      present.set(target, 'restored');
    } else if (!present.has(target)) {
      changes.push({ key: `addr:+${target}`, what: `service address ${S} to ${target}`, lines: [['addr', 'replace', `${S}/32`, 'dev', target]], undo: [['addr', 'del', `${S}/32`, 'dev', target]] });
      present.set(target, `${S}/32`);
    }
    for (const [name, cidr] of [...present]) {
      if (name === target) continue;
      if (journal.has(`addr:+${name}`)) reverts.push(`addr:+${name}`);
      else changes.push({ key: `addr:-${name}`, what: `service address ${S} off ${name}`, lines: [['addr', 'del', cidr, 'dev', name]], undo: [['addr', 'replace', cidr, 'dev', name]] });
      present.delete(name);
    }
    return { reverts, changes };
  };

  const routeLines = (lines: string[][]): string[][] => [['route', 'flush', 'table', table], ...lines.map((l) => [...l, 'proto', proto, 'table', table])];

  const activatePublic = async (iface: string): Promise<void> => {
    const { reverts, changes } = placeAddress(iface);
    // The address first (a new one before the old one goes), then the routes, in one ip run.
    const routes: string[][] = [['route', 'replace', `${service.network}/${service.prefix}`, 'dev', iface, 'src', S]];
    if (cfg.gateway !== undefined) routes.push(['route', 'replace', 'default', 'via', cfg.gateway, 'dev', iface, 'src', S]);
    for (const key of reverts.filter((k) => k.startsWith('addr:-'))) await journal.revert(key);
    await journal.ipMany([...changes, { key: 'table', what: `routes of ${S} via ${iface}`, lines: routeLines(routes), undo: [['route', 'flush', 'table', table]] }]);
    for (const key of reverts.filter((k) => !k.startsWith('addr:-'))) await journal.revert(key);
    await journal.revert('rule:all');
    log?.info({ iface, address: S }, `hanet: service address ${S} on ${iface}, routes via ${iface}`);
    void sys.garp(iface, S, cfg.garpCount).catch((err: Error) => log?.error({ err: err.message }, `hanet: gratuitous ARP for ${S} on ${iface} failed: ${err.message}`));
  };

  const attachSibling = async (sibling: HanetSiblingConfig): Promise<void> => {
    const next = parseHostPort(sibling.address)!.host;
    const { reverts, changes } = placeAddress(sibling.via);
    for (const key of reverts.filter((k) => k.startsWith('addr:-'))) await journal.revert(key);
    // One ip run: the address on the private link, the old one off, the routes, the all-traffic rule.
    await journal.ipMany([
      ...changes,
      { key: 'table', what: `routes of ${S} via sibling ${sibling.id}`, lines: routeLines([['route', 'replace', 'default', 'via', next, 'dev', sibling.via, 'src', S]]), undo: [['route', 'flush', 'table', table]] },
      {
        key: 'rule:all',
        what: `rule lookup ${table} (all traffic via sibling ${sibling.id})`,
        lines: [['rule', 'add', 'lookup', table, 'priority', String(cfg.rulePriority + 1)]],
        undo: [['rule', 'del', 'lookup', table, 'priority', String(cfg.rulePriority + 1)]],
      },
    ]);
    for (const key of reverts.filter((k) => !k.startsWith('addr:-'))) await journal.revert(key);
    log?.warn({ sibling: sibling.id, via: sibling.via, nextHop: next }, `hanet: every public link failed; service address ${S} on ${sibling.via}, default route via sibling ${sibling.id} (${next})`);
  };

  let manager: InterfaceManager;
  const siblingsById = new Map(cfg.siblings.map((s) => [s.id, s]));
  const channel = new TransmissionAgentChannel({
    listen,
    key: o.key,
    host: o.host,
    clock,
    knownHost: (h) => siblingsById.has(h),
    onMessage: (m) => {
      if (m.kind === 'request' || m.kind === 'release') responder.onMessage(m);
      else requester.onMessage(m);
    },
    // Forged, replayed, stale or malformed: never acted upon. Logged at the 1st, 10th, 100th... of
    // each reason, so a flood costs a few lines.
    onDrop: (reason, from, count) => {
      if (Math.log10(count) % 1 === 0) log?.warn({ reason, from, count }, `hanet: dropped takeover message from ${from}: ${reason} (${count} so far)`);
    },
  });
  const responder = new TransmissionAgentResponder({
    siblings: cfg.siblings,
    journal,
    sys,
    clock,
    siblingTimeoutMs: cfg.siblingTimeoutMs,
    garpCount: cfg.garpCount,
    routeProtocol: cfg.routeProtocol,
    ...(log ? { log } : {}),
    reply: (sibling, kind, reason, m) => channel.send(parseHostPort(sibling.address)!, kind, reason, m.address, m.nextHop),
  });
  const requester = new TransmissionAgentRequester({
    address: S,
    siblings: cfg.siblings,
    requestIntervalMs: cfg.requestIntervalMs,
    keepaliveMs: cfg.keepaliveMs,
    siblingTimeoutMs: cfg.siblingTimeoutMs,
    clock,
    linkGood: (iface) => manager.snapshot().some((i) => i.name === iface && i.good),
    send: (sibling, kind) => channel.send(parseHostPort(sibling.address)!, kind, 'none', S, sibling.localAddress),
    // Queued behind whatever the manager is doing: by the time it runs the manager may have failed
    // back to a public interface (requester stopped) or the requester moved on to another sibling.
    attach: (sibling) => serial.run(async () => {
      if (closed || requester.state === 'idle' || requester.sibling?.id !== sibling.id) return;
      try {
        await attachSibling(sibling);
      } catch (err) {
        log?.error({ err: (err as Error).message, sibling: sibling.id }, `hanet: cannot point ${S} at sibling ${sibling.id}: ${(err as Error).message}`);
      }
    }),
    onRelayed: (sibling) => {
      active = sibling.via;
      setVia(true);
      log?.warn({ sibling: sibling.id }, `hanet: sibling ${sibling.id} relays this server's packets`);
      publish({ event: 'relayed', at: clock.now(), sibling: sibling.id, address: S, iface: sibling.via });
    },
    onRefused: (sibling, reason) => {
      log?.error({ sibling: sibling.id, reason }, `hanet: sibling ${sibling.id} refused to relay ${S}: ${reason}`);
      publish({ event: 'refused', at: clock.now(), sibling: sibling.id, address: S, reason });
    },
    onLost: (sibling) => {
      setVia(false);
      log?.error({ sibling: sibling.id }, `hanet: sibling ${sibling.id} went silent while relaying; asking the next one`);
      publish({ event: 'relay-lost', at: clock.now(), sibling: sibling.id, address: S });
    },
    onIsolated: () => {
      setVia(false);
      log?.error({ siblings: cfg.siblings.map((s) => s.id) }, `hanet: isolated: no public link is GOOD and no sibling relays ${S} (${cfg.siblings.length === 0 ? 'none configured' : 'all refused or silent'}); retrying`);
      publish({ event: 'isolated', at: clock.now(), address: S });
    },
  });

  const decide = (): void => {
    void serial.run(async () => {
      if (closed) return;
      const views = manager.snapshot();
      const choice = chooseActive(views, active, clock.now(), cfg.failbackHoldMs);
      if (choice.kind === 'stay') {
        manager.wakeAt(choice.holdUntil);
        return;
      }
      manager.wakeAt(null);
      if (choice.kind === 'none') {
        responder.setPublicInterface(null);
        log?.error({ interfaces: views.map((v) => v.name) }, 'hanet: no interface is GOOD');
        if (active !== null && views.find((v) => v.name === active)?.role === 'public') {
          active = null;
          requester.start();
        }
        return;
      }
      const to = views.find((v) => v.name === choice.to)!;
      const from = active;
      if (to.role === 'public') {
        try {
          await activatePublic(to.name);
        } catch (err) {
          log?.error({ err: (err as Error).message, iface: to.name }, `hanet: cannot make ${to.name} ACTIVE: ${(err as Error).message}; retrying in ${RETRY_MS} ms`);
          manager.wakeAt(clock.now() + RETRY_MS);
          return;
        }
        active = to.name;
        if (requester.state !== 'idle') {
          requester.stop();
          setVia(false);
        }
        responder.setPublicInterface(to.name);
      } else {
        // No public interface is GOOD: the transmission agent requester takes it from here.
        active = to.name;
        responder.setPublicInterface(null);
        requester.start();
      }
      log?.warn({ from, to: to.name, reason: choice.reason }, `hanet: ACTIVE interface ${from ?? '(none)'} -> ${to.name} (${choice.reason})`);
      publish({ event: 'active', at: clock.now(), iface: to.name, reason: choice.reason });
    });
  };

  const ifaces: ManagedInterface[] = cfg.interfaces.map((i) => ({
    name: i.name,
    role: i.role,
    speedMbps: i.speedMbps,
    monitors: i.monitors.map((m) => createMonitor(i.name, m, sys, clock)),
  }));
  manager = new InterfaceManager(ifaces, clock, decide);
  try {
    await channel.start();
    await manager.start();
  } catch (err) {
    manager.close();
    await channel.close();
    await journal.undoAll();
    throw err;
  }
  // A link event makes the carrier monitors of that interface look at once (still one verdict rule).
  const unwatch =
    sys.watchLinks?.((name) => {
      for (const i of ifaces) if (i.name === name) for (const m of i.monitors) if (m.kind === 'carrier') m.poke();
    }) ?? (() => {});
  decide();
  await serial.run(async () => {});
  log?.info({ active, address: S, interfaces: cfg.interfaces.map((i) => i.name), siblings: cfg.siblings.map((s) => s.id), stateFile }, 'hanet running');

  return {
    get viaSibling() {
      return viaSibling;
    },
    status: () => ({
      active,
      interfaces: manager.snapshot().map((v) => ({ name: v.name, role: v.role, good: v.good })),
      requester: requester.state,
      sibling: requester.sibling?.id ?? null,
      relaying: responder.relays(),
      channel: channel.stats(),
      responder: responder.counts(),
    }),
    close: async () => {
      if (closed) return;
      closed = true;
      unwatch();
      manager.close();
      requester.stop();
      await responder.close();
      await serial.run(async () => {});
      await channel.close();
      await journal.undoAll();
      log?.info({ stateFile }, 'hanet stopped: every change undone');
    },
  };
}
