/**
 * @module The real probers: active checks of a backend that is out of rotation (or not yet known),
 * on raw `node:net` sockets. A probe answers one question, up or not, within `timeoutMs`, and always
 * releases its socket.
 */
import net from 'node:net';
import { formatHostPort } from '../core/address.js';
import type { HostPort } from '../core/address.js';
import { realClock } from '../core/clock.js';
import type { HealthConfig } from '../config/schema.js';
import type { Backend } from './backend.js';

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

/** The prober for a service's probe configuration. */
export function probeFor(cfg: ProbeConfig): Prober {
  return cfg.type === 'http' ? httpProbe : tcpProbe;
}
