/**
 * @module The election adverts' UDP transport between dispatchers: one socket sends every attached
 * group's adverts, sealed with the cluster key, to the group's unicast peers (host:port) and
 * optionally to a multicast group; received datagrams are authenticated, decoded, checked for
 * replay and freshness, and handed to the group's Election. Everything else is dropped and counted
 * by reason (as monitor/agent-receiver.ts does for the agents' channel); no datagram can make it
 * throw.
 *
 * Sequence numbers are kept per group on the sending side and checked per (group, sender) on the
 * receiving side, so the streams stay consistent however groups are spread over sockets. The replay
 * guard's freshness window (5 s, replay-guard.ts) asks the dispatchers' wall clocks to agree within
 * that (NTP); a restarted dispatcher's counter starts again at 1 and is accepted because its
 * timestamps are newer than any its previous run sent.
 *
 * Multicast is best effort: it needs a route for 224.0.0.0/4 on the chosen interface (loopback
 * multicast works on Linux with `interfaceAddress: 127.0.0.1`, but not in every container or on
 * every OS). Unicast peers always work and are what the tests rely on. Multicast loopback stays on,
 * so that dispatchers on one host hear each other; a node's own adverts come back and are dropped
 * ('self').
 */
import type dgram from 'node:dgram';
import type { HostPort } from '../core/address.js';
import { formatHostPort } from '../core/address.js';
import type { Clock } from '../core/clock.js';
import { channels, type WireDropEvent } from '../core/diagnostics.js';
import { ListenError } from '../core/errors.js';
import { bindUdp, boundAddress, UdpEndpoint } from '../core/udp-endpoint.js';
import { decodeElectionAdvert, encodeElectionAdvert, type AdvertFields, type ElectionAdvert } from '../wire/election-advert.js';
import { MessageType, open, seal, type WireReject } from '../wire/envelope.js';
import { ReplayGuard } from '../wire/replay-guard.js';
import { unwrapTimestamp, wireTimestamp } from '../wire/timestamp.js';

/**
 * The largest datagram looked at. A real advert is 37 bytes; anything bigger is dropped as
 * 'malformed' before the HMAC is computed.
 */
export const MAX_ADVERT_DATAGRAM_BYTES = 256;
/** Multicast adverts stay on the link, as VRRP's do (RFC 5798 §5.1.1.3: TTL 255 checked, link-local). */
export const MULTICAST_TTL = 1;

export interface MulticastOptions {
  /** Group address (224.0.0.0/4) and port every member listens on. */
  readonly group: HostPort;
  /** The local interface address to join and send on (e.g. 127.0.0.1); default: the kernel's choice. */
  readonly interfaceAddress?: string;
}

export interface ElectionTransportOptions {
  /** Where this dispatcher receives unicast adverts (port 0 picks a free port). */
  readonly listen: HostPort;
  /** The cluster key (wire/cluster-key.ts). */
  readonly key: Buffer;
  /** u16: this dispatcher's id, the `sender` of its adverts; adverts carrying it are its own. */
  readonly node: number;
  readonly clock: Clock;
  readonly multicast?: MulticastOptions;
}

/** How a group receives adverts and reaches its peers. */
export interface GroupAttachment {
  /** u16 group id. */
  readonly groupId: number;
  /** Unicast peers: the other dispatchers' election `listen` addresses. */
  readonly peers: readonly HostPort[];
  /** An authentic, fresh, new advert of this group from another dispatcher. */
  readonly receive: (advert: ElectionAdvert, from: HostPort) => void;
}

/** Sends one advert of the group (adds seq and timestamp); never throws. */
export type SendAdvert = (fields: AdvertFields) => void;

export type ElectionDropReason = WireReject | 'unknown-group' | 'self';
export type ElectionTransportStats = Record<ElectionDropReason | 'accepted' | 'sent' | 'sendErrors', number>;

const COUNTERS: readonly (keyof ElectionTransportStats)[] = [
  'accepted',
  'truncated',
  'bad-mac',
  'version',
  'type',
  'malformed',
  'replay',
  'stale',
  'unknown-host',
  'unknown-group',
  'self',
  'sent',
  'sendErrors',
];

interface Group {
  readonly attachment: GroupAttachment;
  readonly guard: ReplayGuard;
  seq: number;
}

/**
 * Per datagram, in this order: size → `open()` (MAC, version, type) → type is ElectionAdvert →
 * decode → group attached ('unknown-group') → not this node's own ('self') → the group's replay
 * guard (freshness of the unwrapped timestamp, sequence window per sender) → the group's receive().
 * Authentic senders only reach a guard, so its memory is bounded by the dispatchers that hold the key.
 */
export class ElectionTransport {
  private readonly endpoint = new UdpEndpoint('election transport', () => this.bindAll());
  /** Set once bound: multicast adverts are sent only when the group socket is up. */
  private mcast: dgram.Socket | null = null;
  private readonly groups = new Map<number, Group>();
  private readonly counts: ElectionTransportStats;

  constructor(private readonly opts: ElectionTransportOptions) {
    if (!Number.isInteger(opts.node) || opts.node < 0 || opts.node > 65535) throw new RangeError(`node: expected u16, received ${opts.node}`);
    this.counts = Object.fromEntries(COUNTERS.map((r) => [r, 0])) as ElectionTransportStats;
  }

  /** Binds the socket(s); resolves with the unicast address (the real port when 0 was asked). */
  start(): Promise<HostPort> {
    return this.endpoint.start();
  }

  /**
   * Attaches a group: its adverts are delivered to `receive`, and the returned function sends
   * this node's adverts to its peers. One attachment per group id.
   */
  attach(attachment: GroupAttachment): SendAdvert {
    if (this.groups.has(attachment.groupId)) throw new RangeError(`group ${attachment.groupId} is already attached`);
    const group: Group = { attachment, guard: new ReplayGuard(), seq: 0 };
    this.groups.set(attachment.groupId, group);
    return (fields) => this.send(group, fields);
  }

  /** Stops delivering and sending a group's adverts. */
  detach(groupId: number): void {
    this.groups.delete(groupId);
  }

  /** Datagrams accepted, dropped by reason, sent and failed to send so far (a copy). */
  stats(): ElectionTransportStats {
    return { ...this.counts };
  }

  /** Stops receiving and sending; idempotent. */
  close(): Promise<void> {
    const closing = this.endpoint.close();
    this.mcast = null;
    return closing;
  }

  private async bindAll(): Promise<{ address: HostPort; sockets: dgram.Socket[] }> {
    const { listen, multicast } = this.opts;
    const socket = await bindUdp(listen, false);
    let mcast: dgram.Socket | null = null;
    if (multicast) {
      try {
        // Bound to the group address itself, so unicast datagrams to the port never land here.
        mcast = await bindUdp(multicast.group, true);
        mcast.addMembership(multicast.group.host, multicast.interfaceAddress);
        if (multicast.interfaceAddress !== undefined) socket.setMulticastInterface(multicast.interfaceAddress);
        socket.setMulticastTTL(MULTICAST_TTL);
        socket.setMulticastLoopback(true);
      } catch (err) {
        socket.close();
        mcast?.close();
        if (err instanceof ListenError) throw err;
        throw new ListenError(`udp multicast ${formatHostPort(multicast.group)}`, { cause: err });
      }
      mcast.on('message', (msg, rinfo) => this.receive(msg, rinfo));
    }
    socket.on('message', (msg, rinfo) => this.receive(msg, rinfo));
    if (!this.endpoint.closed) this.mcast = mcast;
    return { address: boundAddress(socket), sockets: mcast === null ? [socket] : [socket, mcast] };
  }

  private send(group: Group, fields: AdvertFields): void {
    const socket = this.endpoint.socket;
    if (socket === null || this.endpoint.closed) {
      this.counts.sendErrors++;
      return;
    }
    group.seq = (group.seq + 1) >>> 0;
    const msg = seal(
      MessageType.ElectionAdvert,
      encodeElectionAdvert({ ...fields, seq: group.seq, timestamp: wireTimestamp(this.opts.clock.wallNow()) }),
      this.opts.key,
    );
    const done = (err: Error | null): void => {
      if (err) this.counts.sendErrors++;
    };
    for (const peer of group.attachment.peers) {
      this.counts.sent++;
      socket.send(msg, peer.port, peer.host, done);
    }
    const mc = this.opts.multicast;
    if (mc && this.mcast !== null) {
      this.counts.sent++;
      socket.send(msg, mc.group.port, mc.group.host, done);
    }
  }

  private receive(msg: Buffer, from: dgram.RemoteInfo): void {
    if (this.endpoint.closed) return;
    if (msg.length > MAX_ADVERT_DATAGRAM_BYTES) return this.drop('malformed', from);
    const opened = open(msg, this.opts.key);
    if (!opened.ok) return this.drop(opened.reason, from);
    if (opened.type !== MessageType.ElectionAdvert) return this.drop('type', from);
    const a = decodeElectionAdvert(opened.body);
    if (!a) return this.drop('malformed', from);
    const group = this.groups.get(a.group);
    if (group === undefined) return this.drop('unknown-group', from);
    if (a.sender === this.opts.node) return this.drop('self', from);
    const nowWall = this.opts.clock.wallNow();
    const verdict = group.guard.check(a.sender, MessageType.ElectionAdvert, a.seq, unwrapTimestamp(a.timestamp, nowWall), nowWall);
    if (verdict !== 'ok') return this.drop(verdict, from);
    this.counts.accepted++;
    try {
      group.attachment.receive(a, { host: from.address, port: from.port });
    } catch (error) {
      // The election's bug, not the network's: surface it without breaking the socket handler.
      queueMicrotask(() => {
        throw error;
      });
    }
  }

  private drop(reason: ElectionDropReason, from: dgram.RemoteInfo): void {
    this.counts[reason]++;
    // unknown-group and self are authentic adverts (a configuration mismatch, multicast loopback), not attacks.
    if (reason === 'unknown-group' || reason === 'self') return;
    if (channels.wireDrop.hasSubscribers) {
      const event: WireDropEvent = { source: 'election', reason, from: formatHostPort({ host: from.address, port: from.port }) };
      channels.wireDrop.publish(event);
    }
  }
}
