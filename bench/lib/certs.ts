/**
 * @module Test certificates made by the openssl command line: a CA (ECDSA P-256) and leaf pairs it
 * signs, with the SAN names a test asks for, valid for 30 days, or already expired. Everything lives
 * in a temporary directory the caller removes.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface PemPair {
  readonly cert: string;
  readonly key: string;
}

export interface CertKit {
  readonly dir: string;
  readonly ca: PemPair;
  /** A leaf for `names` (first one is the CN), signed by the CA. `expired`: valid in 2020 only. */
  leaf(label: string, names: readonly string[], opts?: { expired?: boolean; clientAuth?: boolean }): PemPair;
  /** A self-signed pair nobody's CA knows (for mTLS rejection). */
  selfSigned(label: string, cn: string): PemPair;
  /** A DER OCSP response for `pair` signed by the CA (status "unknown": the CA keeps no index), its path. */
  ocspResponse(label: string, pair: PemPair): string;
  remove(): void;
}

function openssl(args: readonly string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];

export function makeCertKit(): CertKit {
  const dir = mkdtempSync(join(tmpdir(), 'holdfast-certs-'));
  const ca = { cert: join(dir, 'ca.pem'), key: join(dir, 'ca.key') };
  openssl(['req', '-x509', ...EC, '-keyout', ca.key, '-out', ca.cert, '-days', '30', '-subj', '/CN=holdfast test CA'], dir);
  // `openssl ca` signs with explicit dates (the expired leaves); it wants a database.
  writeFileSync(
    join(dir, 'ca.cnf'),
    '[ca]\ndefault_ca=d\n[d]\ndatabase=index.txt\nnew_certs_dir=.\nserial=serial\npolicy=p\ndefault_md=sha256\ncopy_extensions=copy\nunique_subject=no\n[p]\ncommonName=supplied\n',
  );
  writeFileSync(join(dir, 'index.txt'), '');
  writeFileSync(join(dir, 'serial'), '1000\n');
  return {
    dir,
    ca,
    leaf(label, names, opts = {}) {
      const pair = { cert: join(dir, `${label}.pem`), key: join(dir, `${label}.key`) };
      const csr = join(dir, `${label}.csr`);
      const san = names.map((n) => (/^[\d.]+$/.test(n) ? `IP:${n}` : `DNS:${n}`)).join(',');
      const usage = opts.clientAuth ? 'clientAuth' : 'serverAuth';
      openssl(['req', '-new', ...EC, '-keyout', pair.key, '-out', csr, '-subj', `/CN=${names[0]}`, '-addext', `subjectAltName=${san}`, '-addext', `extendedKeyUsage=${usage}`], dir);
      if (opts.expired) {
        openssl(['ca', '-batch', '-config', 'ca.cnf', '-cert', ca.cert, '-keyfile', ca.key, '-in', csr, '-startdate', '20200101000000Z', '-enddate', '20200102000000Z', '-out', pair.cert, '-notext'], dir);
      } else {
        openssl(['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial', '-days', '30', '-copy_extensions', 'copy', '-out', pair.cert], dir);
      }
      return pair;
    },
    selfSigned(label, cn) {
      const pair = { cert: join(dir, `${label}.pem`), key: join(dir, `${label}.key`) };
      openssl(['req', '-x509', ...EC, '-keyout', pair.key, '-out', pair.cert, '-days', '30', '-subj', `/CN=${cn}`], dir);
      return pair;
    },
    ocspResponse(label, pair) {
      const req = join(dir, `${label}.ocsp-req.der`);
      const resp = join(dir, `${label}.ocsp.der`);
      writeFileSync(join(dir, 'ocsp-index.txt'), '');
      openssl(['ocsp', '-issuer', ca.cert, '-cert', pair.cert, '-no_nonce', '-reqout', req], dir);
      openssl(['ocsp', '-index', 'ocsp-index.txt', '-rsigner', ca.cert, '-rkey', ca.key, '-CA', ca.cert, '-reqin', req, '-respout', resp, '-ndays', '1'], dir);
      return resp;
    },
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
