/**
 * @module What the SIP forwarder's layers share: RFC 3261 constants and our own markers (branch
 * prefix, To tag), the per-session side record, the transports' connection records, the statistics,
 * and the small pure helpers (proxy branch, stable upstream port, our-Via test).
 */
import dgram from 'node:dgram';
import type { Socket } from 'node:net';
import type { IdleTimer } from '../lifecycle.js';
import { channels } from '../../core/diagnostics.js';
import type { Backend } from '../../core/backend.js';
import type { FlowHandle } from '../../sessions/flow-table.js';
import type { SessionHandle } from '../../sessions/session-table.js';
import {
  BRANCH_MAGIC_COOKIE,
  formatSipHostPort,
  SipStreamFramer,
  type SipMessage,
  type SipTransport,
  type SipVia,
} from '../../sessions/sip-message.js';
import type { UpstreamLink } from '../upstream-connect.js';

/** RFC 3261 §17.1.1.1: the round-trip estimate T1. */export const SIP_T1_MS = 500;
/** Timer J (64 x T1, §17.2.2): how long an ended session keeps routing retransmissions. */
export const DIALOG_LINGER_MS = 64 * SIP_T1_MS;
/** Retry-After of the 503 answered when no backend can take a new session. */
export const RETRY_AFTER_S = 5;
/** Every branch holdfast writes starts with this: RFC 3261's magic cookie, then our mark. */
export const HOLDFAST_BRANCH_PREFIX = `${BRANCH_MAGIC_COOKIE}hf.`;
/** The To tag of the responses holdfast answers itself (503, 483). */
export const HOLDFAST_TO_TAG = 'hf0';
/** Max-Forwards added to a request that has none (RFC 3261 §16.6 step 3). */
export const DEFAULT_MAX_FORWARDS = 70;

/** Bound of the branches of backend-sent TCP requests awaiting the client's response (see inboundByBranch). */
export const INBOUND_BRANCHES_MAX = 4096;

/** Methods whose initial request creates a dialog (RFC 3261 §12, RFC 6665, RFC 3515). */
export const DIALOG_CREATING = new Set(['INVITE', 'SUBSCRIBE', 'REFER']);

/**
 * Whether a session opened by `m` lasts beyond its first final response: a dialog-creating request;
 * any request with a To tag (in a dialog already: opened mid-dialog, after a restart or a takeover,
 * it must not end at its first 200); and REGISTER, whose refreshes reuse the Call-ID (RFC 3261
 * §10.2.4) and must reach the registrar that holds the binding (and the nonce of a 401 challenge).
 * Such a session ends by BYE, a final failure to its INVITE, or the idle timeout.
 */
export function opensLastingSession(m: SipMessage): boolean {
  return DIALOG_CREATING.has(m.method) || m.method === 'REGISTER' || m.toTag !== null;
}

export { noop } from '../lifecycle.js';

export type DropReason = 'malformed' | 'too-large' | 'unknown-via' | 'no-session' | 'no-backend' | 'max-forwards' | 'unroutable' | 'bad-sdp' | 'media-pending' | 'answer-throttled';

/** What the forwarder keeps per open session beside the session table (its "side record"). */
export interface SipSession {
  readonly handle: SessionHandle;
  /** The client's address as its latest request came from. */
  clientHost: string;
  clientPort: number;
  /** The client's transport: a backend's request over UDP is not bridged to a TCP client. */
  transport: SipTransport;
  /** Opened by a dialog-creating request: ends by BYE/failure, not by its first final response. */
  dialog: boolean;
  /** A 2xx to an INVITE passed. */
  confirmed: boolean;
  /** Non-zero while lingering: the FIFO entry that may close it. */
  lingerSeq: number;
  /** The backend whose `active` count holds this session. */
  counted: Backend | null;
  /** Clock time (ms) the initial INVITE was first forwarded while it awaits its first answer, else -1. */
  inviteAt: number;
}

/** One per backend: the connected UDP socket holdfast talks to it through. */
export interface UdpUpstream {
  readonly backend: Backend;
  readonly socket: dgram.Socket;
  /** Our address as the backend sees it (for Via, and Record-Route on a wildcard listener). */
  localHost: string;
  localPort: number;
  /** The backend's resolved address, to recognise its datagrams on the service socket. */
  remoteHost: string;
  ready: boolean;
}

/** Where a client request came in. */
export type Ingress = { readonly transport: 'udp' } | { readonly transport: 'tcp'; readonly conn: ClientConn };

/** A SIP-over-TCP client connection and its upstream connections. */
export interface ClientConn {
  readonly socket: Socket;
  readonly framer: SipStreamFramer;
  readonly upstreams: Map<Backend, UpstreamConn>;
  readonly remoteHost: string;
  readonly remotePort: number;
  /** The address our Via and Record-Route name on this connection. */
  readonly viaHost: string;
  readonly viaPort: number;
  flow: FlowHandle;
  /**
   * The backend this connection comes from (a UAS sending its BYE / re-INVITE to our Record-Route
   * on a connection of its own), null for a client; undefined until its first request tells.
   */
  fromBackend: Backend | null | undefined;
  /** Set once the connection is set up; every client and upstream chunk is activity. */
  idle: IdleTimer | null;
  /** Paused because an upstream's buffer is over the high-water mark. */
  pausedForUpstream: boolean;
  done: boolean;
}

/** One upstream TCP connection of a client connection. */
export interface UpstreamConn extends UpstreamLink {
  readonly owner: ClientConn;
  readonly framer: SipStreamFramer;
  /** Messages written before the connect completed: [what to send, the client's original bytes, attempt]. */
  pending: { out: Buffer; original: Buffer; attempt: number }[];
  pendingBytes: number;
}

/** Counters of what the forwarder did beside drops (which go to channels.messageDrop). */
export interface SipForwarderStats {
  /** In-dialog requests (To tag present) for a Call-ID with no open session: opened on the balancer's pick. */
  orphanInDialog: number;
  /** Malformed client messages forwarded unparsed (sip.malformed: forward). */
  forwardedUnparsed: number;
  /** 503 answered (no backend, table full); one dropped by sip.udpAnswersPerSecond is a drop ('answer-throttled'). */
  refused: number;
  /** 483 answered (Max-Forwards reached 0). */
  tooManyHops: number;
  /** Sessions ended by the protocol (BYE, final failure) and closed after the linger. */
  ended: number;
  /**
   * Client UDP datagrams sent on to a backend (requests and responses). With the drops
   * (channels.messageDrop), forwardedUnparsed, refused, tooManyHops, keepAlives, ownAcks, answered
   * and admission's own drops, every client datagram lands in exactly one counter (issue 21).
   */
  forwarded: number;
  /** CRLF keep-alive datagrams (RFC 5626 §4.4.1) answered by nothing. */
  keepAlives: number;
  /** ACKs of the 503/483 answers of our own, absorbed (RFC 3261 §17.2.1). */
  ownAcks: number;
  /** Other answers of our own (400 to a request whose SDP cannot be relayed). */
  answered: number;
}

export function isWildcard(host: string): boolean {
  return host === '0.0.0.0' || host === '::' || host === '';
}

/** Receive buffer asked for the client-facing UDP socket (the same as the UDP relay's service socket). */
export const SERVICE_RECV_BUFFER_BYTES = 4 * 1024 * 1024;

/** First port of the stable upstream block: above Linux's default ephemeral range (32768–60999). */
export const UPSTREAM_PORT_MIN = 61_000;
export const UPSTREAM_PORTS = 65_536 - UPSTREAM_PORT_MIN;

/**
 * The local port of the UDP upstream socket toward backend `index` when the service listens on a
 * concrete address: the same on every dispatcher of a group (issue 7). A UAS answers a call's later
 * requests to where its INVITE came from (sipp does; RFC 3261 §18.2.2 leaves it to the Via), so after
 * a takeover the new master must send from the old master's VIP:port, or the 200 of a BYE is lost.
 */
export function stableUpstreamPort(listenHost: string, servicePort: number, index: number): number {
  return UPSTREAM_PORT_MIN + ((fnv1a(`${listenHost}|${servicePort}`, 0x811c9dc5) + index) % UPSTREAM_PORTS);
}

/** 32-bit FNV-1a of `s` from `seed`. */
export function fnv1a(s: string, seed: number): number {
  let h = seed >>> 0;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/** A 64-bit hash (two FNV-1a lanes) as 16 hex digits. */
export function hash64(s: string): string {
  return fnv1a(s, 0x811c9dc5).toString(16).padStart(8, '0') + fnv1a(s, 0x050c5d1f).toString(16).padStart(8, '0');
}

/**
 * Our branch for a request forwarded on `leg` ('u' toward a backend, 'c' toward a client): stable
 * for retransmissions, the same for an INVITE and its CANCEL / non-2xx ACK (RFC 3261 §16.11).
 */
export function proxyBranch(m: SipMessage, leg: 'u' | 'c'): string {
  const top = m.vias[0]!;
  const id =
    top.branch !== null && top.branch.startsWith(BRANCH_MAGIC_COOKIE)
      ? top.branch
      : `${m.raw.toString('latin1', top.start, top.end)}|${m.cseq}|${m.fromTag ?? ''}|${m.uri}`;
  return HOLDFAST_BRANCH_PREFIX + hash64(`${leg}|${id}|${formatSipHostPort(top.host, top.port)}|${m.callId}`);
}

export function isOurs(via: SipVia | undefined, host: string, port: number): boolean {
  return via !== undefined && via.branch !== null && via.branch.startsWith(HOLDFAST_BRANCH_PREFIX) && via.host === host && via.port === port;
}

/** An IPv4-mapped IPv6 address (a dual-stack socket's view of an IPv4 peer) as plain IPv4. */
export function unmapIPv4(host: string): string {
  return host.startsWith('::ffff:') && host.includes('.') ? host.slice(7) : host;
}

export function onlyLineEnds(buf: Buffer): boolean {
  for (const c of buf) if (c !== 13 && c !== 10 && c !== 32 && c !== 9) return false;
  return true;
}
