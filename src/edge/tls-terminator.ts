/**
 * @module TLS termination for one listener, on node:tls (OpenSSL): the tls.Server options built
 * from a service's `tls` section, certificate selection by SNI, certificate reload without a
 * restart (new pairs validated first; a bad one keeps the old store and says why), session tickets
 * under a rotating key, optional client-certificate verification, a handshake timeout, and every
 * failed handshake counted by reason. The forwarders behind it see a TLSSocket as they see a
 * net.Socket: decrypted bytes.
 */
import { constants as cryptoConstants, randomBytes } from 'node:crypto';
import { watch, type FSWatcher } from 'node:fs';
import type net from 'node:net';
import tls from 'node:tls';
import type { Clock, TimerHandle } from '../core/clock.js';
import { TlsCertificateError } from '../core/errors.js';
import { CertificateStore, loadCertificateStore, readTlsFile, secureContextOptions, type CertificateFiles, type TlsParameters } from './tls-certificates.js';

export interface TlsConfig {
  readonly certificates: readonly CertificateFiles[];
  readonly minVersion: 'TLSv1.2' | 'TLSv1.3';
  readonly ciphers: string;
  readonly groups: string;
  readonly alpn: readonly string[];
  /** A server name no certificate serves is refused (else it gets the first certificate). */
  readonly strictSni: boolean;
  readonly sessionTickets: boolean;
  readonly ticketKeyRotationMs: number;
  readonly handshakeTimeoutMs: number;
  /** Reload when a certificate or key file changes. */
  readonly watchFiles: boolean;
  readonly clientCertificate?:
    | {
        /** PEM bundle of the CAs that sign client certificates. */
        readonly ca: string;
        /** required: no valid client certificate, no handshake. optional: asked, and passed on when valid. */
        readonly verify: 'required' | 'optional';
        /** The request field that carries the verified subject to the backend (a client's own is removed). */
        readonly subjectHeader: string;
      }
    | undefined;
}

/** Why a handshake failed. */
export type TlsFailure = 'timeout' | 'unknown-sni' | 'client-certificate' | 'protocol' | 'closed';

export interface TlsStats {
  handshakes: number;
  failures: Record<TlsFailure, number>;
  reloads: number;
  reloadFailures: number;
}

export interface TlsEvents {
  /** A reload was refused: the old certificates stay in service. */
  onReloadError?(err: TlsCertificateError): void;
  onReload?(store: CertificateStore): void;
  onHandshakeError?(reason: TlsFailure, err: Error, remoteAddress: string | undefined): void;
}

/** Default TLS 1.2 suites: ECDHE with AEAD only (Mozilla "intermediate"). TLS 1.3 suites are OpenSSL's. */
export const DEFAULT_CIPHERS =
  'ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305';
export const DEFAULT_GROUPS = 'X25519:P-256:P-384';
/** File changes arrive in bursts (certbot writes cert then key): reload once they settle. */
const WATCH_SETTLE_MS = 200;
const TICKET_KEY_BYTES = 48;

function classify(err: Error & { code?: string }): TlsFailure {
  const code = err.code ?? '';
  if (code === 'ERR_TLS_HANDSHAKE_TIMEOUT') return 'timeout';
  if (/unknown server name/i.test(err.message)) return 'unknown-sni';
  if (/certificate|CERT/i.test(err.message) || code.includes('CERT')) return 'client-certificate';
  if (code === 'ECONNRESET' || code === 'EPIPE' || /socket hang up|disconnected/i.test(err.message)) return 'closed';
  return 'protocol';
}

export class TlsTerminator {
  private store: CertificateStore;
  readonly stats: TlsStats = {
    handshakes: 0,
    failures: { timeout: 0, 'unknown-sni': 0, 'client-certificate': 0, protocol: 0, closed: 0 },
    reloads: 0,
    reloadFailures: 0,
  };
  private readonly params: TlsParameters;
  private readonly servers = new Set<tls.Server>();
  private rotation: TimerHandle | null = null;
  private watchers: FSWatcher[] = [];
  private settle: TimerHandle | null = null;
  private ticketKeys: Buffer;
  private closed = false;

  /** Throws TlsCertificateError when a pair cannot be served: a listener never starts half-configured. */
  constructor(
    private readonly config: TlsConfig,
    private readonly clock: Clock,
    private readonly events: TlsEvents = {},
  ) {
    this.params = {
      minVersion: config.minVersion,
      ciphers: config.ciphers,
      groups: config.groups,
      clientCa: config.clientCertificate ? readTlsFile(config.clientCertificate.ca, 'client CA bundle') : null,
    };
    this.store = loadCertificateStore(config.certificates, this.params, config.strictSni, clock.wallNow());
    this.ticketKeys = randomBytes(TICKET_KEY_BYTES);
    if (config.sessionTickets) {
      this.rotation = clock.setInterval(() => this.rotateTicketKeys(), config.ticketKeyRotationMs);
    }
    if (config.watchFiles) this.watchFiles();
  }

  get certificates(): CertificateStore {
    return this.store;
  }

  /** A tls.Server whose accepted, handshaken sockets go to `onSecure`. */
  createServer(netOptions: net.ServerOpts, onSecure: (socket: tls.TLSSocket) => void): tls.Server {
    const cc = this.config.clientCertificate;
    const server = tls.createServer({
      ...netOptions,
      // tls.Server builds its default context from these options (a `secureContext` option is
      // ignored there): the default certificate, for clients that send no SNI.
      ...this.contextOptionsOf(this.store),
      SNICallback: (servername, cb) => {
        const c = this.store.select(servername);
        if (c) cb(null, c.context);
        else cb(new Error(`unknown server name ${JSON.stringify(servername)}`));
      },
      ALPNProtocols: [...this.config.alpn],
      handshakeTimeout: this.config.handshakeTimeoutMs,
      requestCert: cc !== undefined,
      rejectUnauthorized: cc?.verify === 'required',
      ...(this.config.sessionTickets ? { ticketKeys: this.ticketKeys, sessionTimeout: Math.ceil(this.config.ticketKeyRotationMs / 1000) } : {}),
      ...(this.config.sessionTickets ? {} : { secureOptions: cryptoConstants.SSL_OP_NO_TICKET }),
    });
    server.on('secureConnection', (socket: tls.TLSSocket) => {
      this.stats.handshakes++;
      onSecure(socket);
    });
    // OCSP stapling: the response configured for the certificate the handshake uses, if any.
    server.on('OCSPRequest', (certificate: Buffer, _issuer: Buffer, cb: (err: Error | null, resp: Buffer | null) => void) => {
      const c = this.store.certificates.find((x) => x.der.equals(certificate));
      cb(null, c?.ocsp ?? null);
    });
    server.on('tlsClientError', (err: Error, socket: tls.TLSSocket) => {
      // A client certificate that fails verification is destroyed by node with no error of its own
      // ("socket hang up"); the verification error is on the socket.
      const reason = socket.authorizationError ? 'client-certificate' : classify(err);
      this.stats.failures[reason]++;
      this.events.onHandshakeError?.(reason, err, socket.remoteAddress);
      socket.destroy();
    });
    this.servers.add(server);
    server.once('close', () => this.servers.delete(server));
    return server;
  }

  /**
   * Re-reads every certificate and key. All valid: the new store serves every handshake from now
   * on (connections already up keep theirs). Any invalid: the old store stays and the error is
   * returned (and reported to onReloadError).
   */
  reload(): TlsCertificateError | null {
    let next: CertificateStore;
    try {
      next = loadCertificateStore(this.config.certificates, this.params, this.config.strictSni, this.clock.wallNow());
    } catch (err) {
      if (!(err instanceof TlsCertificateError)) throw err;
      this.stats.reloadFailures++;
      this.events.onReloadError?.(err);
      return err;
    }
    this.store = next;
    for (const s of this.servers) s.setSecureContext({ ...this.contextOptionsOf(next) });
    this.stats.reloads++;
    this.events.onReload?.(next);
    return null;
  }

  /** New ticket keys: tickets issued under the old key no longer resume (a full handshake instead). */
  rotateTicketKeys(): void {
    this.ticketKeys = randomBytes(TICKET_KEY_BYTES);
    for (const s of this.servers) s.setTicketKeys(this.ticketKeys);
  }

  /** The verified client certificate's subject (`CN=...,O=...`), or null. */
  clientSubject(socket: tls.TLSSocket): string | null {
    if (!this.config.clientCertificate || !socket.authorized) return null;
    const cert = socket.getPeerCertificate();
    if (!cert || !cert.subject) return null;
    return Object.entries(cert.subject)
      .map(([k, v]) => `${k}=${Array.isArray(v) ? v.join('+') : String(v)}`)
      .join(',');
  }

  close(): void {
    this.closed = true;
    this.rotation?.cancel();
    this.rotation = null;
    this.settle?.cancel();
    this.settle = null;
    for (const w of this.watchers) w.close();
    this.watchers = [];
  }

  private contextOptionsOf(store: CertificateStore): tls.SecureContextOptions {
    const c = store.defaultCertificate;
    return secureContextOptions(c.certPem, c.keyPem, this.params);
  }


  /**
   * Watches every certificate and key file. Re-armed after each change: tools that replace a file by
   * renaming a new one over it (certbot, kubernetes secrets) leave the old watch on a dead inode.
   */
  private watchFiles(): void {
    for (const w of this.watchers) w.close();
    this.watchers = [];
    const onChange = (): void => {
      this.settle?.cancel();
      this.settle = this.clock.setTimeout(() => {
        this.settle = null;
        if (this.closed) return;
        this.reload();
        this.watchFiles();
      }, WATCH_SETTLE_MS);
    };
    const files = new Set(this.config.certificates.flatMap((c) => [c.cert, c.key]));
    for (const f of files) {
      try {
        const w = watch(f, { persistent: false }, onChange);
        w.on('error', () => {});
        this.watchers.push(w);
      } catch {
        // A file that cannot be watched is still reloaded by an explicit reload.
      }
    }
  }
}

