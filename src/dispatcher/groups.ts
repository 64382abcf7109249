/**
 * @module The replicated dispatcher's groups (issue 7), as the composition root runs them: one
 * Election per configured group, its adverts on one ElectionTransport per distinct `listen`
 * address, and the group's identity takeover driven by the election — master: take the VIP and bind
 * the group's services on it; backup: unbind them and give the VIP up. A dispatcher is master of
 * some groups and backup of others at once (dual-role). It owns the order of those steps and the
 * groups' status; the services' sockets are the composition root's (`VipBind`s it hands over).
 *
 * Takeover modes (groups[].takeover):
 * - loopback: LoopbackTakeover binds the services on the 127/8 VIP; a port still held by a stalled
 *   old master is retried every 5 ms until it steps down.
 * - linux: LinuxTakeover adds the VIP to the interface and announces it (gratuitous ARP), THEN the
 *   services bind on it (binding a non-local address would need ip_nonlocal_bind or IP_FREEBIND);
 *   demotion unbinds them, then removes the VIP. At start the VIP is removed from the interface in
 *   case a crash of this dispatcher left it there (keepalived does the same): a restarted backup
 *   must not answer ARP for it.
 */
import { execFile } from 'node:child_process';
import { parseHostPort } from '../core/address.js';
import type { Clock } from '../core/clock.js';
import type { Config, GroupConfig } from '../config/schema.js';
import {
  createStateReplicator,
  Election,
  ElectionTransport,
  vipOf,
  type ElectionEvent,
  type ElectionTransportStats,
  type ReplicatedService,
  type ReplicatorStats,
  type StateReplicator,
} from '../replication/index.js';
import { LinuxTakeover, LoopbackTakeover, Serial, type IdentityTakeover, type VipBind, type VipRelease } from '../takeover/index.js';
import type { GroupStatus, Logger } from '../admin/index.js';

export type { VipBind, VipRelease };

/** How long close() waits after the priority-0 adverts before closing the election sockets. */
const RESIGN_FLUSH_MS = 20;

export interface Groups {
  status(): GroupStatus[];
  transportStats(): ElectionTransportStats[];
  replicationStats(): ReplicatorStats[];
  /**
   * Planned switchover of group `name`'s VIP (admin API): this master resigns (priority-0 advert,
   * preemption off so that it does not take the VIP straight back) and the best backup takes over
   * after its Skew_Time. null: no such group; 'not-master': nothing to hand over from here.
   */
  switchover(name: string): 'resigned' | 'not-master' | null;
  /** Stops the elections (a master sends its priority-0 advert), releases every VIP, closes the transports. */
  close(): Promise<void>;
}

interface Running {
  readonly config: GroupConfig;
  readonly election: Election;
  readonly takeover: IdentityTakeover & { readonly acquired: boolean };
  /** The state replicator of the group's `listen` (null: replicateState off). */
  readonly replicator: StateReplicator | null;
  since: number;
  /** The election resigned because the takeover failed (its preempt is off until one succeeds). */
  resignedOnFailure: boolean;
}

/** Linux mode: the VIP first, then the services on it; the reverse on release. */
class LinuxServiceTakeover implements IdentityTakeover {
  readonly #vip: LinuxTakeover;
  readonly #address: string;
  readonly #binds: readonly VipBind[];
  readonly #serial = new Serial();
  #held: VipRelease[] = [];
  #acquired = false;

  constructor(vip: LinuxTakeover, address: string, binds: readonly VipBind[]) {
    this.#vip = vip;
    this.#address = address;
    this.#binds = binds;
  }

  get acquired(): boolean {
    return this.#acquired;
  }

  acquire(): Promise<void> {
    return this.#serial.run(async () => {
      if (this.#acquired) return;
      try {
        await this.#vip.acquire();
        while (this.#held.length < this.#binds.length) this.#held.push(await this.#binds[this.#held.length]!(this.#address));
      } catch (err) {
        await this.#undo();
        await this.#vip.release().catch(() => {});
        throw err;
      }
      this.#acquired = true;
    });
  }

  release(): Promise<void> {
    return this.#serial.run(async () => {
      this.#acquired = false;
      const failures = await this.#undo();
      await this.#vip.release();
      if (failures.length > 0) throw failures[0];
    });
  }

  async #undo(): Promise<unknown[]> {
    const failures: unknown[] = [];
    while (this.#held.length > 0) {
      try {
        await this.#held.pop()!();
      } catch (err) {
        failures.push(err);
      }
    }
    return failures;
  }
}

/** `ip addr del` of a VIP a crash may have left on the interface; whatever it answers is fine. */
function removeStaleVip(g: GroupConfig): Promise<void> {
  const { address, prefix } = vipOf(g);
  return new Promise((resolve) => {
    execFile('ip', ['-4', 'addr', 'del', `${address}/${prefix}`, 'dev', g.interface!], { timeout: 5000 }, () => resolve());
  });
}

/**
 * Starts every configured group: transports bound, elections started in Backup (the VIP is taken
 * only once an election says master). `binds(service)` gives the bindings of one service's
 * listeners, in order (stream listener, then datagram socket on the same port).
 */
export interface GroupService {
  /** The bindings of the service's listeners, in order (stream listener, then datagram socket on its port). */
  readonly binds: readonly VipBind[];
  /** Its session state, for replication. */
  readonly state: ReplicatedService;
}

export async function startGroups(
  config: Config,
  lookup: (service: string) => GroupService,
  key: Buffer,
  clock: Clock,
  logger?: Logger,
): Promise<Groups> {
  if (config.groups.length === 0 || config.dispatcher?.id === undefined) {
    return { status: () => [], transportStats: () => [], replicationStats: () => [], switchover: () => null, close: async () => {} };
  }
  const node = config.dispatcher.id;
  const transports = new Map<string, ElectionTransport>();
  const running: Running[] = [];
  /** Linux-mode VIPs: their packet sockets close with the groups. */
  const linuxVips: LinuxTakeover[] = [];
  // One replicator per election `listen` (its TCP twin), carrying every replicated group's services
  // there, in configuration order (the same order on every dispatcher of the group).
  const replicators = new Map<string, StateReplicator>();
  for (const g of config.groups) {
    if (!g.replicateState || replicators.has(g.listen)) continue;
    const same = config.groups.filter((x) => x.listen === g.listen && x.replicateState);
    const peers = [...new Set(same.flatMap((x) => x.peers))].map((p) => parseHostPort(p)!);
    // The replicator's epoch: the highest any of its groups' elections knows (frames from a sender
    // behind it are refused; state-replicator.ts).
    const epoch = (): number => running.reduce((m, r) => (r.config.listen === g.listen && r.election.epoch > m ? r.election.epoch : m), 0);
    replicators.set(
      g.listen,
      createStateReplicator({ id: node, listen: parseHostPort(g.listen)!, peers, key, services: same.flatMap((x) => x.services.map((n) => lookup(n).state)), clock, epoch, flushMs: Math.min(...same.map((x) => x.replicationFlushMs)) }),
    );
  }
  try {
    for (const r of replicators.values()) await r.start();
    for (const g of config.groups) {
      let transport = transports.get(g.listen);
      if (!transport) {
        const mc = g.multicast;
        const group = mc ? parseHostPort(mc.group) : null;
        transport = new ElectionTransport({
          listen: parseHostPort(g.listen)!,
          key,
          node,
          clock,
          ...(group ? { multicast: { group, ...(mc?.interface ? { interfaceAddress: mc.interface } : {}) } } : {}),
        });
        transports.set(g.listen, transport);
        await transport.start();
      }
      const serviceBinds = g.services.flatMap((s) => lookup(s).binds);
      let takeover: Running['takeover'];
      if (g.takeover === 'loopback') {
        takeover = new LoopbackTakeover({ vip: g.vip, binds: serviceBinds, clock });
      } else {
        const { address, prefix } = vipOf(g);
        await removeStaleVip(g);
        const vip = new LinuxTakeover({
          vip: address,
          prefix,
          interface: g.interface!,
          garpCount: g.garpCount,
          garpDelayMs: g.garpDelayMs,
          garp: g.garp,
          clock,
          onError: (err) => logger?.warn({ group: g.name, err: err.message }, 'gratuitous ARP failed'),
        });
        const a = vip.announcer;
        if (a.via === 'packet-socket') logger?.info({ group: g.name, interface: g.interface }, `group ${g.name}: gratuitous ARP through a packet socket`);
        else logger?.warn({ group: g.name, interface: g.interface, reason: a.reason }, `group ${g.name}: gratuitous ARP through arping (${a.reason})`);
        linuxVips.push(vip);
        takeover = new LinuxServiceTakeover(vip, address, serviceBinds);
      }
      let election: Election | null = null;
      const send = transport.attach({
        groupId: g.id,
        peers: g.peers.map((p) => parseHostPort(p)!),
        receive: (advert) => election?.receive(advert),
      });
      election = new Election({ group: g.name, groupId: g.id, node, priority: g.priority, intervalMs: g.advertIntervalMs, preempt: g.preempt, clock, send });
      const r: Running = { config: g, election, takeover, replicator: replicators.get(g.listen) ?? null, since: clock.wallNow(), resignedOnFailure: false };
      election.on((e) => onState(r, e));
      running.push(r);
    }
  } catch (err) {
    for (const v of linuxVips) v.close();
    await Promise.all([...transports.values()].map((t) => t.close()));
    await Promise.all([...replicators.values()].map((r) => r.close()));
    throw err;
  }

  function onState(r: Running, e: ElectionEvent): void {
    r.since = clock.wallNow();
    logger?.info({ group: e.group, state: e.type, epoch: e.epoch, reason: e.reason, master: e.master }, `group ${e.group}: ${e.type}`);
    if (e.type === 'master') {
      // The state peers replicated here becomes this master's own before the first packet arrives.
      r.replicator?.adopt();
      r.takeover.acquire().then(
        () => {
          if (!r.takeover.acquired) return;
          if (r.resignedOnFailure) {
            r.resignedOnFailure = false;
            r.election.setPreempt(r.config.preempt);
          }
          logger?.info({ group: e.group, vip: r.config.vip, epoch: e.epoch }, `group ${e.group}: VIP taken`);
        },
        (err: unknown) => {
          logger?.error({ group: e.group, vip: r.config.vip, err: (err as Error).message }, `group ${e.group}: VIP takeover failed`);
          // A master that cannot answer on the VIP must not keep advertising: it resigns (priority 0)
          // so that a backup takes over after its Skew_Time. resign() leaves preempt off until a
          // takeover succeeds (no preempt-fail-resign loop); alone, this node becomes master again
          // after a Master_Down_Interval and retries.
          if (r.election.state === 'master' && r.election.epoch === e.epoch) r.resignedOnFailure = r.election.resign();
        },
      );
    } else {
      // Backup: its own state is no longer the truth — it stops streaming it, unless it is still
      // master of another group carried by the same replicator.
      if (r.replicator !== null && !running.some((x) => x !== r && x.replicator === r.replicator && x.election.state === 'master')) r.replicator.demote();
      r.takeover.release().then(
        () => logger?.info({ group: e.group, vip: r.config.vip }, `group ${e.group}: VIP released`),
        (err: unknown) => logger?.error({ group: e.group, vip: r.config.vip, err: (err as Error).message }, `group ${e.group}: VIP release failed`),
      );
    }
  }

  for (const [listen, r] of replicators) {
    r.onSynced(null, (e) => logger?.info({ listen, peer: e.peer, sessions: e.sessions, flows: e.flows, ms: e.ms }, 'replicated state synced'));
  }
  for (const r of running) r.election.start();

  let closing: Promise<void> | null = null;
  return {
    status: () =>
      running.map((r) => ({
        name: r.config.name,
        id: r.config.id,
        vip: r.config.vip,
        takeover: r.config.takeover,
        state: r.election.state,
        epoch: r.election.epoch,
        since: r.since,
        master: r.election.master,
        priority: r.election.priority,
        vipHeld: r.takeover.acquired,
      })),
    transportStats: () => [...transports.values()].map((t) => t.stats()),
    replicationStats: () => [...replicators.values()].map((r) => r.stats()),
    switchover(name) {
      const r = running.find((x) => x.config.name === name);
      if (!r) return null;
      // resign() turns preemption off even on a backup: only a master is asked.
      if (r.election.state !== 'master') return 'not-master';
      return r.election.resign() ? 'resigned' : 'not-master';
    },
    close() {
      closing ??= (async () => {
        for (const r of running) r.election.stop();
        await Promise.allSettled(running.map((r) => r.takeover.release()));
        for (const v of linuxVips) v.close();
        // Lets the priority-0 adverts leave before their sockets close.
        await new Promise<void>((resolve) => clock.setTimeout(resolve, RESIGN_FLUSH_MS));
        await Promise.all([...transports.values()].map((t) => t.close()));
        await Promise.all([...replicators.values()].map((r) => r.close()));
      })();
      return closing;
    },
  };
}
