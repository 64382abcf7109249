/**
 * @module HANet's transmission agent responder (§2.3, §3.5): on the sibling, it takes over the
 * packet transmission of a server whose public links failed. For each authentic request it checks
 * that the address is the one configured for that sibling and that this server has a GOOD public
 * interface itself, then enables IP forwarding, adds a host route to the server's address via the
 * private link, answers ARP for that address on its public interface (proxy ARP, with no proxy
 * delay) and announces it with gratuitous ARP, and acknowledges. Every change is journaled and
 * undone when the server releases the job, when it goes silent for siblingTimeoutMs, when this
 * server's own public link fails (then it refuses), and on close.
 */
import type { Logger } from '../admin/log.js';
import type { Clock, TimerHandle } from '../core/clock.js';
import { channels } from '../core/diagnostics.js';
import type { HanetSiblingConfig } from '../config/agent-schema.js';
import { Serial } from '../takeover/identity-takeover.js';
import type { TransmissionAgentMessage, TransmissionAgentReason } from '../wire/transmission-agent.js';
import type { ChangeJournal } from './change-journal.js';
import type { HostSystem } from './host-system.js';

export interface ResponderOptions {
  siblings: readonly HanetSiblingConfig[];
  journal: ChangeJournal;
  sys: HostSystem;
  clock: Clock;
  siblingTimeoutMs: number;
  garpCount: number;
  routeProtocol: number;
  log?: Logger;
  /** Answers a sibling (ack or refuse). */
  reply(sibling: HanetSiblingConfig, kind: 'ack' | 'refuse', reason: TransmissionAgentReason, m: TransmissionAgentMessage): void;
}

interface Relay {
  sibling: HanetSiblingConfig;
  address: string;
  nextHop: string;
  /** The public interface the address is proxied on. */
  publicIface: string;
  lastHeard: number;
  /** Its teardown is queued. */
  ending: boolean;
}

export type ResponderCounts = Record<'relays' | 'refused' | 'released' | 'silent', number>;

export class TransmissionAgentResponder {
  readonly #o: ResponderOptions;
  readonly #relays = new Map<number, Relay>();
  readonly #serial = new Serial();
  #publicIface: string | null = null;
  #sweep: TimerHandle | null = null;
  #closed = false;
  readonly #counts: ResponderCounts = { relays: 0, refused: 0, released: 0, silent: 0 };

  constructor(o: ResponderOptions) {
    this.#o = o;
    this.#sweep = o.clock.setInterval(() => this.#sweepSilent(), Math.max(10, Math.floor(o.siblingTimeoutMs / 4)));
  }

  counts(): ResponderCounts {
    return { ...this.#counts };
  }

  /** Addresses relayed now, by sibling id. */
  relays(): { sibling: number; address: string; iface: string }[] {
    return [...this.#relays.values()].map((r) => ({ sibling: r.sibling.id, address: r.address, iface: r.publicIface }));
  }

  /**
   * This server's ACTIVE public interface changed (null: none is GOOD). Relays move with it; with
   * none, every relay is undone and its server told so it can ask another sibling.
   */
  setPublicInterface(iface: string | null): void {
    this.#publicIface = iface;
    for (const relay of [...this.#relays.values()]) {
      if (relay.publicIface === iface) continue;
      void this.#serial.run(async () => {
        await this.#teardown(relay, iface === null ? 'own public link failed' : `public interface moved to ${iface}`);
        if (iface === null) this.#o.reply(relay.sibling, 'refuse', 'no-public-link', { kind: 'refuse', reason: 'no-public-link', host: 0, seq: 0, timestamp: 0, address: relay.address, nextHop: relay.nextHop });
      });
    }
  }

  onMessage(m: TransmissionAgentMessage): void {
    if (this.#closed) return;
    const sibling = this.#o.siblings.find((s) => s.id === m.host);
    if (!sibling) return;
    if (m.kind === 'release') {
      const relay = this.#relays.get(sibling.id);
      if (relay && relay.address === m.address) {
        this.#counts.released++;
        void this.#serial.run(() => this.#teardown(relay, 'released: its public link is back'));
      }
      return;
    }
    if (m.kind !== 'request') return;
    if (m.address !== sibling.serviceAddress) return this.#refuse(sibling, 'not-allowed', m, `address ${m.address} is not sibling ${sibling.id}'s serviceAddress ${sibling.serviceAddress}`);
    const iface = this.#publicIface;
    if (iface === null) return this.#refuse(sibling, 'no-public-link', m, 'this server has no GOOD public interface either');
    const relay = this.#relays.get(sibling.id);
    if (relay && relay.address === m.address && relay.nextHop === m.nextHop && relay.publicIface === iface) {
      relay.lastHeard = this.#o.clock.now();
      this.#o.reply(sibling, 'ack', 'none', m);
      return;
    }
    void this.#serial.run(async () => {
      if (this.#closed) return;
      const again = this.#relays.get(sibling.id);
      if (again && again.address === m.address && again.nextHop === m.nextHop && again.publicIface === this.#publicIface) {
        again.lastHeard = this.#o.clock.now();
        this.#o.reply(sibling, 'ack', 'none', m);
        return;
      }
      if (again) await this.#teardown(again, 'replaced by a new request');
      const publicIface = this.#publicIface;
      if (publicIface === null) return this.#refuse(sibling, 'no-public-link', m, 'this server has no GOOD public interface either');
      try {
        await this.#setup(sibling, m, publicIface);
      } catch (err) {
        this.#o.log?.error({ err: String(err), sibling: sibling.id, address: m.address }, `hanet: cannot relay ${m.address} for sibling ${sibling.id}: ${(err as Error).message}`);
        return;
      }
      this.#o.reply(sibling, 'ack', 'none', m);
    });
  }

  /** Undoes every relay (the journal's undoAll covers a crash between). */
  async close(): Promise<void> {
    this.#closed = true;
    this.#sweep?.cancel();
    await this.#serial.run(async () => {
      for (const relay of [...this.#relays.values()]) await this.#teardown(relay, 'agent stopping');
    });
  }

  #refuse(sibling: HanetSiblingConfig, reason: TransmissionAgentReason, m: TransmissionAgentMessage, why: string): void {
    this.#counts.refused++;
    this.#o.log?.warn({ sibling: sibling.id, address: m.address, reason }, `hanet: refused to relay ${m.address} for sibling ${sibling.id}: ${why}`);
    if (channels.hanet.hasSubscribers) channels.hanet.publish({ event: 'refused', at: this.#o.clock.now(), sibling: sibling.id, address: m.address, reason });
    this.#o.reply(sibling, 'refuse', reason, m);
  }

  async #setup(sibling: HanetSiblingConfig, m: TransmissionAgentMessage, publicIface: string): Promise<void> {
    const j = this.#o.journal;
    const { address, nextHop } = m;
    const proto = String(this.#o.routeProtocol);
    // HANet §3.5: forwarding, the route to the server, proxy ARP, then the announcement. The
    // gratuitous ARP is started first: arping takes tens of ms to start, the route and proxy entry
    // (one ip batch) are in place well before its first packet leaves.
    j.sysctl('net.ipv4.ip_forward', '1');
    // Broadcast ARP requests for a proxied address are otherwise answered after up to 0.8 s (proxy_delay).
    j.sysctl(`net.ipv4.neigh.${publicIface}.proxy_delay`, '0');
    const garp = this.#o.sys.garp(publicIface, address, this.#o.garpCount);
    garp.catch((err: Error) => this.#o.log?.error({ err: err.message }, `hanet: gratuitous ARP for ${address} failed: ${err.message}`));
    await j.ipMany([
      {
        key: `relay:${sibling.id}:route`,
        what: `route ${address}/32 via ${nextHop} dev ${sibling.via} (relay for sibling ${sibling.id})`,
        lines: [['route', 'replace', `${address}/32`, 'via', nextHop, 'dev', sibling.via, 'proto', proto]],
        undo: [['route', 'del', `${address}/32`, 'via', nextHop, 'dev', sibling.via, 'proto', proto]],
      },
      {
        key: `relay:${sibling.id}:proxy`,
        what: `proxy ARP for ${address} on ${publicIface} (relay for sibling ${sibling.id})`,
        lines: [['neigh', 'replace', 'proxy', address, 'dev', publicIface]],
        undo: [['neigh', 'del', 'proxy', address, 'dev', publicIface]],
      },
    ]);
    const relay: Relay = { sibling, address, nextHop, publicIface, lastHeard: this.#o.clock.now(), ending: false };
    this.#relays.set(sibling.id, relay);
    this.#counts.relays++;
    this.#o.log?.warn({ sibling: sibling.id, address, via: sibling.via, iface: publicIface }, `hanet: relaying ${address} for sibling ${sibling.id} (its public links failed) via ${sibling.via}, answering ARP on ${publicIface}`);
    if (channels.hanet.hasSubscribers) channels.hanet.publish({ event: 'relay-start', at: this.#o.clock.now(), sibling: sibling.id, address, iface: publicIface });
  }

  async #teardown(relay: Relay, why: string): Promise<void> {
    if (this.#relays.get(relay.sibling.id) !== relay) return;
    this.#relays.delete(relay.sibling.id);
    const j = this.#o.journal;
    await j.revert(`relay:${relay.sibling.id}:proxy`);
    await j.revert(`relay:${relay.sibling.id}:route`);
    if (this.#relays.size === 0) {
      await j.revert(`sysctl:net.ipv4.neigh.${relay.publicIface}.proxy_delay`);
      await j.revert('sysctl:net.ipv4.ip_forward');
    }
    this.#o.log?.warn({ sibling: relay.sibling.id, address: relay.address, why }, `hanet: stopped relaying ${relay.address} for sibling ${relay.sibling.id}: ${why}`);
    if (channels.hanet.hasSubscribers) channels.hanet.publish({ event: 'relay-stop', at: this.#o.clock.now(), sibling: relay.sibling.id, address: relay.address, reason: why });
  }

  #sweepSilent(): void {
    const now = this.#o.clock.now();
    for (const relay of [...this.#relays.values()]) {
      if (relay.ending || now - relay.lastHeard < this.#o.siblingTimeoutMs) continue;
      relay.ending = true;
      this.#counts.silent++;
      void this.#serial.run(() => this.#teardown(relay, `silent for ${Math.round(now - relay.lastHeard)} ms`));
    }
  }
}
