/**
 * @module The certificates a TLS listener serves: PEM pairs read from files, each validated before
 * use (the key matches the certificate, the certificate is valid now), indexed by the names it
 * serves (exact and one-label wildcards, RFC 6125 §6.4.3) with the first pair as the default.
 * A store is immutable: a reload builds a new one and the listener swaps it in whole, so a bad
 * file never leaves a listener with half its certificates.
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import { TlsCertificateError } from '../core/errors.js';

export interface CertificateFiles {
  /** PEM certificate chain (leaf first). */
  readonly cert: string;
  /** PEM private key. */
  readonly key: string;
  /** The names this pair serves; default: the DNS names of its subjectAltName (or its CN). */
  readonly names?: readonly string[] | undefined;
  /** A DER OCSP response for the certificate, stapled to every handshake that asks (status_request). */
  readonly ocsp?: string | undefined;
}

/** TLS parameters shared by every context of a listener. */
export interface TlsParameters {
  readonly minVersion: 'TLSv1.2' | 'TLSv1.3';
  /** OpenSSL cipher list for TLS 1.2 (TLS 1.3 suites are OpenSSL's defaults). */
  readonly ciphers: string;
  /** Key exchange groups, OpenSSL's colon-separated list. */
  readonly groups: string;
  /** PEM bundle of CAs that sign client certificates (mTLS), or null. */
  readonly clientCa: string | null;
}

export interface LoadedCertificate {
  readonly context: tls.SecureContext;
  readonly names: readonly string[];
  /** Leaf certificate's notAfter (ms since the epoch). */
  readonly notAfter: number;
  readonly fingerprint256: string;
  readonly files: CertificateFiles;
  /** The PEM text as validated (a reload never re-reads a file between checking and serving it). */
  readonly certPem: string;
  readonly keyPem: string;
  /** The leaf certificate in DER (what OpenSSL names when it asks for the OCSP response). */
  readonly der: Buffer;
  /** The OCSP response to staple, or null. */
  readonly ocsp: Buffer | null;
}

/** Names of the certificate: configured ones, else subjectAltName DNS entries, else the CN. */
function certificateNames(x509: X509Certificate): string[] {
  const san = x509.subjectAltName;
  if (san) {
    const names = san
      .split(/,\s*/)
      .filter((e) => e.startsWith('DNS:'))
      .map((e) => e.slice(4).toLowerCase());
    if (names.length > 0) return names;
  }
  const cn = /(?:^|\n)CN=([^\n]+)/.exec(x509.subject);
  return cn ? [cn[1]!.toLowerCase()] : [];
}

/** A TLS file's bytes (PEM as latin1 text, or raw); unreadable: TlsCertificateError naming `what`. */
export function readTlsFile(path: string, what: string): string;
export function readTlsFile(path: string, what: string, raw: true): Buffer;
export function readTlsFile(path: string, what: string, raw = false): string | Buffer {
  try {
    return raw ? readFileSync(path) : readFileSync(path, 'latin1');
  } catch (err) {
    throw new TlsCertificateError(path, `cannot read the ${what}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, { cause: err });
  }
}

/** The options of a server context for one pair: what a new pair is checked with and served with. */
export function secureContextOptions(certPem: string, keyPem: string, params: TlsParameters): tls.SecureContextOptions {
  return {
    cert: certPem,
    key: keyPem,
    minVersion: params.minVersion,
    ciphers: params.ciphers,
    ecdhCurve: params.groups,
    ...(params.clientCa !== null ? { ca: params.clientCa } : {}),
  };
}

/**
 * Reads and checks one pair: the certificate parses, the key is the certificate's, and `now` is
 * within its validity. Throws TlsCertificateError naming the file and the reason.
 */
export function loadCertificate(files: CertificateFiles, params: TlsParameters, now: number): LoadedCertificate {
  const certPem = readTlsFile(files.cert, 'certificate');
  const keyPem = readTlsFile(files.key, 'private key');
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(certPem);
  } catch (err) {
    throw new TlsCertificateError(files.cert, `not a PEM certificate: ${(err as Error).message}`, { cause: err });
  }
  let matches: boolean;
  try {
    matches = x509.checkPrivateKey(createPrivateKey(keyPem));
  } catch (err) {
    throw new TlsCertificateError(files.key, `not a PEM private key: ${(err as Error).message}`, { cause: err });
  }
  if (!matches) throw new TlsCertificateError(files.key, `the private key does not match the certificate ${files.cert}`);
  const notBefore = Date.parse(x509.validFrom);
  const notAfter = Date.parse(x509.validTo);
  if (now < notBefore) throw new TlsCertificateError(files.cert, `not valid before ${new Date(notBefore).toISOString()}`);
  if (now > notAfter) throw new TlsCertificateError(files.cert, `expired on ${new Date(notAfter).toISOString()}`);
  let context: tls.SecureContext;
  try {
    context = tls.createSecureContext(secureContextOptions(certPem, keyPem, params));
  } catch (err) {
    throw new TlsCertificateError(files.cert, `OpenSSL refused the pair: ${(err as Error).message}`, { cause: err });
  }
  const names = files.names && files.names.length > 0 ? files.names.map((n) => n.toLowerCase()) : certificateNames(x509);
  let ocsp: Buffer | null = null;
  if (files.ocsp !== undefined) {
    ocsp = readTlsFile(files.ocsp, 'OCSP response', true);
    // An OCSPResponse is a DER SEQUENCE (RFC 6960 §4.2.1): a PEM or empty file is refused here.
    if (ocsp.length < 8 || ocsp[0] !== 0x30) throw new TlsCertificateError(files.ocsp, 'not a DER OCSP response');
  }
  return { context, names, notAfter, fingerprint256: x509.fingerprint256, files, certPem, keyPem, der: x509.raw, ocsp };
}

/** Every certificate of a listener, by name. */
export class CertificateStore {
  private readonly exact = new Map<string, LoadedCertificate>();
  /** `*.example.com` stored under `example.com`. */
  private readonly wildcard = new Map<string, LoadedCertificate>();

  /** `strictSni`: a name no certificate serves is refused instead of getting the default. */
  constructor(
    readonly certificates: readonly LoadedCertificate[],
    readonly strictSni: boolean,
  ) {
    // The first pair that claims a name keeps it: configuration order decides, as in HAProxy.
    for (const c of certificates) {
      for (const name of c.names) {
        if (name.startsWith('*.')) {
          if (!this.wildcard.has(name.slice(2))) this.wildcard.set(name.slice(2), c);
        } else if (!this.exact.has(name)) this.exact.set(name, c);
      }
    }
  }

  get defaultCertificate(): LoadedCertificate {
    return this.certificates[0]!;
  }

  /**
   * The certificate for an SNI name: exact match, then a wildcard one label deep, then the default
   * (null when strictSni). No SNI at all (an IP literal client) gets the default.
   */
  select(servername: string | undefined): LoadedCertificate | null {
    if (!servername) return this.defaultCertificate;
    const name = servername.toLowerCase().replace(/\.$/, '');
    const hit = this.exact.get(name);
    if (hit) return hit;
    const dot = name.indexOf('.');
    if (dot > 0) {
      const wild = this.wildcard.get(name.slice(dot + 1));
      if (wild) return wild;
    }
    return this.strictSni ? null : this.defaultCertificate;
  }
}

/** Loads every pair; the first failure throws (nothing partial). */
export function loadCertificateStore(files: readonly CertificateFiles[], params: TlsParameters, strictSni: boolean, now: number): CertificateStore {
  return new CertificateStore(
    files.map((f) => loadCertificate(f, params, now)),
    strictSni,
  );
}
