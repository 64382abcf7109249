/**
 * @module The named diagnostics channels through which events leave components. Metrics, logs and
 * the dashboard subscribe; the pipeline only publishes (and only when someone listens).
 */
import diagnostics_channel from 'node:diagnostics_channel';

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
} as const;

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
  protocol: 'http' | 'tcp';
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
