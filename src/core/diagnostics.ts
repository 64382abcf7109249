/**
 * @module The named diagnostics channels through which events leave components. Metrics, logs and
 * the dashboard subscribe; the pipeline only publishes (and only when someone listens).
 */
import diagnostics_channel from 'node:diagnostics_channel';
import type { WireReject } from '../wire/envelope.js';

export const channels = {
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
} as const;

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
  /** sessions-full / flows-full: the table is at its configured maximum; no-backend: none eligible. */
  reason: 'sessions-full' | 'flows-full' | 'no-backend';
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
  protocol: 'http' | 'tcp' | 'sip';
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

export interface WireDropEvent {
  /** The receiving component. */
  source: 'monitor';
  reason: WireReject;
  /** The sender's address as host:port (unauthenticated: whatever the datagram claimed). */
  from: string;
}

export interface HeartbeatLostEvent {
  service: string;
  backend: string;
  /** Heartbeats missing in this gap of sequence numbers. */
  lost: number;
}
