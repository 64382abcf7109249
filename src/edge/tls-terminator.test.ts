/**
 * Tests of TLS termination on real sockets with Node's TLS client and certificates made by openssl:
 * SNI selection, strict SNI, ALPN, ticket resumption, reload (good and bad pairs, a connection up
 * across it), mTLS accept and reject, and each bad input counted: garbage instead of a ClientHello,
 * a handshake that never completes.
 */
import { after, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { once } from 'node:events';
import { realClock } from '../core/clock.js';
import { makeCertKit, type CertKit } from '../../bench/lib/certs.js';
import { DEFAULT_CIPHERS, DEFAULT_GROUPS, TlsTerminator, type TlsConfig } from './tls-terminator.js';

function kitFor(t: TestContext): CertKit {
  const kit = makeCertKit();
  t.after(() => kit.remove());
  return kit;
}

function config(over: Partial<TlsConfig> & Pick<TlsConfig, 'certificates'>): TlsConfig {
  return {
    minVersion: 'TLSv1.2',
    ciphers: DEFAULT_CIPHERS,
    groups: DEFAULT_GROUPS,
    alpn: ['http/1.1'],
    strictSni: false,
    sessionTickets: true,
    ticketKeyRotationMs: 3_600_000,
    handshakeTimeoutMs: 5_000,
    watchFiles: false,
    ...over,
  };
}

/** A terminator behind an echo server on 127.0.0.1:0. */
async function serve(t: TestContext, cfg: TlsConfig): Promise<{ term: TlsTerminator; port: number; secure: tls.TLSSocket[] }> {
  const term = new TlsTerminator(cfg, realClock);
  const secure: tls.TLSSocket[] = [];
  const server = term.createServer({}, (s) => {
    secure.push(s);
    s.on('error', () => {});
    s.pipe(s);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => {
    term.close();
    for (const s of secure) s.destroy();
    for (const c of clients) c.destroy();
    server.close();
  });
  return { term, port: (server.address() as net.AddressInfo).port, secure };
}

/** Every client socket a test opened, destroyed when it ends (a live socket keeps the process up). */
const clients = new Set<net.Socket>();
after(() => {
  for (const c of clients) c.destroy();
});

function handshake(port: number, opts: tls.ConnectionOptions = {}): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...opts }, () => resolve(s));
    clients.add(s);
    s.once('error', reject);
  });
}

const cnOf = (s: tls.TLSSocket): string => String(s.getPeerCertificate().subject.CN);

async function waitFor(cond: () => boolean, what: string): Promise<void> {
  const until = Date.now() + 3000;
  while (!cond()) {
    if (Date.now() > until) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('SNI picks the certificate, ALPN is http/1.1, a ticket resumes the session; the chain verifies against the CA', async (t) => {
  const kit = kitFor(t);
  const a = kit.leaf('a', ['a.test']);
  const w = kit.leaf('w', ['*.w.test']);
  const { port, term } = await serve(t, config({ certificates: [a, w] }));
  const s1 = await handshake(port, { servername: 'x.w.test', ALPNProtocols: ['http/1.1'], ca: readFileSync(kit.ca.cert), rejectUnauthorized: true });
  assert.equal(cnOf(s1), '*.w.test');
  assert.equal(s1.alpnProtocol, 'http/1.1');
  // TLS 1.3 sends the ticket after the handshake: read so that it arrives.
  const session = new Promise<Buffer>((resolve) => s1.once('session', resolve));
  s1.resume();
  s1.write('x');
  await session.then(() => undefined);
  const ticket = await session;
  s1.end();
  const s2 = await handshake(port, { servername: 'x.w.test', session: ticket });
  assert.equal(s2.isSessionReused(), true, 'resumed from the ticket');
  s2.end();
  const s3 = await handshake(port, { servername: 'nobody.test' });
  assert.equal(cnOf(s3), 'a.test', 'an unknown name gets the first certificate');
  s3.end();
  await waitFor(() => term.stats.handshakes === 3, 'three handshakes counted');
});

test('strict SNI: an unknown name fails the handshake and is counted; others are served', async (t) => {
  const kit = kitFor(t);
  const a = kit.leaf('a', ['a.test']);
  const { port, term } = await serve(t, config({ certificates: [a], strictSni: true }));
  await assert.rejects(handshake(port, { servername: 'evil.test' }));
  await waitFor(() => term.stats.failures['unknown-sni'] === 1, 'the unknown-sni count');
  assert.equal(cnOf(await handshake(port, { servername: 'a.test' })), 'a.test');
});

test('garbage instead of a ClientHello, and a handshake that never completes, are counted and closed', async (t) => {
  const kit = kitFor(t);
  const { port, term } = await serve(t, config({ certificates: [kit.leaf('a', ['a.test'])], handshakeTimeoutMs: 200 }));
  const junk = net.connect(port, '127.0.0.1');
  junk.on('error', () => {});
  junk.write('GET / HTTP/1.1\r\nHost: a.test\r\n\r\n');
  await once(junk, 'close');
  await waitFor(() => term.stats.failures.protocol === 1, 'the protocol count');
  const silent = net.connect(port, '127.0.0.1');
  silent.on('error', () => {});
  const t0 = Date.now();
  await once(silent, 'close');
  assert.ok(Date.now() - t0 >= 150, 'closed by the handshake timeout');
  await waitFor(() => term.stats.failures.timeout === 1, 'the timeout count');
  // Still serving.
  assert.equal(cnOf(await handshake(port, { servername: 'a.test' })), 'a.test');
});

test('reload: a good pair serves new handshakes while a connection made before goes on; a bad pair changes nothing', async (t) => {
  const kit = kitFor(t);
  const live = { cert: `${kit.dir}/live.pem`, key: `${kit.dir}/live.key` };
  const first = kit.leaf('first', ['first.test']);
  copyFileSync(first.cert, live.cert);
  copyFileSync(first.key, live.key);
  const errors: string[] = [];
  const term0 = config({ certificates: [live] });
  const { port, term } = await serve(t, term0);
  (term as unknown as { events: { onReloadError: (e: Error) => void } }).events.onReloadError = (e) => errors.push(e.message);
  const before = await handshake(port);
  assert.equal(cnOf(before), 'first.test');

  const second = kit.leaf('second', ['second.test']);
  copyFileSync(second.cert, live.cert); // the key still belongs to the first: a mismatch
  assert.match(String(term.reload()?.message), /does not match the certificate/);
  assert.equal(errors.length, 1);
  assert.equal(cnOf(await handshake(port)), 'first.test', 'the bad pair did not replace the old one');

  copyFileSync(second.key, live.key);
  assert.equal(term.reload(), null);
  assert.equal(cnOf(await handshake(port)), 'second.test');
  assert.equal(cnOf(await handshake(port, { servername: 'second.test' })), 'second.test');
  // The connection made before both reloads still works.
  before.write('ping');
  const [echo] = (await once(before, 'data')) as [Buffer];
  assert.equal(echo.toString(), 'ping');
  before.end();
  assert.deepEqual([term.stats.reloads, term.stats.reloadFailures], [1, 1]);
});

test('reload on file change: the watcher picks up a renamed-over pair', async (t) => {
  const kit = kitFor(t);
  const live = { cert: `${kit.dir}/w-live.pem`, key: `${kit.dir}/w-live.key` };
  const first = kit.leaf('wfirst', ['wfirst.test']);
  copyFileSync(first.cert, live.cert);
  copyFileSync(first.key, live.key);
  const { port, term } = await serve(t, config({ certificates: [live], watchFiles: true }));
  const next = kit.leaf('wnext', ['wnext.test']);
  copyFileSync(next.key, live.key);
  copyFileSync(next.cert, live.cert);
  await waitFor(() => term.stats.reloads >= 1 && term.certificates.defaultCertificate.names[0] === 'wnext.test', 'the reload after the change');
  assert.equal(cnOf(await handshake(port)), 'wnext.test');
});

test('mTLS required: no certificate or an unknown CA is refused and counted; a CA-signed client is served with its subject', async (t) => {
  const kit = kitFor(t);
  const server = kit.leaf('srv', ['srv.test']);
  const client = kit.leaf('client', ['client.test'], { clientAuth: true });
  const stranger = kit.selfSigned('stranger', 'stranger.test');
  const { port, term, secure } = await serve(
    t,
    config({ certificates: [server], minVersion: 'TLSv1.2', clientCertificate: { ca: kit.ca.cert, verify: 'required', subjectHeader: 'X-Client-Subject' } }),
  );
  // TLS 1.3 reports a refused client certificate after the client's handshake completed: read until close.
  const refused = async (opts: tls.ConnectionOptions): Promise<void> => {
    try {
      const s = await handshake(port, opts);
      s.on('error', () => {});
      await once(s, 'close');
    } catch {
      // refused during the handshake
    }
  };
  await refused({});
  await refused({ cert: readFileSync(stranger.cert), key: readFileSync(stranger.key) });
  await waitFor(() => term.stats.failures['client-certificate'] === 2, `two client-certificate failures (${JSON.stringify(term.stats.failures)})`);
  const ok = await handshake(port, { cert: readFileSync(client.cert), key: readFileSync(client.key) });
  await waitFor(() => secure.length === 1, 'the accepted socket');
  assert.equal(term.clientSubject(secure[0]!), 'CN=client.test');
  ok.end();
});

test('a bad pair at start throws: the listener never starts', (t) => {
  const kit = kitFor(t);
  const a = kit.leaf('a', ['a.test']);
  const b = kit.leaf('b', ['b.test']);
  assert.throws(() => new TlsTerminator(config({ certificates: [{ cert: a.cert, key: b.key }] }), realClock), { code: 'HF_ERR_TLS_CERTIFICATE' });
  const old = kit.leaf('old', ['old.test'], { expired: true });
  assert.throws(() => new TlsTerminator(config({ certificates: [old] }), realClock), /expired on 2020-01-02/);
});

test('OCSP stapling: a client that asks gets the configured response; a file that is no DER response is refused at start', async (t) => {
  const kit = kitFor(t);
  const a = kit.leaf('a', ['a.test']);
  const ocsp = kit.ocspResponse('a', a);
  const { port } = await serve(t, config({ certificates: [{ ...a, ocsp }] }));
  const stapled = await new Promise<Buffer | null>((resolve, reject) => {
    // requestOCSP is a TLSSocket option that @types/node leaves out of ConnectionOptions.
    const s = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, servername: 'a.test', requestOCSP: true } as tls.ConnectionOptions);
    clients.add(s);
    s.once('OCSPResponse', (resp: Buffer) => resolve(resp));
    s.once('secureConnect', () => setTimeout(() => resolve(null), 200));
    s.once('error', reject);
  });
  assert.ok(stapled !== null && stapled.equals(readFileSync(ocsp)), 'the stapled response is the configured one');
  assert.throws(() => new TlsTerminator(config({ certificates: [{ ...a, ocsp: a.cert }] }), realClock), /not a DER OCSP response/);
});
