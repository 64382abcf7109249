import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TlsCertificateError } from '../core/errors.js';
import { makeCertKit } from '../../bench/lib/certs.js';
import { loadCertificate, loadCertificateStore, type TlsParameters } from './tls-certificates.js';

const PARAMS: TlsParameters = { minVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES128-GCM-SHA256', groups: 'X25519:P-256', clientCa: null };
const DAY_MS = 86_400_000;

test('SNI selection: exact names, one-label wildcards, the first pair as default; strict SNI refuses unknown names', (t) => {
  const kit = makeCertKit();
  t.after(() => kit.remove());
  const a = kit.leaf('a', ['a.test', 'www.a.test']);
  const w = kit.leaf('w', ['*.w.test', 'a.test']);
  const store = loadCertificateStore([a, w], PARAMS, false, Date.now());
  assert.deepEqual(store.certificates.map((c) => c.names), [['a.test', 'www.a.test'], ['*.w.test', 'a.test']]);
  const pick = (name: string | undefined) => store.select(name)?.files.cert ?? null;
  assert.equal(pick('a.test'), a.cert, 'the first pair that claims a name keeps it');
  assert.equal(pick('WWW.A.TEST.'), a.cert, 'case and a trailing dot do not matter');
  assert.equal(pick('x.w.test'), w.cert);
  assert.equal(pick('y.x.w.test'), a.cert, 'a wildcard covers one label only: default');
  assert.equal(pick('w.test'), a.cert, 'the bare domain is not the wildcard: default');
  assert.equal(pick(undefined), a.cert, 'no SNI: default');
  const strict = loadCertificateStore([a, w], PARAMS, true, Date.now());
  assert.equal(strict.select('unknown.test'), null);
  assert.equal(strict.select('x.w.test')?.files.cert, w.cert);
  assert.equal(strict.select(undefined)?.files.cert, a.cert, 'no SNI still gets the default');
});

test('configured names replace the certificate own names', (t) => {
  const kit = makeCertKit();
  t.after(() => kit.remove());
  const a = kit.leaf('a', ['a.test']);
  const c = loadCertificate({ ...a, names: ['Other.Test'] }, PARAMS, Date.now());
  assert.deepEqual(c.names, ['other.test']);
  assert.match(c.fingerprint256, /^[0-9A-F:]{95}$/);
});

test('a bad pair is refused with the file and the reason: mismatched key, expired, not yet valid, not PEM, missing', (t) => {
  const kit = makeCertKit();
  t.after(() => kit.remove());
  const a = kit.leaf('a', ['a.test']);
  const b = kit.leaf('b', ['b.test']);
  const now = Date.now();
  const refusal = (f: () => unknown): string => {
    try {
      f();
    } catch (err) {
      assert.ok(err instanceof TlsCertificateError, String(err));
      assert.equal(err.code, 'HF_ERR_TLS_CERTIFICATE');
      return err.message;
    }
    return assert.fail('accepted');
  };
  assert.equal(refusal(() => loadCertificate({ cert: a.cert, key: b.key }, PARAMS, now)), `${b.key}: the private key does not match the certificate ${a.cert}`);
  assert.match(refusal(() => loadCertificate(a, PARAMS, now + 31 * DAY_MS)), new RegExp(`^${a.cert}: expired on 20`));
  assert.match(refusal(() => loadCertificate(a, PARAMS, now - DAY_MS)), /: not valid before 20/);
  const expired = kit.leaf('old', ['old.test'], { expired: true });
  assert.equal(refusal(() => loadCertificate(expired, PARAMS, now)), `${expired.cert}: expired on 2020-01-02T00:00:00.000Z`);
  const junk = join(kit.dir, 'junk.pem');
  writeFileSync(junk, 'not a certificate');
  assert.match(refusal(() => loadCertificate({ cert: junk, key: a.key }, PARAMS, now)), /junk\.pem: not a PEM certificate/);
  assert.match(refusal(() => loadCertificate({ cert: a.cert, key: junk }, PARAMS, now)), /junk\.pem: not a PEM private key/);
  assert.equal(refusal(() => loadCertificate({ cert: join(kit.dir, 'nope.pem'), key: a.key }, PARAMS, now)), `${join(kit.dir, 'nope.pem')}: cannot read the certificate: ENOENT`);
  // One bad pair fails the whole store: nothing partial.
  assert.throws(() => loadCertificateStore([a, { cert: a.cert, key: b.key }], PARAMS, false, now), TlsCertificateError);
});
