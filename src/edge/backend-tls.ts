/**
 * @module TLS to backends (`backends[].tls`): the connect options of each backend that asked for it,
 * built once at start (the CA bundle read and checked then, not per connection), and one connect
 * function the HTTP and TCP forwarders share: plain net.connect, or tls.connect verifying the
 * backend's certificate against the CA (on by default) for its SNI name.
 */
import net from 'node:net';
import tls from 'node:tls';
import type { Backend } from '../core/backend.js';
import { readTlsFile } from './tls-certificates.js';
import type { BackendTlsConfig } from './edge-schema.js';

const options = new WeakMap<Backend, tls.ConnectionOptions>();

/** Records `backend`'s TLS settings. Throws TlsCertificateError when the CA file cannot be read. */
export function configureBackendTls(backend: Backend, cfg: BackendTlsConfig | undefined): void {
  if (!cfg) return;
  const ca = cfg.ca === undefined ? undefined : readTlsFile(cfg.ca, `CA bundle of backend ${backend.id}`);
  const servername = cfg.servername ?? (net.isIP(backend.host) === 0 ? backend.host : undefined);
  options.set(backend, {
    host: backend.host,
    port: backend.port,
    ...(servername !== undefined ? { servername } : {}),
    ...(ca !== undefined ? { ca } : {}),
    rejectUnauthorized: cfg.verify,
    ALPNProtocols: ['http/1.1'],
  });
}

export function usesTls(backend: Backend): boolean {
  return options.has(backend);
}

/**
 * A connection to `backend`: TLS when configured (its 'secureConnect' is the moment it is up, as
 * 'connect' is for a plain one; `readyEvent` says which to wait for).
 */
export function connectBackend(backend: Backend, extra: Omit<net.TcpNetConnectOpts, 'host' | 'port'>): { socket: net.Socket; readyEvent: 'connect' | 'secureConnect' } {
  const o = options.get(backend);
  if (!o) return { socket: net.connect({ ...extra, host: backend.host, port: backend.port }), readyEvent: 'connect' };
  // onread is for plain sockets: a TLSSocket hands its decrypted bytes to 'data' listeners.
  const { onread: _onread, ...rest } = extra;
  return { socket: tls.connect({ ...rest, ...o }), readyEvent: 'secureConnect' };
}
