/**
 * @module The UDP socket the packet transmission agent talks through (HANet §3.6: UDP, because a
 * TCP handshake's answer would be routed through the failed link). Every message is sealed with the
 * cluster key (wire/envelope.ts, type 5) and numbered; every datagram received is checked in order —
 * size, MAC and version, type, body, known sibling, freshness and sequence window — and anything
 * forged, replayed, stale or malformed is dropped and counted by reason, never handed on.
 */
import dgram from 'node:dgram';
import type { HostPort } from '../core/address.js';
import { formatHostPort } from '../core/address.js';
import type { Clock } from '../core/clock.js';
import { channels, type WireDropEvent } from '../core/diagnostics.js';
import { ListenError } from '../core/errors.js';
import { MessageType, open, seal, type WireReject } from '../wire/envelope.js';
import { ReplayGuard } from '../wire/replay-guard.js';
import { unwrapTimestamp, wireTimestamp } from '../wire/timestamp.js';
import {
  decodeTransmissionAgent,
  encodeTransmissionAgent,
  type TransmissionAgentKind,
  type TransmissionAgentMessage,
  type TransmissionAgentReason,
} from '../wire/transmission-agent.js';

/** Real messages are 37 bytes; anything much larger is dropped before the HMAC is computed. */
export const MAX_TA_DATAGRAM_BYTES = 128;

export type ChannelStats = Record<WireReject | 'accepted', number>;

const REASONS: readonly (WireReject | 'accepted')[] = ['accepted', 'truncated', 'bad-mac', 'version', 'type', 'malformed', 'replay', 'stale', 'unknown-host'];

export interface ChannelOptions {
  listen: HostPort;
  key: Buffer;
  /** This agent's Host_Identity. */
  host: number;
  clock: Clock;
  /** Whether `host` is a configured sibling. */
  knownHost(host: number): boolean;
  /** An authentic, fresh, new message from a known sibling. */
  onMessage(m: TransmissionAgentMessage): void;
  /** A datagram dropped; `count` is how many have been dropped for this reason so far. */
  onDrop?(reason: WireReject, from: string, count: number): void;
}

export class TransmissionAgentChannel {
  readonly #o: ChannelOptions;
  readonly #guard = new ReplayGuard();
  readonly #counts: ChannelStats;
  #socket: dgram.Socket | null = null;
  #seq = 0;
  #closed = false;

  constructor(o: ChannelOptions) {
    this.#o = o;
    this.#counts = Object.fromEntries(REASONS.map((r) => [r, 0])) as ChannelStats;
  }

  start(): Promise<void> {
    return new Promise((resolve, reject) => {
      const socket = dgram.createSocket('udp4');
      const failed = (err: Error): void => {
        socket.close();
        reject(new ListenError(`udp ${formatHostPort(this.#o.listen)} (hanet.listen)`, { cause: err }));
      };
      socket.once('error', failed);
      socket.on('message', (msg, rinfo) => this.#receive(msg, rinfo));
      socket.bind(this.#o.listen.port, this.#o.listen.host, () => {
        socket.off('error', failed);
        // Per-datagram errors (ICMP unreachable while a link is down) are not fatal to the channel.
        socket.on('error', () => {});
        this.#socket = socket;
        resolve();
      });
    });
  }

  /** Datagrams accepted and dropped so far, by reason (a copy). */
  stats(): ChannelStats {
    return { ...this.#counts };
  }

  send(to: HostPort, kind: TransmissionAgentKind, reason: TransmissionAgentReason, address: string, nextHop: string): void {
    const socket = this.#socket;
    if (!socket || this.#closed) return;
    const body = encodeTransmissionAgent({
      kind,
      reason,
      host: this.#o.host,
      seq: this.#seq,
      timestamp: wireTimestamp(this.#o.clock.wallNow()),
      address,
      nextHop,
    });
    this.#seq = (this.#seq + 1) >>> 0;
    // Errors (no route while a link is down) are the requester's retry loop's business.
    socket.send(seal(MessageType.TransmissionAgent, body, this.#o.key), to.port, to.host, () => {});
  }

  close(): Promise<void> {
    this.#closed = true;
    const socket = this.#socket;
    this.#socket = null;
    return socket ? new Promise((resolve) => socket.close(() => resolve())) : Promise.resolve();
  }

  #receive(msg: Buffer, from: dgram.RemoteInfo): void {
    if (this.#closed) return;
    if (msg.length > MAX_TA_DATAGRAM_BYTES) return this.#drop('malformed', from);
    const opened = open(msg, this.#o.key);
    if (!opened.ok) return this.#drop(opened.reason, from);
    if (opened.type !== MessageType.TransmissionAgent) return this.#drop('type', from);
    const m = decodeTransmissionAgent(opened.body);
    if (!m) return this.#drop('malformed', from);
    if (!this.#o.knownHost(m.host)) return this.#drop('unknown-host', from);
    const nowWall = this.#o.clock.wallNow();
    const verdict = this.#guard.check(m.host, MessageType.TransmissionAgent, m.seq, unwrapTimestamp(m.timestamp, nowWall), nowWall);
    if (verdict !== 'ok') return this.#drop(verdict, from);
    this.#counts.accepted++;
    this.#o.onMessage(m);
  }

  #drop(reason: WireReject, from: dgram.RemoteInfo): void {
    this.#counts[reason]++;
    this.#o.onDrop?.(reason, formatHostPort({ host: from.address, port: from.port }), this.#counts[reason]);
    if (channels.wireDrop.hasSubscribers) {
      const event: WireDropEvent = { source: 'hanet', reason, from: formatHostPort({ host: from.address, port: from.port }) };
      channels.wireDrop.publish(event);
    }
  }
}
