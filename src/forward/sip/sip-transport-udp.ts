/**
 * @module The SIP forwarder's UDP transport: the client-facing service socket, one connected upstream
 * socket per backend (a stable port, ICMP port unreachable as passive detection), and responses sent
 * on by their Via.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import type { Backend } from '../../core/backend.js';
import {
  applyEdits,
  parseSipMessage,
  removeTopVia,
  responseTarget,
  SIP_DEFAULT_PORT,
  type SipMessage,
} from '../../sessions/sip-message.js';
import { openUpstream } from '../upstream-connect.js';
import { noop, type UdpUpstream, isWildcard, stableUpstreamPort, isOurs, onlyLineEnds } from './sip-common.js';
import { SipRouting } from './sip-routing.js';

export abstract class SipUdpTransport extends SipRouting {
  // ------------------------------------------------------------------ UDP

  /** The backend's upstream socket: on the listen host when it is a concrete address of the backend's family. */
  protected async openUpstream(backend: Backend, listenHost: string): Promise<void> {
    const owner = this.udp;
    const v6 = net.isIPv6(backend.host);
    const bindHost = isWildcard(listenHost) || net.isIPv6(listenHost) !== v6 ? undefined : listenHost;
    // The stable port when free (see stableUpstreamPort), else any.
    const stable = bindHost && this.udpAddress ? stableUpstreamPort(bindHost, this.udpAddress.port, backend.index) : 0;
    let up = stable !== 0 ? await this.bindUpstream(backend, bindHost, stable) : 'unbound';
    if (up === 'unbound') up = await this.bindUpstream(backend, bindHost, 0);
    if (up === null || up === 'unbound') {
      // The backend's name does not resolve (or the address is unusable): it cannot be reached.
      this.router.failed(backend, 'refused');
      return;
    }
    const socket = up.socket;
    if (this.udp !== owner || this.state === 'destroyed' || this.upstreams.has(backend)) {
      // The service socket closed (or was bound again) while this one opened: not ours to keep.
      socket.close();
      return;
    }
    const local = socket.address();
    const remote = socket.remoteAddress();
    up.localHost = local.address;
    up.localPort = local.port;
    up.remoteHost = remote.address;
    up.ready = true;
    this.upstreams.set(backend, up);
    this.backendByAddress.set(`${remote.address}:${remote.port}`, up);
  }

  /** A connected upstream socket toward `backend` bound at `bindHost`:`port`; 'unbound': the bind failed, null: the connect. */
  protected async bindUpstream(backend: Backend, bindHost: string | undefined, port: number): Promise<UdpUpstream | 'unbound' | null> {
    let bound = false;
    const socket = dgram.createSocket(net.isIPv6(backend.host) ? 'udp6' : 'udp4');
    const up: UdpUpstream = { backend, socket, localHost: '', localPort: 0, remoteHost: backend.host, ready: false };
    socket.on('error', (err: NodeJS.ErrnoException) => {
      // An ICMP port unreachable from the backend (connected socket): passive detection.
      if (err.code === 'ECONNREFUSED' && this.state === 'open') this.router.failed(backend, 'refused');
    });
    socket.on('message', (msg) => this.onUpstreamDatagram(up, msg));
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once('error', reject);
        socket.bind({ ...(bindHost ? { address: bindHost } : {}), port }, () => {
          bound = true;
          socket.connect(backend.port, backend.host, (err?: Error) => {
            socket.off('error', reject);
            if (err) reject(err);
            else resolve();
          });
        });
      });
      return up;
    } catch {
      try {
        socket.close();
      } catch {
        // not bound
      }
      return bound ? null : 'unbound';
    }
  }

  /**
   * The backend's upstream, opened now when it is missing (its open failed at bind time, e.g. a name
   * that did not resolve): else a backend the probes bring back would have every message dropped.
   * One attempt per backend at a time; a failed one reports the backend down again (openUpstream).
   */
  protected upstreamFor(backend: Backend): Promise<UdpUpstream | undefined> {
    const up = this.upstreams.get(backend);
    if (up || !this.udp || this.state !== 'open') return Promise.resolve(up);
    let opening = this.upstreamOpening.get(backend);
    if (!opening) {
      opening = this.openUpstream(backend, this.listenHost).finally(() => this.upstreamOpening.delete(backend));
      this.upstreamOpening.set(backend, opening);
    }
    return opening.then(() => this.upstreams.get(backend));
  }

  /** A datagram on the service socket: from a client, or a request from a backend (Record-Route). */
  protected onServiceDatagram(buf: Buffer, host: string, port: number): void {
    if (this.state !== 'open') return;
    if (buf.length > this.maxDatagramBytes) return this.drop('too-large', 'udp');
    if (onlyLineEnds(buf)) {
      this.stats.keepAlives++; // a CRLF keep-alive
      return;
    }
    const fromBackend = this.backendByAddress.get(`${host}:${port}`);
    const r = parseSipMessage(buf, { transport: 'udp' });
    if (!r.ok) {
      if (fromBackend) return this.drop(r.reason, 'udp');
      return this.malformed(buf, r.reason, host, port, { transport: 'udp' });
    }
    const m = r.message;
    if (m.kind === 'response') return this.responseFromClientUdp(m);
    if (fromBackend) return this.requestFromBackend(m, fromBackend.backend, host, port, null);
    this.requestFromClient(m, host, port, { transport: 'udp' }, buf, 0);
  }

  /** A datagram on a backend's upstream socket: a response, or a request of the backend's. */
  protected onUpstreamDatagram(up: UdpUpstream, buf: Buffer): void {
    if (this.state !== 'open') return;
    if (buf.length > this.maxDatagramBytes) return this.drop('too-large', 'udp');
    if (onlyLineEnds(buf)) return;
    const r = parseSipMessage(buf, { transport: 'udp' });
    if (!r.ok) return this.drop(r.reason, 'udp');
    const m = r.message;
    if (up.backend.state !== 'up') this.router.succeeded(up.backend);
    if (m.kind === 'request') return this.requestFromBackend(m, up.backend, up.remoteHost, up.backend.port, null);
    if (!isOurs(m.vias[0], up.localHost, up.localPort)) return this.drop('unknown-via', 'udp');
    const next = m.vias[1];
    if (!next) return this.drop('unroutable', 'udp');
    this.responseLifecycle(m, true);
    if (next.transport !== 'UDP') return this.drop('unroutable', 'udp');
    const target = responseTarget(next);
    this.media.handle(m, 'backend', 'udp', (out) => this.sendUdp(applyEdits(out, [removeTopVia(out)]), target.host, target.port), null);
  }

  /** A response from a client on the service socket: to a request a backend sent through us. */
  protected responseFromClientUdp(m: SipMessage): void {
    const top = m.vias[0]!;
    if (!isOurs(top, top.host, top.port ?? -1) || !this.isOurAddress(top.host, top.port ?? SIP_DEFAULT_PORT)) {
      return this.drop('unknown-via', 'udp');
    }
    const next = m.vias[1];
    if (!next) return this.drop('unroutable', 'udp');
    this.responseLifecycle(m);
    const target = responseTarget(next);
    let up = this.backendByAddress.get(`${target.host}:${target.port}`);
    if (!up) {
      const b = this.router.backendOfKey(m.callId);
      up = b ? this.upstreams.get(b) : undefined;
    }
    if (!up) return this.drop('unroutable', 'udp');
    const to = up;
    this.media.handle(
      m,
      'client',
      'udp',
      (out) => {
        this.stats.forwarded++;
        this.sendUpstream(to, applyEdits(out, [removeTopVia(out)]));
      },
      null,
    );
  }

  protected sendUdp(buf: Buffer, host: string, port: number): void {
    if (!this.udp || this.state === 'destroyed') return;
    try {
      this.udp.send(buf, port, host, noop);
    } catch {
      // the socket closed under us (close()): the message is lost like any UDP datagram
    }
  }

  protected sendUpstream(up: UdpUpstream, buf: Buffer): void {
    if (!up.ready || this.state === 'destroyed') return;
    try {
      up.socket.send(buf, noop);
    } catch {
      // closed
    }
  }
}
