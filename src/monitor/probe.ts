/**
 * @module The real probers: active checks of a backend that is out of rotation (or not yet known),
 * on raw `node:net` sockets. A probe answers one question, up or not, within `timeoutMs`, and always
 * releases its socket.
 */
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import net from 'node:net';
import { formatHostPort } from '../core/address.js';
import type { HostPort } from '../core/address.js';
import { realClock } from '../core/clock.js';
import type { HealthConfig } from '../config/schema.js';
import type { Backend } from '../core/backend.js';

export type ProbeConfig = HealthConfig['probe'];

/**
 * Answers whether `backend` is up. The real ones never reject; HealthMonitor reads a rejection as
 * "down" anyway. Injectable so that unit tests run on FakeClock with a fake prober.
 */
export type Prober = (backend: Backend, cfg: ProbeConfig) => Promise<boolean>;

/**
 * A status line longer than this is not a real HTTP server's: the probe gives up (down) rather than
 * buffer without bound. Real status lines are under 100 bytes.
 */
const MAX_STATUS_LINE_BYTES = 1024;

const STATUS_LINE = /^HTTP\/1\.[01] (\d{3})(?: |\r?$)/;

/**
 * Opens a socket to `backend` and settles with the first verdict of `onConnect`/`onData`, `false` on
 * any socket error, early close or the deadline. The socket is destroyed on every path.
 */
function probeSocket(
  backend: HostPort,
  timeoutMs: number,
  onConnect: (socket: net.Socket) => boolean | undefined,
  onData?: (chunk: Buffer) => boolean | undefined,
): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    let done = false;
    const socket = net.connect({ host: backend.host, port: backend.port });
    const timer = realClock.setTimeout(() => settle(false), timeoutMs);
    function settle(up: boolean): void {
      if (done) return;
      done = true;
      timer.cancel();
      socket.destroy();
      resolve(up);
    }
    socket.once('connect', () => {
      const verdict = onConnect(socket);
      if (verdict !== undefined) settle(verdict);
    });
    if (onData) {
      socket.on('data', (chunk: Buffer) => {
        const verdict = onData(chunk);
        if (verdict !== undefined) settle(verdict);
      });
    }
    socket.once('error', () => settle(false));
    socket.once('close', () => settle(false));
  });
}

/** Up when a TCP connection to the backend is accepted within `timeoutMs`. */
export function tcpProbe(backend: HostPort, cfg: ProbeConfig): Promise<boolean> {
  return probeSocket(backend, cfg.timeoutMs, () => true);
}

/**
 * Up when `GET <path>` is answered with a 2xx or 3xx status line within `timeoutMs`. Only the status
 * line is read; the connection is then destroyed (the request says `Connection: close`, so a server
 * does not keep state for it).
 */
export function httpProbe(backend: HostPort, cfg: ProbeConfig): Promise<boolean> {
  const request =
    `GET ${cfg.path} HTTP/1.1\r\nHost: ${formatHostPort(backend)}\r\n` +
    'Connection: close\r\nUser-Agent: holdfast-probe\r\n\r\n';
  let head = '';
  return probeSocket(
    backend,
    cfg.timeoutMs,
    (socket) => {
      socket.write(request, 'latin1');
      return undefined;
    },
    (chunk) => {
      head += chunk.toString('latin1');
      const eol = head.indexOf('\n');
      if (eol === -1) return head.length > MAX_STATUS_LINE_BYTES ? false : undefined;
      const m = STATUS_LINE.exec(head.slice(0, eol));
      if (!m) return false;
      const status = Number(m[1]);
      return status >= 200 && status < 400;
    },
  );
}

/**
 * Sends `payload` from a UDP socket connected to the backend and settles with `onReply`'s verdict on
 * the first datagram back, `false` on ICMP port unreachable (ECONNREFUSED on a connected socket) or
 * any other socket error, `onSilence` at the deadline. The socket is closed on every path.
 */
function probeDatagram(
  backend: HostPort,
  timeoutMs: number,
  payload: (local: HostPort) => Buffer,
  onReply: (msg: Buffer) => boolean,
  onSilence: boolean,
): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    let done = false;
    const socket = dgram.createSocket(net.isIPv6(backend.host) ? 'udp6' : 'udp4');
    const timer = realClock.setTimeout(() => settle(onSilence), timeoutMs);
    function settle(up: boolean): void {
      if (done) return;
      done = true;
      timer.cancel();
      try {
        socket.close();
      } catch {
        // already closed
      }
      resolve(up);
    }
    socket.on('error', () => settle(false));
    socket.on('message', (msg) => settle(onReply(msg)));
    socket.connect(backend.port, backend.host, () => {
      const local = socket.address();
      socket.send(payload({ host: local.address, port: local.port }), (err) => {
        if (err) settle(false);
      });
    });
  });
}

/**
 * Up unless the backend's host answers an empty datagram with ICMP port unreachable within
 * `timeoutMs` (or any reply comes first). A host that is dead or cut off sends no ICMP and looks up:
 * a UDP service needs heartbeats (agents) or `sip` probes to detect that.
 */
export function udpProbe(backend: HostPort, cfg: ProbeConfig): Promise<boolean> {
  return probeDatagram(backend, cfg.timeoutMs, () => Buffer.alloc(0), () => true, true);
}

/**
 * Up when a SIP `OPTIONS` over UDP (RFC 3261 §11) is answered by any SIP response within `timeoutMs`:
 * a 4xx or 5xx still proves a SIP stack is there. Silence, ICMP unreachable or a non-SIP reply: down.
 */
export function sipProbe(backend: HostPort, cfg: ProbeConfig): Promise<boolean> {
  const tag = randomBytes(6).toString('hex');
  return probeDatagram(
    backend,
    cfg.timeoutMs,
    (local) => {
      const me = formatHostPort(local);
      const target = formatHostPort(backend);
      return Buffer.from(
        `OPTIONS sip:${target} SIP/2.0\r\n` +
          `Via: SIP/2.0/UDP ${me};branch=z9hG4bK.hfprobe.${tag};rport\r\n` +
          'Max-Forwards: 70\r\n' +
          `From: <sip:holdfast@${me}>;tag=${tag}\r\n` +
          `To: <sip:${target}>\r\n` +
          `Call-ID: hfprobe.${tag}@holdfast\r\n` +
          'CSeq: 1 OPTIONS\r\n' +
          'User-Agent: holdfast-probe\r\n' +
          'Content-Length: 0\r\n\r\n',
        'latin1',
      );
    },
    (msg) => msg.subarray(0, 8).toString('latin1') === 'SIP/2.0 ',
    false,
  );
}

const PROBERS: Record<ProbeConfig['type'], Prober> = { tcp: tcpProbe, http: httpProbe, udp: udpProbe, sip: sipProbe };

/** The prober for a service's probe configuration. */
export function probeFor(cfg: ProbeConfig): Prober {
  return PROBERS[cfg.type];
}
