/**
 * @module The configuration of the Internet edge, owned here and merged into the service schema by
 * config/schema.ts (as admission/ and replication/ do): `services[].tls` (termination),
 * `services[].limits` (per-client-address bounds) and `backends[].tls` (TLS to a backend).
 */
import { z } from 'zod';
import { DEFAULT_CIPHERS, DEFAULT_GROUPS } from './tls-terminator.js';

/** Messages that start with "expected" are printed with ", received X" by config/load.ts. */
const path = z.string({ invalid_type_error: 'expected a file path', required_error: 'expected a file path' }).min(1, 'expected a file path');

export const certificateSchema = z
  .object({
    /** PEM certificate chain, leaf first. */
    cert: path,
    /** PEM private key. */
    key: path,
    /** Server names this pair serves; default: the certificate's own DNS names. `*.x` covers one label. */
    names: z.array(z.string().min(1)).optional(),
    /** DER OCSP response to staple (refreshed by the operator's tooling, re-read on every reload). */
    ocsp: path.optional(),
  })
  .strict();

export const tlsSchema = z
  .object({
    /** One or more pairs; the first is served to clients whose name no pair claims (unless strictSni). */
    certificates: z.array(certificateSchema).min(1),
    minVersion: z.enum(['TLSv1.2', 'TLSv1.3']).default('TLSv1.2'),
    /** OpenSSL cipher list for TLS 1.2 (TLS 1.3 uses OpenSSL's suites). */
    ciphers: z.string().min(1).default(DEFAULT_CIPHERS),
    /** Key exchange groups (OpenSSL list). */
    groups: z.string().min(1).default(DEFAULT_GROUPS),
    /** ALPN protocols offered, in order (`h2` is put first when the service has http.http2). */
    alpn: z.array(z.enum(['h2', 'http/1.1'])).min(1).default(['http/1.1']),
    /** Refuse a server name no certificate claims (instead of serving the first certificate). */
    strictSni: z.boolean().default(false),
    /** TLS session tickets (resumption without a server-side cache), under a rotating key. */
    sessionTickets: z.boolean().default(true),
    ticketKeyRotationMs: z.number().int().min(60_000).max(7 * 86_400_000).default(3_600_000),
    /** A client must finish its handshake within this time. */
    handshakeTimeoutMs: z.number().int().min(100).max(120_000).default(10_000),
    /** Reload the pairs when their files change (also reloaded by an explicit reload). */
    watchFiles: z.boolean().default(true),
    /** Client certificates (mTLS). */
    clientCertificate: z
      .object({
        /** PEM bundle of the CAs that sign client certificates. */
        ca: path,
        verify: z.enum(['required', 'optional']).default('required'),
        /** Request field carrying the verified subject to the backend; a client's own is removed. */
        subjectHeader: z
          .string()
          .regex(/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/, 'expected a header field name')
          .default('X-Client-Cert-Subject'),
      })
      .strict()
      .optional(),
  })
  .strict();

/**
 * Per-client-address bounds. maxConnectionsPerAddress is on by default (a client trickling heads
 * from one address cannot hold the listener); the rates are off (0) until an operator sets them.
 */
export const limitsSchema = z
  .object({
    /** Open connections on this listener, all clients together; 0: no limit. */
    maxConnections: z.number().int().min(0).max(10_000_000).default(0),
    maxConnectionsPerAddress: z.number().int().min(0).max(1_000_000).default(1024),
    connectionsPerSecond: z.number().min(0).max(1_000_000).default(0),
    /** HTTP only: over it, 429 with Retry-After once the request is read. */
    requestsPerSecond: z.number().min(0).max(1_000_000).default(0),
    maxAddresses: z.number().int().min(16).max(10_000_000).default(65_536),
  })
  .strict();

export const backendTlsSchema = z
  .object({
    /** PEM bundle of CAs for the backend's certificate; default: Node's bundled roots. */
    ca: path.optional(),
    /** SNI and the name checked in the backend's certificate; default: the backend's host. */
    servername: z.string().min(1).optional(),
    /** Verify the backend's certificate (on by default; off only for testing). */
    verify: z.boolean().default(true),
  })
  .strict();

/**
 * TLS passthrough (tcp services): the ClientHello's server name picks the backends, nothing is
 * decrypted. A backend with `serverNames` takes only those names; one without takes the names no
 * backend claims.
 */
export const tlsPassthroughSchema = z
  .object({
    /** The client must send its ClientHello within this time. */
    clientHelloTimeoutMs: z.number().int().min(100).max(120_000).default(10_000),
  })
  .strict();

export type TlsServiceConfig = z.infer<typeof tlsSchema>;
export type TlsPassthroughConfig = z.infer<typeof tlsPassthroughSchema>;
export type LimitsConfig = z.infer<typeof limitsSchema>;
export type BackendTlsConfig = z.infer<typeof backendTlsSchema>;
