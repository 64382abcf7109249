/**
 * @module A small real RTSP/1.0 server and client for the tests (RFC 2326), written independently of
 * the product's inspector. The server answers OPTIONS, DESCRIBE (with an SDP), SETUP (assigns a
 * Session and binds a UDP RTP/RTCP pair it announces as server_port), PLAY (then sends RTP packets
 * from its RTP port to the client_port it was given, at the address the RTSP connection came from),
 * GET_PARAMETER (keep-alive) and TEARDOWN; a request naming a session it does not know gets 454.
 * It records every request and every RTCP datagram it receives.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import type { TestContext } from 'node:test';

export interface RtspReply {
  readonly status: number;
  readonly reason: string;
  /** Lower-case names; the last value of a repeated header. */
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

export interface ServerSession {
  readonly id: string;
  /** The client_port the SETUP carried (what the dispatcher rewrote it to). */
  readonly clientPort: [number, number];
  /** The host RTP goes to: the RTSP connection's remote address. */
  readonly clientHost: string;
  readonly rtp: dgram.Socket;
  readonly rtcp: dgram.Socket;
  readonly serverPort: [number, number];
  /** RTCP datagrams received, as text. */
  readonly rtcpReceived: string[];
}

export interface RtspServerOptions {
  /** Default 127.0.0.1. */
  readonly host?: string;
  /** Names sessions and RTP payloads ("<label>-<n>"). */
  readonly label: string;
  /** RTP packets sent after PLAY; default 5. */
  readonly packets?: number;
  /** Bind the session's UDP pair at these ports when free (a restarted server on another address). */
  readonly serverPorts?: () => [number, number] | null;
}

export interface RtspServer {
  readonly port: number;
  readonly host: string;
  readonly requests: { method: string; head: string }[];
  readonly sessions: Map<string, ServerSession>;
  /** Stops listening and destroys every connection and UDP socket (a crashed server). */
  kill(): Promise<void>;
}

/** Parses `a-b` (or `a`, meaning a-(a+1)). */
export function ports(text: string | undefined): [number, number] | null {
  const m = text === undefined ? null : /^(\d+)(?:-(\d+))?$/.exec(text);
  if (!m) return null;
  const a = Number(m[1]);
  return [a, m[2] === undefined ? a + 1 : Number(m[2])];
}

/** The value of parameter `name` in a Transport header's first spec. */
export function transportParam(transport: string | undefined, name: string): string | undefined {
  const first = (transport ?? '').split(',')[0] ?? '';
  for (const part of first.split(';')) {
    const eq = part.indexOf('=');
    const k = (eq === -1 ? part : part.slice(0, eq)).trim().toLowerCase();
    if (k === name) return eq === -1 ? '' : part.slice(eq + 1).trim();
  }
  return undefined;
}

/** Reads RTSP messages (head + Content-Length body) off a socket. */
class Reader {
  private buf = Buffer.alloc(0);
  constructor(private readonly onMessage: (startLine: string, headers: Record<string, string>, head: string, body: string) => void) {}
  push(chunk: Buffer): void {
    this.buf = Buffer.concat([this.buf, chunk]);
    for (;;) {
      const end = this.buf.indexOf('\r\n\r\n');
      if (end === -1) return;
      const head = this.buf.toString('latin1', 0, end);
      const lines = head.split('\r\n');
      const headers: Record<string, string> = {};
      for (const line of lines.slice(1)) {
        const c = line.indexOf(':');
        if (c > 0) headers[line.slice(0, c).trim().toLowerCase()] = line.slice(c + 1).trim();
      }
      const length = Number(headers['content-length'] ?? '0');
      if (this.buf.length < end + 4 + length) return;
      const body = this.buf.toString('latin1', end + 4, end + 4 + length);
      this.buf = this.buf.subarray(end + 4 + length);
      this.onMessage(lines[0]!, headers, head, body);
    }
  }
}

async function bindPair(host: string, wanted: [number, number] | null): Promise<[dgram.Socket, dgram.Socket]> {
  const bind = (port: number) =>
    new Promise<dgram.Socket | null>((resolve) => {
      const s = dgram.createSocket('udp4');
      s.once('error', () => {
        s.close();
        resolve(null);
      });
      s.bind(port, host, () => resolve(s));
    });
  if (wanted) {
    const a = await bind(wanted[0]);
    const b = a ? await bind(wanted[1]) : null;
    if (a && b) return [a, b];
    a?.close();
  }
  for (let i = 0; i < 50; i++) {
    const a = await bind(0);
    if (!a) continue;
    const p = a.address().port;
    if (p % 2 === 0 && p < 65535) {
      const b = await bind(p + 1);
      if (b) return [a, b];
    }
    a.close();
  }
  throw new Error('rtsp test server: no consecutive UDP port pair');
}

export async function startRtspServer(t: TestContext, opts: RtspServerOptions): Promise<RtspServer> {
  const host = opts.host ?? '127.0.0.1';
  const requests: { method: string; head: string }[] = [];
  const sessions = new Map<string, ServerSession>();
  const sockets = new Set<net.Socket>();
  let next = 0;
  const closeSession = (s: ServerSession) => {
    sessions.delete(s.id);
    s.rtp.close();
    s.rtcp.close();
  };
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    const reply = (status: number, reason: string, cseq: string | undefined, headers: string[] = [], body = '') => {
      if (socket.destroyed) return;
      let out = `RTSP/1.0 ${status} ${reason}\r\nCSeq: ${cseq ?? '0'}\r\n`;
      for (const h of headers) out += `${h}\r\n`;
      out += `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
      socket.write(out);
    };
    const reader = new Reader((startLine, headers, head) => {
      const [method = '', uri = ''] = startLine.split(' ');
      requests.push({ method, head });
      const cseq = headers['cseq'];
      const sid = headers['session']?.split(';')[0]?.trim();
      const session = sid === undefined ? undefined : sessions.get(sid);
      if (sid !== undefined && !session) return reply(454, 'Session Not Found', cseq);
      switch (method) {
        case 'OPTIONS':
          return reply(200, 'OK', cseq, ['Public: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN, GET_PARAMETER']);
        case 'DESCRIBE': {
          const sdp = `v=0\r\no=- 1 1 IN IP4 ${host}\r\ns=${opts.label}\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=control:track1\r\n`;
          return reply(200, 'OK', cseq, [`Content-Base: ${uri}/`, 'Content-Type: application/sdp'], sdp);
        }
        case 'SETUP': {
          const transport = headers['transport'];
          const cp = ports(transportParam(transport, 'client_port'));
          if (!cp) return reply(461, 'Unsupported Transport', cseq);
          void bindPair(host, opts.serverPorts?.() ?? null).then(([rtp, rtcp]) => {
            const id = sid ?? `${opts.label}-${++next}`;
            const s: ServerSession = {
              id,
              clientPort: cp,
              clientHost: socket.remoteAddress ?? '127.0.0.1',
              rtp,
              rtcp,
              serverPort: [rtp.address().port, rtcp.address().port],
              rtcpReceived: [],
            };
            rtcp.on('message', (msg) => s.rtcpReceived.push(msg.toString()));
            rtp.on('message', () => {});
            sessions.set(id, s);
            reply(200, 'OK', cseq, [
              `Session: ${id};timeout=60`,
              `Transport: RTP/AVP;unicast;client_port=${cp[0]}-${cp[1]};server_port=${s.serverPort[0]}-${s.serverPort[1]};ssrc=1234ABCD`,
            ]);
          });
          return;
        }
        case 'PLAY': {
          if (!session) return reply(455, 'Method Not Valid in This State', cseq);
          reply(200, 'OK', cseq, [`Session: ${session.id}`, `RTP-Info: url=${uri};seq=0;rtptime=0`]);
          for (let i = 0; i < (opts.packets ?? 5); i++) {
            session.rtp.send(`RTP ${session.id} ${i}`, session.clientPort[0], session.clientHost);
          }
          return;
        }
        case 'GET_PARAMETER':
          return reply(200, 'OK', cseq, session ? [`Session: ${session.id}`] : []);
        case 'TEARDOWN':
          if (session) closeSession(session);
          return reply(200, 'OK', cseq);
        default:
          return reply(501, 'Not Implemented', cseq);
      }
    });
    socket.on('data', (chunk: Buffer) => reader.push(chunk));
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  const port = (server.address() as net.AddressInfo).port;
  let killed = false;
  const kill = async () => {
    if (killed) return;
    killed = true;
    for (const s of [...sessions.values()]) closeSession(s);
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  t.after(kill);
  return { port, host, requests, sessions, kill };
}

/** An RTSP client over one TCP connection: request() sends with the next CSeq and awaits its reply. */
export class RtspClient {
  private cseq = 0;
  private readonly waiting = new Map<string, (r: RtspReply) => void>();
  readonly closed: Promise<void>;
  /** Every byte the server side sent (to check what a rejected connection got). */
  received = '';

  private constructor(readonly socket: net.Socket) {
    const reader = new Reader((startLine, headers, _head, body) => {
      const m = /^RTSP\/1\.0 (\d{3}) ?(.*)$/.exec(startLine);
      if (!m) return;
      const r: RtspReply = { status: Number(m[1]), reason: m[2] ?? '', headers, body };
      const w = this.waiting.get(headers['cseq'] ?? '');
      this.waiting.delete(headers['cseq'] ?? '');
      w?.(r);
    });
    socket.on('data', (chunk: Buffer) => {
      this.received += chunk.toString('latin1');
      reader.push(chunk);
    });
    socket.on('error', () => {});
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
  }

  static async connect(t: TestContext, port: number, host = '127.0.0.1'): Promise<RtspClient> {
    const socket = net.connect(port, host);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const c = new RtspClient(socket);
    t.after(() => socket.destroy());
    return c;
  }

  request(method: string, uri: string, headers: Record<string, string> = {}): Promise<RtspReply> {
    const cseq = String(++this.cseq);
    let out = `${method} ${uri} RTSP/1.0\r\nCSeq: ${cseq}\r\n`;
    for (const [k, v] of Object.entries(headers)) out += `${k}: ${v}\r\n`;
    out += '\r\n';
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no reply to ${method} (CSeq ${cseq}) within 5 s`)), 5000);
      this.waiting.set(cseq, (r) => {
        clearTimeout(timer);
        resolve(r);
      });
      this.socket.write(out);
      this.closed.then(() => {
        clearTimeout(timer);
        reject(new Error(`connection closed before the reply to ${method}`));
      }, () => {});
    });
  }
}

/** Two UDP sockets on consecutive ports (RTP even, RTCP odd) on 127.0.0.1: a media client. */
export async function mediaClient(t: TestContext): Promise<{ rtp: dgram.Socket; rtcp: dgram.Socket; rtpReceived: { text: string; port: number }[] }> {
  const [rtp, rtcp] = await bindPair('127.0.0.1', null);
  const rtpReceived: { text: string; port: number }[] = [];
  rtp.on('message', (msg, rinfo) => rtpReceived.push({ text: msg.toString(), port: rinfo.port }));
  t.after(() => {
    rtp.close();
    rtcp.close();
  });
  return { rtp, rtcp, rtpReceived };
}
