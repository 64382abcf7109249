import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import net from 'node:net';
import { realClock } from '../core/clock.js';
import { TakeoverError } from '../core/errors.js';
import { LoopbackTakeover, isLoopbackVip, type VipBind, type VipRelease } from './loopback.js';

/** A VIP of this test's own in 127/8 (Linux routes all of it to lo), away from 127.0.0.1. */
const VIP = `127.77.${1 + (process.pid % 250)}.${1 + Math.floor(Math.random() * 250)}`;

/**
 * realClock's timers are unref'd (a dispatcher's sockets keep it alive): while an acquire waits on
 * its retry timer alone, the test needs a handle of its own or node would consider it finished.
 */
function keepAlive(t: { after(fn: () => void): void }): void {
  const timer = setInterval(() => {}, 1000);
  t.after(() => clearInterval(timer));
}

/** A port free on VIP a moment ago, for TCP and UDP both. */
async function freePort(): Promise<number> {
  for (;;) {
    const s = net.createServer();
    const port = await new Promise<number>((resolve, reject) => {
      s.once('error', reject);
      s.listen(0, VIP, () => resolve((s.address() as net.AddressInfo).port));
    });
    await new Promise<void>((r) => s.close(() => r()));
    const u = dgram.createSocket('udp4');
    const ok = await new Promise<boolean>((resolve) => {
      u.once('error', () => resolve(false));
      u.bind(port, VIP, () => resolve(true));
    });
    await new Promise<void>((r) => u.close(() => r()));
    if (ok) return port;
  }
}

/** A TCP listener on vip:port that greets each connection with `name`. */
function tcpBind(port: number, name: string): VipBind {
  return (vip) =>
    new Promise<VipRelease>((resolve, reject) => {
      const server = net.createServer((c) => c.end(name));
      server.once('error', reject);
      server.listen(port, vip, () => resolve(() => new Promise<void>((r) => server.close(() => r()))));
    });
}

/** A UDP socket on vip:port that answers each datagram with `name`. */
function udpBind(port: number, name: string): VipBind {
  return (vip) =>
    new Promise<VipRelease>((resolve, reject) => {
      const socket = dgram.createSocket('udp4');
      socket.once('error', (err) => {
        socket.close();
        reject(err);
      });
      socket.on('message', (_m, from) => socket.send(name, from.port, from.address));
      socket.bind(port, vip, () => resolve(() => new Promise<void>((r) => socket.close(() => r()))));
    });
}

/** The greeting of the TCP listener on VIP:port, or the connect error code. */
function tcpGreeting(port: number): Promise<string> {
  return new Promise((resolve) => {
    const c = net.connect(port, VIP);
    let text = '';
    c.setEncoding('utf8');
    c.on('data', (d: string) => (text += d));
    c.on('end', () => resolve(text));
    c.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
  });
}

/** The answer to one datagram sent to VIP:port, or 'none' within 300 ms. */
async function udpAnswer(port: number): Promise<string> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  try {
    return await new Promise<string>((resolve) => {
      const timer = setTimeout(() => resolve('none'), 300);
      s.on('message', (m) => {
        clearTimeout(timer);
        resolve(m.toString());
      });
      s.on('error', () => {});
      s.send('ping', port, VIP);
    });
  } finally {
    s.close();
  }
}

test('isLoopbackVip: 127/8 IPv4 only', () => {
  assert.equal(isLoopbackVip('127.0.0.1'), true);
  assert.equal(isLoopbackVip('127.255.255.254'), true);
  assert.equal(isLoopbackVip('128.0.0.1'), false);
  assert.equal(isLoopbackVip('10.0.0.1'), false);
  assert.equal(isLoopbackVip('::1'), false);
  assert.equal(isLoopbackVip('127.0.0'), false);
  assert.throws(() => new LoopbackTakeover({ vip: '10.1.2.3', binds: [], clock: realClock }), RangeError);
});

test('acquire binds TCP and UDP listeners on the VIP; release closes them', async (t) => {
  const port = await freePort();
  const tk = new LoopbackTakeover({ vip: VIP, binds: [tcpBind(port, 'A'), udpBind(port, 'A')], clock: realClock });
  t.after(() => tk.release());
  assert.equal(await tcpGreeting(port), 'ECONNREFUSED');
  await tk.acquire();
  assert.equal(tk.acquired, true);
  assert.equal(await tcpGreeting(port), 'A');
  assert.equal(await udpAnswer(port), 'A');
  await tk.acquire(); // idempotent: nothing bound twice (a second bind would fail with EADDRINUSE)
  assert.equal(tk.retries, 0);
  await tk.release();
  assert.equal(tk.acquired, false);
  assert.equal(await tcpGreeting(port), 'ECONNREFUSED');
  assert.equal(await udpAnswer(port), 'none');
  await tk.release();
  // And again: acquire after release binds anew.
  await tk.acquire();
  assert.equal(await tcpGreeting(port), 'A');
});

test('a new master waits while the old one still holds the ports, and takes them the moment they are released', async (t) => {
  const port = await freePort();
  const old = new LoopbackTakeover({ vip: VIP, binds: [tcpBind(port, 'old'), udpBind(port, 'old')], clock: realClock });
  const next = new LoopbackTakeover({ vip: VIP, binds: [tcpBind(port, 'new'), udpBind(port, 'new')], clock: realClock, retryIntervalMs: 2 });
  keepAlive(t);
  t.after(async () => {
    await old.release();
    await next.release();
  });
  await old.acquire();
  let done = false;
  const acquiring = next.acquire().then(() => (done = true));
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(done, false, 'cannot bind while the old master holds the port');
  assert.ok(next.retries > 0, `retries ${next.retries}`);
  assert.equal(await tcpGreeting(port), 'old');
  await old.release();
  await acquiring;
  assert.equal(next.acquired, true);
  assert.equal(await tcpGreeting(port), 'new');
  assert.equal(await udpAnswer(port), 'new');
});

test('demoted while waiting for a port: acquire gives up, holds nothing, and stops retrying', async (t) => {
  const port = await freePort();
  const old = new LoopbackTakeover({ vip: VIP, binds: [tcpBind(port, 'old')], clock: realClock });
  const other = await freePort();
  // The second listener is the one that waits, so the first one must be undone.
  const next = new LoopbackTakeover({ vip: VIP, binds: [tcpBind(other, 'new'), tcpBind(port, 'new')], clock: realClock, retryIntervalMs: 2 });
  keepAlive(t);
  t.after(() => old.release());
  await old.acquire();
  const acquiring = next.acquire();
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(await tcpGreeting(other), 'new', 'the first listener was bound meanwhile');
  await next.release();
  await acquiring;
  assert.equal(next.acquired, false);
  assert.equal(await tcpGreeting(other), 'ECONNREFUSED', 'the first listener was undone');
  const retries = next.retries;
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(next.retries, retries);
  assert.equal(await tcpGreeting(port), 'old');
});

test('a bind error other than EADDRINUSE undoes the bindings made and rejects with TakeoverError', async () => {
  const calls: string[] = [];
  const ok: VipBind = async () => {
    calls.push('bind 1');
    return async () => void calls.push('release 1');
  };
  const denied: VipBind = async () => {
    throw Object.assign(new Error('listen EACCES: permission denied 127.0.0.9:80'), { code: 'EACCES' });
  };
  const tk = new LoopbackTakeover({ vip: '127.0.0.9', binds: [ok, denied], clock: realClock });
  await assert.rejects(tk.acquire(), (err: unknown) => {
    assert.ok(err instanceof TakeoverError);
    assert.equal(err.code, 'HF_ERR_TAKEOVER');
    assert.match(err.message, /bind 127\.0\.0\.9: listen EACCES/);
    return true;
  });
  assert.deepEqual(calls, ['bind 1', 'release 1']);
  assert.equal(tk.acquired, false);
});

test('release tries every listener even when one fails, then rejects with TakeoverError', async () => {
  const calls: string[] = [];
  const mk =
    (name: string, fail: boolean): VipBind =>
    async () =>
    async () => {
      calls.push(name);
      if (fail) throw new Error(`${name} close failed`);
    };
  const tk = new LoopbackTakeover({ vip: '127.0.0.9', binds: [mk('a', false), mk('b', true), mk('c', false)], clock: realClock });
  await tk.acquire();
  await assert.rejects(tk.release(), /release 127\.0\.0\.9: b close failed/);
  assert.deepEqual(calls, ['c', 'b', 'a']);
  assert.equal(tk.acquired, false);
});
