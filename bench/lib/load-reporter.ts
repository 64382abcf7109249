/**
 * @module A backend that reports its own load to a dispatcher, as an agent would (issue 8 benchmark and
 * tests): every interval, a load vector (src/wire/load-vector.ts) sealed with the cluster key
 * (src/wire/envelope.ts) goes by UDP to the dispatcher's monitor address under the backend's agent
 * host id. The dispatcher's AgentReceiver takes it like an agent's. The application knows its own
 * utilisation exactly; on one shared machine the agent's /proc collector would only see the machine.
 */
import dgram from 'node:dgram';
import { encodeLoadVector } from '../../src/wire/load-vector.js';
import { MessageType, seal } from '../../src/wire/envelope.js';

export interface LoadReporterOptions {
  /** The agent Host_Identity configured on the backend (services[].backends[].agent). */
  readonly host: number;
  /** The dispatcher's monitor.listen. */
  readonly monitorHost: string;
  readonly monitorPort: number;
  readonly key: Buffer;
  readonly intervalMs: number;
  /** The load to report now, in [0, 1] (sampled once per interval). */
  readonly load: () => number;
}

export interface LoadReporter {
  /** Sends one vector now (besides the periodic ones). */
  sendNow(): void;
  close(): void;
}

/** Starts reporting; every field but `load` goes into the vector as that same load (one number matters: `load`). */
export function startLoadReporter(opts: LoadReporterOptions): LoadReporter {
  const socket = dgram.createSocket('udp4');
  socket.on('error', () => {});
  let seq = 0;
  let closed = false;
  const sendNow = (): void => {
    if (closed) return;
    const load = opts.load();
    seq = (seq + 1) >>> 0;
    const body = encodeLoadVector({
      host: opts.host,
      seq,
      timestamp: Date.now() % 2 ** 32,
      cpu: load,
      memory: 0,
      network: 0,
      io: 0,
      backlog: load,
      load,
    });
    socket.send(seal(MessageType.LoadVector, body, opts.key), opts.monitorPort, opts.monitorHost);
  };
  const timer = setInterval(sendNow, opts.intervalMs);
  return {
    sendNow,
    close() {
      if (closed) return;
      closed = true;
      clearInterval(timer);
      socket.close();
    },
  };
}
