/**
 * @module The named diagnostics channels through which events leave components. Metrics, logs and
 * the dashboard subscribe; the pipeline only publishes (and only when someone listens).
 */
import diagnostics_channel from 'node:diagnostics_channel';

/**
 * The five load bands of SA2C's eq. 2, in rising order (admission/sa2c.ts computes them). Named here
 * because the admission events carry them.
 */
export type AdmissionBand = 'below-t1' | 't1-t2' | 't2-t3' | 't3-c' | 'at-c';

/**
 * Why a wire message was dropped (wire/envelope.ts opens them); the later reasons ('replay', 'stale',
 * 'unknown-host') are raised by receivers. Named here because the wire-reject event carries them.
 */
export type WireReject = 'truncated' | 'bad-mac' | 'version' | 'type' | 'malformed' | 'replay' | 'stale' | 'unknown-host';

/** The HTTP/2 defences (issue 19) that close a client connection with GOAWAY ENHANCE_YOUR_CALM. */
export type Http2Defence = 'rapid-reset' | 'settings-flood' | 'ping-flood' | 'header-block' | 'zero-window';

/** An HTTP/2 client connection was closed by a defence. */
export interface Http2DefenceEvent {
  readonly service: string;
  readonly defence: Http2Defence;
  readonly address: string;
}

export const channels = {
  /** An HTTP/2 connection tripped a defence and was closed (GOAWAY). Message: Http2DefenceEvent. */
  http2Defence: diagnostics_channel.channel('holdfast:http2:defence'),
  /** A backend changed state. Message: BackendStateEvent. */
  backendState: diagnostics_channel.channel('holdfast:backend:state'),
  /** A backend connection or request failed. Message: BackendErrorEvent. */
  backendError: diagnostics_channel.channel('holdfast:backend:error'),
  /** A client connection was accepted. Message: ConnectionEvent. */
  connectionOpen: diagnostics_channel.channel('holdfast:connection:open'),
  /** A client connection closed. Message: ConnectionEvent. */
  connectionClose: diagnostics_channel.channel('holdfast:connection:close'),
  /** An HTTP exchange completed (or failed). Message: HttpExchangeEvent. */
  httpExchange: diagnostics_channel.channel('holdfast:http:exchange'),
  /**
   * A SIP service's initial INVITE was forwarded to a backend, first answered (a response above 100),
   * or abandoned unanswered (its session closed). Message: SipInviteEvent, one object per forwarder
   * rewritten before each publish: read it during the call, do not keep it.
   */
  sipInvite: diagnostics_channel.channel('holdfast:sip:invite'),
  /** A client request was refused by the forwarder (400, 408, 431...). Message: HttpRefuseEvent. */
  httpRefuse: diagnostics_channel.channel('holdfast:http:refuse'),
  /** Bytes relayed on a TCP splice, published at close. Message: TcpSpliceEvent. */
  tcpSplice: diagnostics_channel.channel('holdfast:tcp:splice'),
  /** A backend's load monitor failed (SARA Fig. 8) or recovered. Message: LoadMonitorEvent. */
  loadMonitor: diagnostics_channel.channel('holdfast:load:monitor'),
  /** A load vector was taken into account. Message: LoadSampleEvent. */
  loadSample: diagnostics_channel.channel('holdfast:load:sample'),
  /** A control message was dropped (forged, replayed, malformed...). Message: WireDropEvent. */
  wireDrop: diagnostics_channel.channel('holdfast:wire:drop'),
  /** A log line could not be written to `logging.file` (disk full...) and was dropped. Message: LogDropEvent. */
  logDrop: diagnostics_channel.channel('holdfast:log:drop'),
  /** Sequence gaps in a backend's heartbeats. Message: HeartbeatLostEvent. */
  heartbeatLost: diagnostics_channel.channel('holdfast:heartbeat:lost'),
  /** A failed exchange was (or could not be) recovered on another backend. Message: FailoverEvent. */
  failover: diagnostics_channel.channel('holdfast:failover'),
  /** A request outgrew the request log bounds: it cannot be replayed. Message: { service }. */
  requestLogOverflow: diagnostics_channel.channel('holdfast:failover:log-overflow'),
  /** A session was opened and pinned. Message: SessionEvent. */
  sessionOpen: diagnostics_channel.channel('holdfast:session:open'),
  /** A session ended. Message: SessionCloseEvent. */
  sessionClose: diagnostics_channel.channel('holdfast:session:close'),
  /** A session's backend failed and the session was pinned to another. Message: SessionRepinEvent. */
  sessionRepin: diagnostics_channel.channel('holdfast:session:repin'),
  /** A new session or flow could not be opened (table full, no backend). Message: SessionRefuseEvent. */
  sessionRefuse: diagnostics_channel.channel('holdfast:session:refuse'),
  /** Inactive flows were purged (2 x timeout). Message: FlowPurgeEvent. */
  flowPurge: diagnostics_channel.channel('holdfast:flow:purge'),
  /** A datagram or message was dropped (malformed SIP, oversized datagram...). Message: MessageDropEvent. */
  messageDrop: diagnostics_channel.channel('holdfast:message:drop'),
  /** A dispatcher became master or backup of an election group (VIP). Message: ElectionStateEvent. */
  electionState: diagnostics_channel.channel('holdfast:election:state'),
  /** Admission control refused a new session or dropped established traffic (SA2C). Message: AdmissionRefuseEvent. */
  admissionRefuse: diagnostics_channel.channel('holdfast:admission:refuse'),
  /** The decision load crossed a threshold: SA2C changed band. Message: AdmissionThresholdEvent. */
  admissionThreshold: diagnostics_channel.channel('holdfast:admission:threshold'),
  /** T2 or T3 moved (SARA eq. 4) or was reset below T1. Message: AdmissionMoveEvent. */
  admissionMove: diagnostics_channel.channel('holdfast:admission:move'),
  /** Each load sample SA2C decided on: l, l_c, the band and thresholds after it. Message: AdmissionSampleEvent. */
  admissionSample: diagnostics_channel.channel('holdfast:admission:sample'),
  /** HANet: the ACTIVE interface changed, or a sibling relay started, ended or was refused. Message: HanetEvent. */
  hanet: diagnostics_channel.channel('holdfast:hanet:event'),
  /** MembershipEvent: the etcd membership's connection changed, or its view did (scale-out, issue 20). */
  membership: diagnostics_channel.channel('holdfast:membership:event'),
} as const;

/**
 * 'lost': etcd stopped answering (the dispatcher serves on with its last view; counted);
 * 'restored': it answers again; 'view': the dispatcher or backend set changed; 'stale': started from
 * the last-known view because etcd was unreachable at start.
 */
export interface MembershipEvent {
  readonly type: 'lost' | 'restored' | 'view' | 'stale';
  readonly dispatchers: number;
  readonly detail?: string;
}

/** What HANet (src/hanet/) reports; `at` is clock time (ms). */
export interface HanetEvent {
  event:
    | 'active' // the interface manager made `iface` ACTIVE (`reason`: initial, failed, failback)
    | 'isolated' // no GOOD interface, or no sibling accepts to relay
    | 'relayed' // requester: `sibling` acknowledged and relays our packets
    | 'relay-lost' // requester: `sibling` went silent while relaying
    | 'relay-start' // responder: relaying `address` for `sibling`
    | 'relay-stop' // responder: relay of `address` for `sibling` undone (`reason`)
    | 'refused'; // responder refused a request (`reason`), or requester was refused
  at: number;
  iface?: string;
  sibling?: number;
  address?: string;
  reason?: string;
}

/** One shared frozen object per service, kind and band: publishing allocates nothing. */
export interface AdmissionRefuseEvent {
  readonly service: string;
  readonly kind: 'new' | 'established';
  /** refuse: a new session refused (503 + Retry-After); degrade: established traffic dropped. */
  readonly verdict: 'refuse' | 'degrade';
  readonly band: AdmissionBand;
}

export interface AdmissionThresholdEvent {
  service: string;
  from: AdmissionBand;
  to: AdmissionBand;
  /** The decision load max(l, l_c) in [0, 1]. */
  load: number;
  /** The thresholds in force after the crossing. */
  t1: number;
  t2: number;
  t3: number;
  c: number;
  /** Wall-clock milliseconds. */
  at: number;
}

/** One update of a service's admission control (diagnosis of the control loop: bench/overload traces it). */
export interface AdmissionSampleEvent {
  service: string;
  /** l: the dispatcher's own load as fed (after the feed's smoothing). */
  dispatcher: number;
  /** l_c: the cluster load estimate as fed. */
  cluster: number;
  /** x = max(l, l_c), clamped to [0, 1]. */
  load: number;
  band: AdmissionBand;
  t2: number;
  t3: number;
  pNew: number;
  pEstablished: number;
  /** Wall-clock milliseconds. */
  at: number;
  /** With a queue controller (issue 17): its new-session drop probability, the smoothed utilisation, the raw standing delay (ms). */
  queueDrop?: number;
  utilisation?: number;
  delayMs?: number;
}

export interface AdmissionMoveEvent {
  service: string;
  threshold: 't2' | 't3';
  from: number;
  to: number;
  /** move: eq. 4 under load; reset: back to the configured value once the load is at or under T1. */
  reason: 'move' | 'reset';
  /** The decision load max(l, l_c) that caused it. */
  load: number;
  /** Wall-clock milliseconds. */
  at: number;
}

export interface SessionEvent {
  service: string;
  backend: string;
}

export interface SessionCloseEvent {
  service: string;
  /** The backend it was pinned to (null for a stale pin). */
  backend: string | null;
  reason: 'ended' | 'timeout' | 'removed';
}

export interface SessionRepinEvent {
  service: string;
  from: string;
  /** null: no backend was eligible; the session keeps its pin and is retried on its next message. */
  to: string | null;
}

export interface SessionRefuseEvent {
  service: string;
  /**
   * sessions-full / flows-full: the table is at its configured maximum; no-backend: none eligible;
   * sockets-full: the UDP relay holds udp.maxUpstreamSockets upstream sockets.
   */
  reason: 'sessions-full' | 'flows-full' | 'no-backend' | 'relay-ports-full' | 'sockets-full';
}

export interface FlowPurgeEvent {
  service: string;
  count: number;
}

export interface MessageDropEvent {
  service: string;
  /** e.g. 'malformed', 'too-large', 'no-session', 'unknown-peer'. */
  reason: string;
  transport: 'udp' | 'tcp';
}

export interface FailoverEvent {
  service: string;
  /** The backend that failed (null when unknown). */
  backend: string | null;
  /** The backend that completed the exchange (null when it failed). */
  to: string | null;
  /** replay: nothing was sent yet; hold: the reply was held; range / verified: a partly sent reply resumed. */
  strategy: 'replay' | 'hold' | 'range' | 'verified' | 'none';
  /** refused: not replayable; not-logged: past the log bounds. */
  result: 'ok' | 'failed' | 'refused' | 'not-logged';
  /** Body bytes the client already had. */
  bytesSent: number;
  /** From the failure to the first byte of the new backend, -1 when none came. */
  recoveryMs: number;
}

export interface BackendStateEvent {
  service: string;
  backend: string;
  from: string;
  to: string;
  reason: string;
  /** Wall-clock milliseconds. */
  at: number;
}

export interface BackendErrorEvent {
  service: string;
  backend: string;
  kind: string;
}

export interface ConnectionEvent {
  service: string;
  /** The service's protocol (sip: a SIP-over-TCP client connection). */
  protocol: 'http' | 'tcp' | 'sip' | 'rtsp';
}

export interface HttpExchangeEvent {
  service: string;
  backend: string | null;
  status: number;
  /** Milliseconds from the request head to the end of the reply. */
  durationMs: number;
  bytesIn: number;
  bytesOut: number;
}

/**
 * An initial INVITE's transaction at a backend (issue 17: SA2C's queueing-delay input for SIP). Timed
 * from the first time holdfast forwards it to the first response above 100 Trying: a 100 is sent on
 * receipt, ahead of any queue (RFC 3261 §8.2.6.1); a 180/183 or a final response is sent once the
 * server has processed the INVITE; from 180 to 200 a human is deciding, which tells nothing of the
 * server's queue.
 */
export interface SipInviteEvent {
  readonly service: string;
  /** sent: forwarded (retransmissions are not events); answered; abandoned: its session closed unanswered. */
  kind: 'sent' | 'answered' | 'abandoned';
  /** The backend the INVITE's session is pinned to (null: none any more). */
  backend: string | null;
  /** The first response's status (answered), else 0. */
  status: number;
  /** Milliseconds from forwarding to that response (answered), else 0. */
  durationMs: number;
  /** INVITEs of this forwarder awaiting their first answer, after this event. */
  pending: number;
}

export interface HttpRefuseEvent {
  service: string;
  status: number;
  reason: string;
}

export interface TcpSpliceEvent {
  service: string;
  backend: string;
  bytesIn: number;
  bytesOut: number;
}

export interface LoadMonitorEvent {
  service: string;
  backend: string;
  /** `failed`: no load vector for 3 x delta_load; `recovered`: a vector arrived again. */
  state: 'failed' | 'recovered';
  /** Wall-clock milliseconds. */
  at: number;
}

export interface LoadSampleEvent {
  service: string;
  backend: string;
  /** The measured load l_j(i) in [0, 1]. */
  load: number;
  /** The damped estimate of the next load (SARA eq. 8) in [0, 1]. */
  forecast: number;
  /** The cluster load l_c (SARA eq. 1). */
  clusterLoad: number;
}

/** A log line dropped by the log file destination; `reason` is the errno code (ENOSPC, EIO...). */
export interface LogDropEvent {
  reason: string;
}

export interface WireDropEvent {
  /** The receiving component: the agents' channel, the dispatchers' election adverts or their state replication. */
  source: 'monitor' | 'election' | 'replication' | 'hanet';
  reason: WireReject;
  /** The sender's address as host:port (unauthenticated: whatever the datagram claimed). */
  from: string;
}

/**
 * An election group changed state on this dispatcher (replication/election.ts). Master reasons:
 * no-master (none heard since start), master-down (the master went silent for 3 x interval + skew),
 * master-resigned (its priority-0 advert, then Skew_Time), preempt (a lower-priority master was
 * alive). Backup reasons: startup, higher-epoch (a newer master exists), higher-priority (same
 * epoch, a better master), resigned (planned switchover), stopped.
 */
export interface ElectionStateEvent {
  /** The group's name. */
  group: string;
  /** This dispatcher's id. */
  node: number;
  type: 'master' | 'backup';
  /** Master: its own new epoch. Backup: the highest epoch known. */
  epoch: number;
  reason: 'no-master' | 'master-down' | 'master-resigned' | 'preempt' | 'startup' | 'higher-epoch' | 'higher-priority' | 'resigned' | 'stopped';
  /** The master's id when known (this node's when it is the master), else null. */
  master: number | null;
}

export interface HeartbeatLostEvent {
  service: string;
  backend: string;
  /** Heartbeats missing in this gap of sequence numbers. */
  lost: number;
}
