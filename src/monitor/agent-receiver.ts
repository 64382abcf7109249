/**
 * @module The dispatcher's end of the agents' UDP channel (SARA III.E and III.G: "exchanged over
 * UDP channels established between the failure detector process and the health monitor process"):
 * one socket receives availability announcements and load vectors, authenticates, decodes and
 * de-duplicates them, and hands the survivors to its handlers. Everything else is dropped and
 * counted by reason; no datagram can make it throw.
 */
import type dgram from 'node:dgram';
import type { HostPort } from '../core/address.js';
import { formatHostPort } from '../core/address.js';
import type { Clock } from '../core/clock.js';
import { channels } from '../core/diagnostics.js';
import type { WireDropEvent } from '../core/diagnostics.js';
import { bindUdp, boundAddress, UdpEndpoint } from '../core/udp-endpoint.js';
import { decodeAvailability } from '../wire/availability.js';
import type { Availability } from '../wire/availability.js';
import { MessageType, open } from '../wire/envelope.js';
import type { WireReject } from '../wire/envelope.js';
import { decodeLoadVector } from '../wire/load-vector.js';
import type { LoadVector } from '../wire/load-vector.js';
import { ReplayGuard } from '../wire/replay-guard.js';
import { unwrapTimestamp } from '../wire/timestamp.js';

/**
 * The largest datagram looked at. Real messages are 28 (availability) and 39 (load vector) bytes;
 * anything bigger is dropped as 'malformed' before the HMAC is computed, so a flood of large
 * datagrams costs a length check each, not a hash over up to 64 KiB.
 */
export const MAX_DATAGRAM_BYTES = 512;

export interface AgentHandlers {
  /** An authentic, fresh, new availability announcement; `now` is `Clock.now()` at receipt. */
  availability(host: number, a: Availability, now: number): void;
  /** An authentic, fresh, new load vector; `now` is `Clock.now()` at receipt. */
  load(host: number, v: LoadVector, now: number): void;
  /** Whether `host` is the Host_Identity of a configured backend's agent. */
  knownHost(host: number): boolean;
}

export type ReceiverStats = Record<WireReject | 'accepted', number>;

const REASONS: readonly (WireReject | 'accepted')[] = ['accepted', 'truncated', 'bad-mac', 'version', 'type', 'malformed', 'replay', 'stale', 'unknown-host'];

/**
 * Per datagram, in this order (each step cheaper to fail than the next is to run):
 * size ≤ MAX_DATAGRAM_BYTES → `open()` (MAC, version, type) → decode by type → `knownHost` → the
 * replay guard (freshness of the unwrapped timestamp, sequence window) → the handler. The guard is
 * asked only about known hosts, so forged-but-authentic host ids cannot grow its table. For a
 * planned-failure announcement the receive time stands in for the timestamp (which is the future
 * failure time), as the wire contract says.
 *
 * Handlers are the dispatcher's own code: if one throws, that is a bug, and it surfaces as an
 * uncaught exception from a microtask (as HealthMonitor's listeners do) rather than being swallowed;
 * the receiver's counters and socket are unaffected.
 */
export class AgentReceiver {
  private readonly endpoint: UdpEndpoint;
  private readonly guard = new ReplayGuard();
  private readonly counts: ReceiverStats;

  constructor(
    private readonly listen: HostPort,
    private readonly key: Buffer,
    private readonly clock: Clock,
    private readonly handlers: AgentHandlers,
  ) {
    this.counts = Object.fromEntries(REASONS.map((r) => [r, 0])) as ReceiverStats;
    this.endpoint = new UdpEndpoint('agent receiver', async () => {
      const socket = await bindUdp(this.listen);
      socket.on('message', (msg, rinfo) => this.receive(msg, rinfo));
      return { address: boundAddress(socket), sockets: [socket] };
    });
  }

  /** Binds the socket; resolves with the bound address (the real port when 0 was asked). */
  start(): Promise<HostPort> {
    return this.endpoint.start();
  }

  /** Datagrams accepted and dropped so far, by reason (a copy). */
  stats(): ReceiverStats {
    return { ...this.counts };
  }

  /** Stops receiving; datagrams still queued are ignored. Idempotent. */
  close(): Promise<void> {
    return this.endpoint.close();
  }

  private receive(msg: Buffer, from: dgram.RemoteInfo): void {
    if (this.endpoint.closed) return;
    if (msg.length > MAX_DATAGRAM_BYTES) return this.drop('malformed', from);
    const opened = open(msg, this.key);
    if (!opened.ok) return this.drop(opened.reason, from);
    const nowWall = this.clock.wallNow();
    if (opened.type === MessageType.Availability) {
      const a = decodeAvailability(opened.body);
      if (!a) return this.drop('malformed', from);
      const stamp = a.flag === 'planned-failure' ? nowWall : unwrapTimestamp(a.timestamp, nowWall);
      if (!this.admit(a.host, opened.type, a.seq, stamp, nowWall, from)) return;
      this.deliver(() => this.handlers.availability(a.host, a, this.clock.now()));
    } else if (opened.type === MessageType.LoadVector) {
      const v = decodeLoadVector(opened.body);
      if (!v) return this.drop('malformed', from);
      if (!this.admit(v.host, opened.type, v.seq, unwrapTimestamp(v.timestamp, nowWall), nowWall, from)) return;
      this.deliver(() => this.handlers.load(v.host, v, this.clock.now()));
    } else {
      // Authentic but not for this socket (a sibling's HANet message, an election advert).
      this.drop('type', from);
    }
  }

  /** knownHost, then the replay guard; counts the message as accepted or dropped. */
  private admit(host: number, type: MessageType, seq: number, stampWall: number, nowWall: number, from: dgram.RemoteInfo): boolean {
    let known: boolean;
    try {
      known = this.handlers.knownHost(host);
    } catch (error) {
      this.rethrow(error);
      known = false;
    }
    if (!known) {
      this.drop('unknown-host', from);
      return false;
    }
    const verdict = this.guard.check(host, type, seq, stampWall, nowWall);
    if (verdict !== 'ok') {
      this.drop(verdict, from);
      return false;
    }
    this.counts.accepted++;
    return true;
  }

  private deliver(handler: () => void): void {
    try {
      handler();
    } catch (error) {
      this.rethrow(error);
    }
  }

  private rethrow(error: unknown): void {
    queueMicrotask(() => {
      throw error;
    });
  }

  private drop(reason: WireReject, from: dgram.RemoteInfo): void {
    this.counts[reason]++;
    if (channels.wireDrop.hasSubscribers) {
      const event: WireDropEvent = { source: 'monitor', reason, from: formatHostPort({ host: from.address, port: from.port }) };
      channels.wireDrop.publish(event);
    }
  }
}
