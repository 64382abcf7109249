/**
 * @module TLS at the edge (issue 13) end to end, with real TLS clients (curl and Node's tls/https)
 * and certificates made by openssl: termination with SNI, X-Forwarded-Proto/Forwarded proto=https,
 * certificate reload under traffic with no dropped connection, mTLS accept and reject (and a forged
 * subject field removed), per-address limits hit and counted (connections, requests/s → 429), bad
 * input (garbage, unknown SNI with strictSni, a bad pair at start), failover behind TLS (replay),
 * TLS to backends, and a TCP service terminating TLS.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, readFileSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import { once } from 'node:events';
import { makeCertKit, type CertKit } from '../../bench/lib/certs.js';
import { startHttpBackend, startRawBackend, type HttpBackend } from '../helpers/scripted-backend.js';
import { backendList, singleServiceConfig, startServiceDispatcher, type ServiceDispatcher, type ServiceInput } from '../helpers/dispatcher.js';
import { startDispatcher } from '../../src/dispatcher/dispatcher.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function kitFor(t: TestContext): CertKit {
  const kit = makeCertKit();
  t.after(() => kit.remove());
  return kit;
}

async function echoBackend(t: TestContext): Promise<HttpBackend> {
  const b = await startHttpBackend((req, res, rec) => {
    res.setHeader('content-type', 'text/plain');
    res.end(JSON.stringify({ url: req.url, proto: req.headers['x-forwarded-proto'], fwd: req.headers['forwarded'], subject: req.headers['x-client-cert-subject'] ?? null, body: rec.body.length }));
  });
  t.after(() => b.close());
  return b;
}

async function service(t: TestContext, extra: Record<string, unknown>, backends: readonly string[]): Promise<ServiceDispatcher> {
  const input: ServiceInput = { name: 'web', protocol: 'http', listen: '127.0.0.1:0', backends: backendList(backends), ...extra };
  return startServiceDispatcher(t, singleServiceConfig(input, { admin: false }), 'web');
}

function curl(args: readonly string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('curl', ['-sS', '--max-time', '5', ...args], (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

function handshake(port: number, opts: tls.ConnectionOptions = {}): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...opts }, () => resolve(s));
    s.once('error', reject);
  });
}

test('curl over TLS 1.3: SNI picks the certificate the name verifies against; the backend sees proto=https', async (t) => {
  const kit = kitFor(t);
  const a = kit.leaf('a', ['a.test']);
  const b = kit.leaf('b', ['b.test']);
  const origin = await echoBackend(t);
  const d = await service(t, { tls: { certificates: [a, b], minVersion: 'TLSv1.3' } }, [origin.hostPort]);
  const port = d.address.port;
  for (const name of ['a.test', 'b.test']) {
    const r = await curl(['--cacert', kit.ca.cert, '--tlsv1.3', '--resolve', `${name}:${port}:127.0.0.1`, `https://${name}:${port}/x`]);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout) as { url: string; proto: string; fwd: string };
    assert.equal(j.url, '/x');
    assert.equal(j.proto, 'https');
    assert.match(j.fwd, /proto=https$/);
  }
  // TLS 1.2 is refused when the floor is 1.3.
  const old = await curl(['--cacert', kit.ca.cert, '--tls-max', '1.2', '--resolve', `a.test:${port}:127.0.0.1`, `https://a.test:${port}/`]);
  assert.notEqual(old.code, 0);
});

test('certificate reload under traffic: no request fails, connections made before keep working, new handshakes get the new pair', async (t) => {
  const kit = kitFor(t);
  const live = { cert: `${kit.dir}/live.pem`, key: `${kit.dir}/live.key` };
  const first = kit.leaf('first', ['first.test']);
  copyFileSync(first.cert, live.cert);
  copyFileSync(first.key, live.key);
  const origin = await echoBackend(t);
  const d = await service(t, { tls: { certificates: [live] } }, [origin.hostPort]);
  const port = d.address.port;
  const agent = new https.Agent({ keepAlive: true, maxSockets: 4, rejectUnauthorized: false });
  t.after(() => agent.destroy());
  let ok = 0;
  const failures: string[] = [];
  let stop = false;
  const worker = async (): Promise<void> => {
    while (!stop) {
      await new Promise<void>((resolve) => {
        const req = https.get({ host: '127.0.0.1', port, path: '/', agent }, (res) => {
          res.resume();
          res.on('end', () => {
            if (res.statusCode === 200) ok++;
            else failures.push(`status ${res.statusCode}`);
            resolve();
          });
        });
        req.on('error', (err) => {
          failures.push(err.message);
          resolve();
        });
      });
    }
  };
  const workers = [worker(), worker(), worker(), worker()];
  await sleep(300);
  const second = kit.leaf('second', ['second.test']);
  copyFileSync(second.key, live.key);
  copyFileSync(second.cert, live.cert);
  const until = Date.now() + 5_000;
  let cn = '';
  while (Date.now() < until) {
    const s = await handshake(port);
    cn = String(s.getPeerCertificate().subject.CN);
    s.destroy();
    if (cn === 'second.test') break;
    await sleep(50);
  }
  assert.equal(cn, 'second.test', 'a new handshake after the files changed gets the new certificate');
  await sleep(300);
  stop = true;
  await Promise.all(workers);
  assert.deepEqual(failures, []);
  assert.ok(ok > 20, `requests went on during the reload (${ok})`);
});

test('mTLS: no certificate is refused; a CA-signed client reaches the backend with its subject; a forged subject field is removed', async (t) => {
  const kit = kitFor(t);
  const srv = kit.leaf('srv', ['srv.test']);
  const client = kit.leaf('client', ['client.test'], { clientAuth: true });
  const origin = await echoBackend(t);
  const d = await service(t, { tls: { certificates: [srv], clientCertificate: { ca: kit.ca.cert } } }, [origin.hostPort]);
  const url = `https://srv.test:${d.address.port}/`;
  const resolve = ['--resolve', `srv.test:${d.address.port}:127.0.0.1`, '--cacert', kit.ca.cert];
  const refused = await curl([...resolve, url]);
  assert.notEqual(refused.code, 0, 'no client certificate: refused');
  const ok = await curl([...resolve, '--cert', client.cert, '--key', client.key, '-H', 'X-Client-Cert-Subject: CN=forged', url]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal((JSON.parse(ok.stdout) as { subject: string }).subject, 'CN=client.test');
  assert.equal(origin.requests.length, 1, 'the refused client never reached the backend');
});

test('limits: the third connection from one address is closed; over requestsPerSecond a request gets 429 with Retry-After', async (t) => {
  const kit = kitFor(t);
  const origin = await echoBackend(t);
  const d = await service(t, { tls: { certificates: [kit.leaf('a', ['a.test'])] }, limits: { maxConnectionsPerAddress: 2, requestsPerSecond: 3 } }, [origin.hostPort]);
  const port = d.address.port;
  const s1 = await handshake(port);
  const s2 = await handshake(port);
  await assert.rejects(handshake(port), 'the third connection is closed before its handshake');
  s1.destroy();
  s2.destroy();
  await sleep(100);
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1, rejectUnauthorized: false });
  t.after(() => agent.destroy());
  const statuses: number[] = [];
  let retryAfter: string | undefined;
  for (let i = 0; i < 5; i++) {
    await new Promise<void>((resolve, reject) => {
      https
        .get({ host: '127.0.0.1', port, path: '/', agent }, (res) => {
          statuses.push(res.statusCode ?? 0);
          if (res.statusCode === 429) retryAfter = res.headers['retry-after'];
          res.resume();
          res.on('end', () => resolve());
        })
        .on('error', reject);
    });
  }
  assert.deepEqual(statuses, [200, 200, 200, 429, 429]);
  assert.equal(retryAfter, '1');
  const stats = d.dispatcher.status().services[0]!;
  assert.ok(JSON.stringify(stats).includes('too-many-connections'), 'the refusals are reported');
});

test('bad input: garbage instead of a ClientHello, a handshake that never completes and an unknown SNI (strictSni) are closed; other clients are served', async (t) => {
  const kit = kitFor(t);
  const origin = await echoBackend(t);
  const d = await service(t, { tls: { certificates: [kit.leaf('a', ['a.test'])], strictSni: true, handshakeTimeoutMs: 300 } }, [origin.hostPort]);
  const port = d.address.port;
  const junk = net.connect(port, '127.0.0.1');
  junk.on('error', () => {});
  junk.write('GET / HTTP/1.1\r\nHost: a.test\r\n\r\n');
  await once(junk, 'close');
  const silent = net.connect(port, '127.0.0.1');
  silent.on('error', () => {});
  await once(silent, 'close');
  await assert.rejects(handshake(port, { servername: 'evil.test' }));
  const good = await curl(['--cacert', kit.ca.cert, '--resolve', `a.test:${port}:127.0.0.1`, `https://a.test:${port}/`]);
  assert.equal(good.code, 0, good.stderr);
});

test('a bad pair at start: the dispatcher refuses to start and names the file', async (t) => {
  const kit = kitFor(t);
  const a = kit.leaf('a', ['a.test']);
  const b = kit.leaf('b', ['b.test']);
  const config = singleServiceConfig({ name: 'web', protocol: 'http', listen: '127.0.0.1:0', backends: backendList(['127.0.0.1:9']), tls: { certificates: [{ cert: a.cert, key: b.key }] } });
  await assert.rejects(startDispatcher(config), (err: Error & { code?: string }) => err.code === 'HF_ERR_TLS_CERTIFICATE' && err.message.includes(b.key));
  const old = kit.leaf('old', ['old.test'], { expired: true });
  const expired = singleServiceConfig({ name: 'web', protocol: 'http', listen: '127.0.0.1:0', backends: backendList(['127.0.0.1:9']), tls: { certificates: [old] } });
  await assert.rejects(startDispatcher(expired), /expired on 2020-01-02/);
});

test('failover behind TLS: a backend that resets before replying is replaced by a replay, the HTTPS client sees 200', async (t) => {
  const kit = kitFor(t);
  const resetting = await startRawBackend((s) => {
    s.once('data', () => s.resetAndDestroy());
  });
  t.after(() => resetting.close());
  const origin = await echoBackend(t);
  const d = await service(t, { tls: { certificates: [kit.leaf('a', ['a.test'])] }, balancer: 'round-robin' }, [resetting.hostPort, origin.hostPort]);
  const port = d.address.port;
  for (let i = 0; i < 4; i++) {
    const r = await curl(['-k', `https://127.0.0.1:${port}/r${i}`]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal((JSON.parse(r.stdout) as { url: string }).url, `/r${i}`);
  }
});

test('TLS to a backend: verified against its CA (a wrong CA takes the backend down: 503), SNI from servername', async (t) => {
  const kit = kitFor(t);
  const srvPair = kit.leaf('origin', ['origin.test']);
  const server = https.createServer({ cert: readFileSync(srvPair.cert), key: readFileSync(srvPair.key) }, (req, res) => res.end(`tls origin ${req.url}`));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => server.close());
  const port = (server.address() as net.AddressInfo).port;
  const good = await service(t, { backends: [{ id: 'b0', address: `127.0.0.1:${port}`, tls: { ca: kit.ca.cert, servername: 'origin.test' } }] }, []);
  const r = await fetch(`http://127.0.0.1:${good.address.port}/p`);
  assert.equal(await r.text(), 'tls origin /p');
  const other = makeCertKit();
  t.after(() => other.remove());
  const bad = await service(t, { backends: [{ id: 'b0', address: `127.0.0.1:${port}`, tls: { ca: other.ca.cert, servername: 'origin.test' } }] }, []);
  // The handshake fails before the request is sent: the backend is taken down (passive detection,
  // kind 'protocol') and, with no other backend, the request is refused as for a refused connect.
  assert.equal((await fetch(`http://127.0.0.1:${bad.address.port}/p`)).status, 503);
  assert.equal(bad.backend('b0').state, 'down');
});

test('a TCP service terminates TLS too', async (t) => {
  const kit = kitFor(t);
  const echo = net.createServer((s) => s.pipe(s));
  echo.listen(0, '127.0.0.1');
  await once(echo, 'listening');
  t.after(() => echo.close());
  const input: ServiceInput = {
    name: 'tcp',
    protocol: 'tcp',
    listen: '127.0.0.1:0',
    backends: backendList([`127.0.0.1:${(echo.address() as net.AddressInfo).port}`]),
    tls: { certificates: [kit.leaf('a', ['a.test'])] },
  };
  const d = await startServiceDispatcher(t, singleServiceConfig(input), 'tcp');
  const s = await handshake(d.address.port);
  s.write('ping over tls');
  const [data] = (await once(s, 'data')) as [Buffer];
  assert.equal(data.toString(), 'ping over tls');
  s.destroy();
});

test('tlsPassthrough: the ClientHello server name picks the backend, nothing is decrypted, a refused connect re-routes among that name\'s backends only; other names go to the unnamed pool; not TLS is closed', async (t) => {
  const kit = kitFor(t);
  const origin = async (name: string): Promise<number> => {
    const pair = kit.leaf(name.replace(/\W/g, '_'), [name]);
    const s = tls.createServer({ cert: readFileSync(pair.cert), key: readFileSync(pair.key) }, (c) => c.end(`origin ${name}`));
    s.listen(0, '127.0.0.1');
    await once(s, 'listening');
    t.after(() => s.close());
    return (s.address() as net.AddressInfo).port;
  };
  const [a, w, other] = [await origin('a.test'), await origin('x.w.test'), await origin('default.test')];
  const doomed = net.createServer((c) => c.destroy());
  doomed.listen(0, '127.0.0.1');
  await once(doomed, 'listening');
  const doomedPort = (doomed.address() as net.AddressInfo).port;
  const input: ServiceInput = {
    name: 'pass',
    protocol: 'tcp',
    listen: '127.0.0.1:0',
    tlsPassthrough: {},
    backends: [
      // A backend of a.test that is up at start and dies before the first client: the connect it
      // refuses is re-routed to a.test's other backend only.
      { id: 'a-dead', address: `127.0.0.1:${doomedPort}`, serverNames: ['a.test'] },
      { id: 'a', address: `127.0.0.1:${a}`, serverNames: ['a.test'] },
      { id: 'w', address: `127.0.0.1:${w}`, serverNames: ['*.w.test'] },
      { id: 'd', address: `127.0.0.1:${other}` },
    ],
  };
  const d = await startServiceDispatcher(t, singleServiceConfig(input), 'pass');
  await d.waitForState('a-dead', 'up');
  await new Promise<void>((resolve) => doomed.close(() => resolve()));
  const ask = async (servername: string): Promise<{ cn: string; body: string }> => {
    const s = await handshake(d.address.port, { servername, ca: readFileSync(kit.ca.cert), rejectUnauthorized: true });
    const cn = String(s.getPeerCertificate().subject.CN);
    let body = '';
    s.on('data', (c: Buffer) => (body += c.toString()));
    await once(s, 'end');
    s.destroy();
    return { cn, body };
  };
  // The client verifies the origin's own certificate for its name: the bytes went through unopened.
  for (let i = 0; i < 4; i++) {
    assert.deepEqual(await ask('a.test'), { cn: 'a.test', body: 'origin a.test' });
    assert.deepEqual(await ask('x.w.test'), { cn: 'x.w.test', body: 'origin x.w.test' });
  }
  assert.deepEqual(await ask('default.test'), { cn: 'default.test', body: 'origin default.test' });
  assert.equal(d.backend('a-dead').state, 'down', 'the dead backend was tried and refused');
  // Plain bytes instead of a ClientHello: closed, nothing sent to any origin.
  const junk = net.connect(d.address.port, '127.0.0.1');
  junk.on('error', () => {});
  junk.write('GET / HTTP/1.1\r\nHost: a.test\r\n\r\n');
  await once(junk, 'close');
});
