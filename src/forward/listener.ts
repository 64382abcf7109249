/** @module A service's listening socket: binds, hands accepted sockets to its forwarder, unbinds. */
import net from 'node:net';
import { parseHostPort, type HostPort } from '../core/address.js';
import { ListenError } from '../core/errors.js';
import type { Forwarder } from '../pipeline/service-runtime.js';
import type { Edge } from '../edge/edge.js';

export interface Listener {
  readonly address: HostPort;
  /** Stop accepting; connections already accepted are the forwarder's to finish. */
  close(): Promise<void>;
}

/**
 * Listens on `listen` (port 0 picks a free port). Both HTTP and TCP listeners are allowHalfOpen:
 * a client that half-closes after sending still gets its whole reply.
 */
export async function listen(listenAt: string, forwarder: Forwarder, edge: Edge | null = null): Promise<Listener> {
  const at = parseHostPort(listenAt);
  if (!at) throw new ListenError(listenAt);
  // The edge (TLS termination, per-client limits) gates every connection before the forwarder sees it.
  const options = { allowHalfOpen: true, noDelay: true };
  const onSocket = (socket: net.Socket): void => forwarder.handle(socket);
  const server = edge ? edge.createServer(options, onSocket) : net.createServer(options, onSocket);
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error) => reject(new ListenError(listenAt, { cause: err }));
    server.once('error', onError);
    server.listen({ host: at.host, port: at.port, backlog: 1024 }, () => {
      server.off('error', onError);
      resolve();
    });
  });
  server.on('error', () => {}); // accept errors (EMFILE) must not kill the process
  const bound = server.address() as net.AddressInfo;
  const address = { host: bound.address, port: bound.port };
  return {
    address,
    // server.close() alone waits for every accepted connection; those belong to the forwarder,
    // which drains them itself, so resolve as soon as no new connection can arrive.
    close: async () => {
      server.close();
    },
  };
}

