/**
 * @module The SIP forwarder's TCP transport: framed client connections with an idle timer, one
 * upstream connection per backend per client connection (held messages routed again when a connect
 * fails), backpressure both ways.
 */
import type { Socket } from 'node:net';
import { channels, type ConnectionEvent } from '../../core/diagnostics.js';
import type { BackendFailureKind } from '../../core/errors.js';
import type { Backend } from '../../core/backend.js';
import { NO_FLOW } from '../../sessions/flow-table.js';
import {
  applyEdits,
  parseSipMessage,
  removeTopVia,
  SIP_DEFAULT_PORT,
  SipStreamFramer,
  type SipMessage,
} from '../../sessions/sip-message.js';
import { IdleTimer } from '../lifecycle.js';
import { closeUpstream, openUpstream } from '../upstream-connect.js';
import { noop, type ClientConn, type UpstreamConn, isWildcard, isOurs, unmapIPv4 } from './sip-common.js';
import { SipUdpTransport } from './sip-transport-udp.js';

export abstract class SipTcpTransport extends SipUdpTransport {
  protected abstract maybeClosed(): void;


  // ------------------------------------------------------------------ TCP

  protected acceptConnection(socket: Socket): void {
    const local = { host: socket.localAddress ?? '', port: socket.localPort ?? 0 };
    if (!this.tcpAddress) this.tcpAddress = local;
    const configured = this.udpAddress ?? this.tcpAddress;
    const conn: ClientConn = {
      socket,
      framer: new SipStreamFramer(this.maxMessageBytes),
      upstreams: new Map(),
      remoteHost: socket.remoteAddress ?? '',
      remotePort: socket.remotePort ?? 0,
      viaHost: isWildcard(configured.host) ? local.host : configured.host,
      viaPort: local.port,
      flow: NO_FLOW,
      fromBackend: undefined,
      idle: null,
      pausedForUpstream: false,
      done: false,
    };
    this.conns.add(conn);
    this.connByAddress.set(`${conn.remoteHost}|${conn.remotePort}`, conn);
    if (channels.connectionOpen.hasSubscribers) {
      channels.connectionOpen.publish({ service: this.service, protocol: 'sip' } satisfies ConnectionEvent);
    }
    socket.setNoDelay(true);
    socket.on('error', noop);
    socket.on('close', () => this.closeConn(conn));
    socket.on('end', () => socket.end());
    socket.on('drain', () => {
      for (const up of conn.upstreams.values()) up.socket.resume();
    });
    socket.on('data', (chunk: Buffer) => {
      conn.idle?.touch();
      const flow = this.connFlow(conn);
      if (flow !== NO_FLOW) this.rt.flows.seen(flow); // pings and partial messages count too
      conn.framer.push(chunk);
      for (let f = conn.framer.next(); f && !conn.done; f = conn.framer.next()) {
        if (f.type === 'ping') this.writeTo(socket, Buffer.from('\r\n'));
        else if (f.type === 'error') {
          this.drop(f.reason, 'tcp');
          socket.destroy();
        } else this.onClientTcpMessage(conn, f.bytes);
      }
    });
    // The idle timer wakes once per period and re-arms for the remainder (no reset per message).
    conn.idle = new IdleTimer(this.rt.clock, this.rt.config.sip.tcpIdleTimeoutMs, () => socket.destroy());
  }

  protected closeConn(conn: ClientConn): void {
    if (conn.done) return;
    conn.done = true;
    conn.idle?.cancel();
    for (const up of conn.upstreams.values()) closeUpstream(up);
    conn.upstreams.clear();
    const flow = this.connFlow(conn);
    if (flow !== NO_FLOW) this.rt.flows.remove(flow);
    conn.flow = NO_FLOW;
    conn.socket.destroy();
    this.conns.delete(conn);
    const key = `${conn.remoteHost}|${conn.remotePort}`;
    if (this.connByAddress.get(key) === conn) this.connByAddress.delete(key);
    if (channels.connectionClose.hasSubscribers) {
      channels.connectionClose.publish({ service: this.service, protocol: 'sip' } satisfies ConnectionEvent);
    }
    this.maybeClosed();
  }

  protected onClientTcpMessage(conn: ClientConn, bytes: Buffer, attempt = 0): void {
    if (this.state !== 'open') return;
    const r = parseSipMessage(bytes, { transport: 'tcp', maxMessageBytes: this.maxMessageBytes });
    if (!r.ok) {
      if (conn.fromBackend) return this.drop(r.reason, 'tcp'); // from backends: always dropped
      return this.malformed(bytes, r.reason, conn.remoteHost, conn.remotePort, { transport: 'tcp', conn });
    }
    const m = r.message;
    if (m.kind === 'request') {
      if (conn.fromBackend === undefined) conn.fromBackend = this.backendOfConnection(conn, m) ?? null;
      if (conn.fromBackend) return this.requestFromBackend(m, conn.fromBackend, conn.remoteHost, conn.remotePort, null, conn);
      return this.requestFromClient(m, conn.remoteHost, conn.remotePort, { transport: 'tcp', conn }, bytes, attempt);
    }
    // A response to a request a backend sent on one of this connection's upstreams, or on a
    // connection of its own (inboundByBranch).
    if (!isOurs(m.vias[0], conn.viaHost, conn.viaPort)) return this.drop('unknown-via', 'tcp');
    this.responseLifecycle(m);
    const branch = m.vias[0]!.branch!;
    const inbound = this.inboundByBranch.get(branch);
    if (inbound) {
      if (m.status >= 200) this.inboundByBranch.delete(branch);
      if (!inbound.done) {
        this.media.handle(m, 'client', 'tcp', (out) => this.writeToClient(inbound, applyEdits(out, [removeTopVia(out)])), null);
        return;
      }
    }
    const b = this.router.backendOfKey(m.callId);
    const up = b ? conn.upstreams.get(b) : undefined;
    if (!up || up.closed) return this.drop('unroutable', 'tcp');
    this.media.handle(
      m,
      'client',
      'tcp',
      (out) => {
        this.writeTo(up.socket, applyEdits(out, [removeTopVia(out)]));
        this.checkUpstreamPressure(conn);
      },
      null,
    );
  }

  /**
   * The backend a TCP connection's first request says it comes from: its source address is the
   * backend's and its top Via names the backend's port (a connection's source port is ephemeral, but
   * a UAS's Via sent-by is its listening port, RFC 3261 §18.1.1, which no client on that host has).
   * A UAS sends its in-dialog requests to our Record-Route, the service address, on a new connection.
   */
  protected backendOfConnection(conn: ClientConn, m: SipMessage): Backend | undefined {
    const viaPort = m.vias[0]!.port ?? SIP_DEFAULT_PORT;
    const src = unmapIPv4(conn.remoteHost);
    for (const b of this.rt.backends) {
      if (b.port !== viaPort) continue;
      const resolved = this.upstreams.get(b)?.remoteHost;
      if (unmapIPv4(b.host) === src || (resolved !== undefined && unmapIPv4(resolved) === src)) return b;
    }
    return undefined;
  }

  /** Sends a client's message to `backend` on this connection's upstream to it (connecting it first). */
  protected writeUpstream(conn: ClientConn, backend: Backend, out: Buffer, original: Buffer | null, attempt: number): void {
    if (conn.done) return;
    let up = conn.upstreams.get(backend);
    if (!up || up.closed) up = this.connectUpstream(conn, backend);
    if (!up.connected) {
      if (original) {
        up.pending.push({ out, original, attempt });
        up.pendingBytes += out.length;
      } else {
        up.pending.push({ out, original: out, attempt: Number.MAX_SAFE_INTEGER });
        up.pendingBytes += out.length;
      }
    } else {
      this.writeTo(up.socket, out);
    }
    this.checkUpstreamPressure(conn);
  }

  protected connectUpstream(conn: ClientConn, backend: Backend): UpstreamConn {
    const up = openUpstream(
      this.rt,
      backend,
      (socket): UpstreamConn => {
        const made: UpstreamConn = {
          owner: conn,
          backend,
          socket,
          framer: new SipStreamFramer(this.maxMessageBytes),
          connected: false,
          connectTimer: null,
          pending: [],
          pendingBytes: 0,
          closed: false,
        };
        conn.upstreams.set(backend, made);
        return made;
      },
      {
        failed: (kind) => this.upstreamFailed(up, kind),
        reset: () => {
          if (this.state === 'open') this.router.failed(backend, 'reset');
        },
        connected: () => {
          for (const p of up.pending) up.socket.write(p.out);
          up.pending = [];
          up.pendingBytes = 0;
          this.checkUpstreamPressure(conn);
        },
        closed: () => {
          up.closed = true;
          if (conn.upstreams.get(backend) === up) conn.upstreams.delete(backend);
          this.checkUpstreamPressure(conn);
        },
      },
    );
    const socket = up.socket;
    socket.on('drain', () => this.checkUpstreamPressure(conn));
    socket.on('data', (chunk: Buffer) => {
      conn.idle?.touch();
      const flow = this.connFlow(conn);
      if (flow !== NO_FLOW) this.rt.flows.touch(flow); // keeps the connection open: its flow too
      up.framer.push(chunk);
      for (let f = up.framer.next(); f && !up.closed; f = up.framer.next()) {
        if (f.type === 'ping') this.writeTo(socket, Buffer.from('\r\n'));
        else if (f.type === 'error') {
          this.drop(f.reason, 'tcp');
          up.closed = true;
          socket.destroy();
        } else this.onUpstreamTcpMessage(up, f.bytes);
      }
    });
    return up;
  }

  /**
   * An upstream that never connected (refused, reset, timeout; `kind` null: the monitor already took
   * the backend down) or that must go: report it, close it, route its held messages again.
   */
  protected upstreamFailed(up: UpstreamConn, kind: BackendFailureKind | null): void {
    if (up.closed) return;
    closeUpstream(up);
    const conn = up.owner;
    if (conn.upstreams.get(up.backend) === up) conn.upstreams.delete(up.backend);
    const held = up.connected ? [] : up.pending;
    up.pending = [];
    up.pendingBytes = 0;
    // The monitor marks the backend down and SessionRouter re-pins before this returns.
    if (kind && this.state === 'open') this.router.failed(up.backend, kind);
    for (const p of held) {
      // Bounded: every failure takes a backend down, so a message is tried on each at most once.
      if (p.attempt + 1 < this.rt.backends.length && !conn.done) this.onClientTcpMessage(conn, p.original, p.attempt + 1);
    }
    this.checkUpstreamPressure(conn);
  }

  protected onUpstreamTcpMessage(up: UpstreamConn, bytes: Buffer): void {
    if (this.state === 'destroyed') return;
    const conn = up.owner;
    const r = parseSipMessage(bytes, { transport: 'tcp', maxMessageBytes: this.maxMessageBytes });
    if (!r.ok) return this.drop(r.reason, 'tcp');
    const m = r.message;
    if (m.kind === 'request') {
      return this.requestFromBackend(m, up.backend, up.socket.remoteAddress ?? up.backend.host, up.socket.remotePort ?? up.backend.port, up);
    }
    if (!isOurs(m.vias[0], conn.viaHost, conn.viaPort)) return this.drop('unknown-via', 'tcp');
    this.responseLifecycle(m, true);
    this.media.handle(m, 'backend', 'tcp', (out) => this.writeToClient(conn, applyEdits(out, [removeTopVia(out)])), null);
  }

  /** Writes to the client; over the high-water mark, every upstream of the connection pauses. */
  protected writeToClient(conn: ClientConn, buf: Buffer): void {
    if (conn.done) return;
    this.writeTo(conn.socket, buf);
    if (conn.socket.writableLength > this.highWaterMark) {
      for (const up of conn.upstreams.values()) up.socket.pause();
    }
  }

  /** The client reads while no upstream holds more than the high-water mark. */
  protected checkUpstreamPressure(conn: ClientConn): void {
    if (conn.done) return;
    let over = false;
    for (const up of conn.upstreams.values()) {
      if (up.pendingBytes + up.socket.writableLength > this.highWaterMark) over = true;
    }
    if (over && !conn.pausedForUpstream) {
      conn.pausedForUpstream = true;
      conn.socket.pause();
    } else if (!over && conn.pausedForUpstream) {
      conn.pausedForUpstream = false;
      conn.socket.resume();
    }
  }

  protected writeTo(socket: Socket, buf: Buffer): void {
    if (socket.destroyed || !socket.writable) return;
    socket.write(buf);
  }
}
