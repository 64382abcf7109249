/**
 * @module The SIP forwarder's application-level gateway for media (issue 6, seed 004): every SDP body
 * (Content-Type application/sdp) of an open session, in a request or a 1xx/2xx response, either
 * direction, announces media streams; each relayable stream (sessions/sdp.ts) gets a port pair of the
 * service's MediaRelay — one per m= line index, kept for the whole session — and the SDP is rewritten
 * to the relay's advertised address and ports (m=, c=, a=rtcp; Content-Length fixed). SDP from the
 * client sets where the relay sends the backend's media (setClient, with the host the client's
 * signalling comes from, so that a client behind NAT whose SDP names its private address is latched
 * from its public one); SDP from the backend sets where the client's media goes (setBackend). So offers and answers work whoever makes them (a backend's
 * re-INVITE, a late offer in a 200 answered in the ACK), and a re-INVITE or UPDATE that changes ports
 * updates the same streams' far ends.
 *
 * Streams end with their session: released when the session ends by protocol (BYE, CANCEL's 487 or
 * another final failure: the forwarder calls end() as its linger starts) or closes (timeout, removal);
 * a stream idle for 2 x sessions.flowTimeoutMs is released by the relay itself. A re-pin moves the
 * session's media towards the new backend's host (ports kept), so signalling and media move together.
 *
 * Binding relay ports is asynchronous: a message that needs new streams waits for the binds, and
 * every later message of the same session waits behind it (order kept; at most
 * MEDIA_QUEUE_PER_SESSION, more are dropped as 'media-pending' — UDP senders retransmit).
 *
 * Refusals:
 * - No relay port pair left (exhaustion): a client's request (not an ACK) is answered 503 with
 *   Retry-After, sessionRefuse 'relay-ports-full' is published, and a new session (no To tag) is
 *   closed; the streams bound for it are released. In any other message (a response, a backend's
 *   request, an ACK) the streams that got no port are disabled in the rewritten SDP (port 0, RFC 3264
 *   §6) and the refusal is published the same way.
 * - Malformed SDP: never forwarded, since what cannot be read cannot be rewritten, and forwarding it
 *   as written would send media around the relay to addresses that may not be reachable (and leak the
 *   backends' own addresses to clients). A client's request (not an ACK) is answered 400 Bad Request
 *   (RFC 3261 §21.4.1) and a new session closed; anything else is dropped, counted as 'bad-sdp'.
 * - More than MEDIA_STREAMS_PER_SESSION m= lines: the extra streams are disabled (port 0), so one
 *   offer cannot take the whole port range.
 *
 * media.enabled false: nothing is inspected, every SDP passes as it is.
 */
import os from 'node:os';
import { parseHostPort } from '../../core/address.js';
import { channels, type SessionRefuseEvent } from '../../core/diagnostics.js';
import { parseSdp, rewriteSdp, type SdpRelayTarget } from '../../sessions/sdp.js';
import type { SessionChange } from '../../sessions/session-router.js';
import { NO_SESSION, type SessionHandle } from '../../sessions/session-table.js';
import { applyEdits, findHeader, parseSipMessage, type SipEdit, type SipMessage, type SipTransport } from '../../sessions/sip-message.js';
import type { ReplicatedRelay } from '../../replication/state-replicator.js';
import { MediaRelay, type RelayPortState, type RelayStream } from '../../media/index.js';
import { routerOf, type Router, type ServiceRuntime } from '../../pipeline/index.js';

/** Streams (m= lines) relayed per session; further m= lines are disabled. */
export const MEDIA_STREAMS_PER_SESSION = 8;
/** Messages of one session that may wait while its relay ports bind. */
export const MEDIA_QUEUE_PER_SESSION = 16;
/** Retry-After of the 503 answered when no relay port pair is free. */
export const MEDIA_RETRY_AFTER_S = 5;

/** How the gateway answers a client's request itself (the forwarder's answer()). */
export type MediaAnswer = (status: number, reason: string, extra: string[]) => void;
export type MediaDrop = (reason: 'bad-sdp' | 'media-pending', transport: SipTransport) => void;

interface MediaSession {
  /** By m= line index; null: not relayed. */
  streams: (RelayStream | null)[];
  /** Ended by protocol: no more allocation (a retransmitted 200 after the BYE passes as it is). */
  ended: boolean;
  /** Non-null while ports bind: the messages waiting behind. */
  queue: (() => void)[] | null;
}

function isWildcard(host: string): boolean {
  return host === '0.0.0.0' || host === '::' || host === '';
}

/** The address to advertise for a relay on a wildcard listener without media.advertise: the first non-internal IPv4. */
function firstExternalIPv4(): string {
  for (const list of Object.values(os.networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return '127.0.0.1';
}

function isSdp(m: SipMessage): boolean {
  if (m.bodyLength === 0) return false;
  const ct = findHeader(m, 'content-type');
  return ct !== undefined && /^application\/sdp\s*(?:;|$)/i.test(ct.value);
}

export class SipMediaGateway {
  readonly relay: MediaRelay | null;
  private readonly sessions = new Map<SessionHandle, MediaSession>();
  private readonly unsubscribe: (() => void) | null;
  private readonly router: Router;

  constructor(
    private readonly rt: ServiceRuntime,
    private readonly drop: MediaDrop,
  ) {
    this.router = routerOf(rt);
    const media = rt.config.media;
    if (!media.enabled) {
      this.relay = null;
      this.unsubscribe = null;
      return;
    }
    const listen = parseHostPort(rt.config.listen)?.host ?? '0.0.0.0';
    this.relay = new MediaRelay({
      service: rt.config.name,
      bindHost: listen,
      advertise: media.advertise ?? (isWildcard(listen) ? firstExternalIPv4() : listen),
      portMin: media.portMin,
      portMax: media.portMax,
      maxDatagramBytes: rt.config.udp.maxDatagramBytes,
      flows: rt.flows,
      clock: rt.clock,
      idleTimeoutMs: 2 * rt.config.sessions.flowTimeoutMs,
    });
    this.unsubscribe = this.router.onChange((c) => this.changed(c));
  }

  /**
   * Passes `m` (from the client or the backend) to `go` with its SDP rewritten — at once, or once its
   * relay ports are bound — or answers/drops it (see the module comment). `answer`: how to answer a
   * client's request; null for responses and backends' requests.
   */
  handle(m: SipMessage, from: 'client' | 'backend', transport: SipTransport, go: (m: SipMessage) => void, answer: MediaAnswer | null): void {
    if (!this.relay) return go(m);
    const sdp = isSdp(m);
    if (!sdp && this.sessions.size === 0) return go(m);
    const h = this.router.find(m.callId);
    if (h === NO_SESSION) return go(m);
    let ms = this.sessions.get(h);
    if (ms?.queue) {
      if (ms.queue.length >= MEDIA_QUEUE_PER_SESSION) return this.drop('media-pending', transport);
      ms.queue.push(() => this.handle(m, from, transport, go, answer));
      return;
    }
    if (!sdp) return go(m);
    const relevant = m.kind === 'request' ? m.method !== 'BYE' && m.method !== 'CANCEL' : m.status >= 100 && m.status < 300;
    if (!relevant || ms?.ended) return go(m);
    const text = m.raw.toString('latin1', m.bodyOffset, m.bodyOffset + m.bodyLength);
    const parsed = parseSdp(text);
    const clientRequest = answer !== null && m.kind === 'request' && m.method !== 'ACK';
    if (!parsed.ok) {
      if (clientRequest) {
        answer(400, 'Bad Request', [`Warning: 399 holdfast "Malformed SDP: ${parsed.reason.replace(/["\\]/g, '')}"`]);
        if (m.toTag === null) this.router.close(h, 'ended');
        return;
      }
      return this.drop('bad-sdp', transport);
    }
    if (!ms) {
      ms = { streams: [], ended: false, queue: null };
      this.sessions.set(h, ms);
    }
    const session = ms;
    const media = parsed.sdp.media;
    const signallingHost = from === 'client' ? this.clientSignallingHost(h) : null;
    const needed: number[] = [];
    for (const md of media) {
      if (!md.relayable || md.index >= MEDIA_STREAMS_PER_SESSION) continue;
      const s = session.streams[md.index];
      if (!s || s.released) needed.push(md.index);
    }
    const finish = (disabled: boolean[]): void => {
      const targets: (SdpRelayTarget | null)[] = [];
      for (const md of media) {
        const s = md.index < MEDIA_STREAMS_PER_SESSION ? session.streams[md.index] : undefined;
        if (md.index >= MEDIA_STREAMS_PER_SESSION && md.port !== 0) disabled[md.index] = true;
        if (!md.relayable || !s || s.released || disabled[md.index]) {
          targets.push(null);
          continue;
        }
        if (from === 'client') s.setClient(md.address!, md.port, md.rtcpPort, signallingHost);
        else s.setBackend(md.address!, md.port, md.rtcpPort);
        targets.push({ address: this.relay!.advertise, port: s.rtpPort });
      }
      const out = this.withBody(m, rewriteSdp(parsed.sdp, targets, disabled), transport);
      if (out) go(out);
      else this.drop('bad-sdp', transport);
    };
    if (needed.length === 0) return finish([]);

    session.queue = [];
    const relay = this.relay;
    void Promise.all(needed.map(() => relay.allocate(h))).then((got) => {
      const queue = session.queue ?? [];
      session.queue = null;
      if (!this.router.isOpen(h) || this.sessions.get(h) !== session) {
        for (const s of got) s?.release();
      } else if (got.some((s) => s === null)) {
        if (channels.sessionRefuse.hasSubscribers) {
          channels.sessionRefuse.publish({ service: this.rt.config.name, reason: 'relay-ports-full' } satisfies SessionRefuseEvent);
        }
        if (clientRequest) {
          for (const s of got) s?.release();
          answer!(503, 'Service Unavailable', [`Retry-After: ${MEDIA_RETRY_AFTER_S}`]);
          if (m.toTag === null) this.router.close(h, 'ended');
        } else {
          const disabled: boolean[] = [];
          needed.forEach((index, k) => {
            const s = got[k];
            if (s) session.streams[index] = s;
            else disabled[index] = true;
          });
          finish(disabled);
        }
      } else {
        needed.forEach((index, k) => {
          session.streams[index] = got[k]!;
        });
        finish([]);
      }
      for (const job of queue) job();
    });
  }

  /** The session ended by protocol (BYE, final failure): its streams go now, not after the linger. */
  end(h: SessionHandle): void {
    const ms = this.sessions.get(h);
    if (!ms) return;
    ms.ended = true;
    this.relay?.releaseSession(h);
  }

  /**
   * Issue 7: the relay as the state replicator sees it (null: media off). Its restore() binds the
   * ports a peer replicated, pair by pair, and gives the streams to their sessions in the order
   * received (the master's allocation order, which is its m= line order).
   */
  get replicated(): ReplicatedRelay | null {
    const relay = this.relay;
    if (!relay) return null;
    return {
      onChange: (fn) => relay.onChange(fn),
      forEachPort: (fn) => relay.forEachPort(fn),
      restore: (ports) => this.restore(relay, ports),
    };
  }

  private restore(relay: MediaRelay, ports: readonly RelayPortState[]): void {
    const pairs = new Map<string, { rtp: RelayPortState | null; rtcp: RelayPortState | null; session: SessionHandle; rtpPort: number }>();
    for (const p of ports) {
      const rtpPort = p.port - (p.port % 2);
      const key = `${p.session}|${rtpPort}`;
      let e = pairs.get(key);
      if (!e) pairs.set(key, (e = { rtp: null, rtcp: null, session: p.session, rtpPort }));
      if (p.port === rtpPort) e.rtp = p;
      else e.rtcp = p;
    }
    for (const e of pairs.values()) {
      const h = e.session;
      if (!this.router.isOpen(h)) continue;
      let ms = this.sessions.get(h);
      if (!ms) this.sessions.set(h, (ms = { streams: [], ended: false, queue: null }));
      const session = ms;
      const slot = session.streams.length;
      if (slot >= MEDIA_STREAMS_PER_SESSION) continue;
      session.streams.push(null);
      const rtp = e.rtp ?? { session: h, port: e.rtpPort, clientHost: null, clientPort: 0, backendHost: null, backendPort: 0 };
      void relay.restore(h, rtp, e.rtcp).then((s) => {
        if (!s) return;
        if (!this.router.isOpen(h) || this.sessions.get(h) !== session || session.ended) s.release();
        else session.streams[slot] = s;
      });
    }
  }

  /** A new initial request on an ended session (re-sent with credentials): media may be set up again. */
  reopen(h: SessionHandle): void {
    const ms = this.sessions.get(h);
    if (ms) ms.ended = false;
  }

  async close(): Promise<void> {
    this.unsubscribe?.();
    this.sessions.clear();
    await this.relay?.close();
  }

  private changed(c: SessionChange): void {
    if (c.type === 'close') {
      if (this.sessions.delete(c.session)) this.relay!.releaseSession(c.session);
    } else if (c.type === 'repin') {
      this.relay!.moveSession(c.session, c.to.host);
    }
  }

  /**
   * The source host of the session's latest client request, as the forwarder records it in the
   * session's data (`transport port host`, sip-forwarder.ts): the address the client's packets really
   * come from, unlike its Via or SDP, which a NATed client fills with its private address.
   */
  private clientSignallingHost(h: SessionHandle): string | null {
    const data = this.router.data(h);
    const m = data === null ? null : /^(?:udp|tcp) \d{1,5} (\S+)$/.exec(data);
    return m ? m[1]! : null;
  }

  /** `m` with `body` instead of its own (and Content-Length to match), parsed again. */
  private withBody(m: SipMessage, body: string, transport: SipTransport): SipMessage | null {
    const edits: SipEdit[] = [{ start: m.bodyOffset, end: m.bodyOffset + m.bodyLength, text: body }];
    const cl = findHeader(m, 'content-length');
    if (cl) edits.push({ start: cl.valueStart, end: cl.valueEnd, text: String(Buffer.byteLength(body, 'latin1')) });
    const r = parseSipMessage(applyEdits(m, edits), { transport });
    return r.ok ? r.message : null;
  }
}
