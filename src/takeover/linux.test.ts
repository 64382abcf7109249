/**
 * LinuxTakeover against real interfaces: two network namespaces of the test's own joined by a veth
 * pair; the VIP is taken over on one side and the other side's ARP cache and ping tell whether it
 * was announced and answers. Skipped (with the reason) when not root or without ip netns / arping.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { realClock } from '../core/clock.js';
import { TakeoverError } from '../core/errors.js';
import { GARP_FRAME_BYTES, LinuxTakeover, arpingArgs, detectArping, garpFrame, loadAddonFrom, loadGarpAddon } from './linux.js';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function sh(command: string, args: readonly string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(command, [...args], { timeout: 10_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 127) : 0, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

async function must(command: string, ...args: string[]): Promise<string> {
  const r = await sh(command, args);
  if (r.code !== 0) throw new Error(`${command} ${args.join(' ')}: exit ${r.code}: ${r.stderr.trim()}`);
  return r.stdout;
}

interface Link {
  /** The namespace the VIP is taken over in, and its interface. */
  a: string;
  ifA: string;
  /** The neighbour's namespace and interface. */
  b: string;
  ifB: string;
  macA: string;
  subnet: string;
}

/** Two namespaces joined by a veth pair, removed when the test ends; `{ skip }` when impossible here. */
async function link(t: TestContext): Promise<Link | { skip: string }> {
  if (process.getuid?.() !== 0) return { skip: 'needs root (ip netns, ip addr, arping)' };
  if ((await sh('arping', ['-h'])).code === 127) return { skip: 'arping is not installed' };
  const tag = randomBytes(3).toString('hex');
  const a = `hf-to-a-${tag}`;
  const b = `hf-to-b-${tag}`;
  const ifA = `hfta${tag}`;
  const ifB = `hftb${tag}`;
  const added = await sh('ip', ['netns', 'add', a]);
  if (added.code !== 0) return { skip: `ip netns add failed: ${added.stderr.trim()}` };
  t.after(async () => {
    await sh('ip', ['netns', 'del', a]);
    await sh('ip', ['netns', 'del', b]);
  });
  await must('ip', 'netns', 'add', b);
  await must('ip', 'link', 'add', ifA, 'netns', a, 'type', 'veth', 'peer', 'name', ifB, 'netns', b);
  const subnet = `10.${64 + (parseInt(tag.slice(0, 2), 16) % 64)}.${parseInt(tag.slice(2, 4), 16)}`;
  await must('ip', '-n', a, 'addr', 'add', `${subnet}.1/24`, 'dev', ifA);
  await must('ip', '-n', b, 'addr', 'add', `${subnet}.2/24`, 'dev', ifB);
  await must('ip', '-n', a, 'link', 'set', ifA, 'up');
  await must('ip', '-n', b, 'link', 'set', ifB, 'up');
  // Let B create ARP entries from gratuitous ARPs (by default it only updates existing ones).
  await must('ip', 'netns', 'exec', b, 'sysctl', '-qw', `net.ipv4.conf.${ifB}.arp_accept=1`);
  const show = await must('ip', '-n', a, '-o', 'link', 'show', ifA);
  const mac = /link\/ether ([0-9a-f:]{17})/.exec(show)?.[1];
  assert.ok(mac, show);
  return { a, ifA, b, ifB, macA: mac, subnet };
}

async function vipsOn(ns: string, iface: string): Promise<string[]> {
  const out = await must('ip', '-n', ns, '-4', '-o', 'addr', 'show', 'dev', iface);
  return [...out.matchAll(/inet (\S+)/g)].map((m) => m[1]!);
}

/** B's ARP cache entry for `ip`: its MAC, or null. */
async function neighbour(l: Link, ip: string): Promise<string | null> {
  const out = await must('ip', '-n', l.b, 'neigh', 'show', ip, 'dev', l.ifB);
  return /lladdr ([0-9a-f:]{17})/.exec(out)?.[1] ?? null;
}

/** A TCP connect from namespace `ns` to ip:port: 'connected', the error code, or 'timeout' after 2 s. */
async function connectFrom(ns: string, ip: string, port: number): Promise<string> {
  const script = `const c = require('net').connect(${port}, '${ip}');
c.on('connect', () => { console.log('connected'); process.exit(0); });
c.on('error', (e) => { console.log(e.code); process.exit(0); });
setTimeout(() => { console.log('timeout'); process.exit(0); }, 2000);`;
  return (await must('ip', 'netns', 'exec', ns, process.execPath, '-e', script)).trim();
}

async function waitFor<T>(what: string, get: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 3000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await get();
    if (ok(v)) return v;
    if (Date.now() > deadline) assert.fail(`${what}: last ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('arping argv for each implementation (the sender address is the VIP in both)', async () => {
  assert.deepEqual(arpingArgs('iputils', 'eth0', '10.0.0.9', 5), ['-q', '-U', '-c', '5', '-I', 'eth0', '10.0.0.9']);
  assert.deepEqual(arpingArgs('habets', 'eth0', '10.0.0.9', 5), ['-q', '-U', '-S', '10.0.0.9', '-c', '5', '-W', '0.01', '-i', 'eth0', '10.0.0.9']);
  assert.ok(['iputils', 'habets'].includes(await detectArping()));
  assert.throws(() => new LinuxTakeover({ vip: '10.0.0.300', prefix: 24, interface: 'eth0', clock: realClock }), RangeError);
  assert.throws(() => new LinuxTakeover({ vip: '10.0.0.3', prefix: 33, interface: 'eth0', clock: realClock }), RangeError);
  assert.throws(() => new LinuxTakeover({ vip: '10.0.0.3', prefix: 24, interface: 'eth0; reboot', clock: realClock }), RangeError);
});

test('garpFrame: an ARP announcement (RFC 5227 §3) for the VIP from our MAC, broadcast, padded to 60 bytes', () => {
  const f = garpFrame(Buffer.from('020000aabbcc', 'hex'), '10.1.2.3');
  assert.equal(f.length, GARP_FRAME_BYTES);
  assert.equal(
    f.toString('hex'),
    'ffffffffffff' + '020000aabbcc' + '0806' + // Ethernet: broadcast, from us, ARP
      '0001' + '0800' + '06' + '04' + '0001' + // Ethernet/IPv4, request
      '020000aabbcc' + '0a010203' + // sender: us, the VIP
      '000000000000' + '0a010203' + // target: the VIP
      '00'.repeat(18), // padding
  );
  assert.throws(() => garpFrame(Buffer.alloc(5), '10.1.2.3'), /mac: expected 6 bytes/);
  assert.throws(() => garpFrame(Buffer.alloc(6), '10.1.2'), /vip: expected an IPv4 address/);
});

test('the garp-socket addon: built by npm ci here (on Linux with a C compiler); a missing one is an Error that says so', () => {
  const a = loadGarpAddon();
  if (process.platform === 'linux') assert.ok(!(a instanceof Error), a instanceof Error ? a.message : '');
  const missing = loadAddonFrom(['./no-such-addon.node']);
  assert.ok(missing instanceof Error);
  assert.match(missing.message, /garp-socket addon not built/);
});

test('the packet socket announces the VIP, at every takeover; garp: arping and an interface that is not there yet fall back to arping, saying why', async (t) => {
  const l = await link(t);
  if ('skip' in l) return void t.skip(l.skip);
  if (loadGarpAddon() instanceof Error) return void t.skip('garp-socket addon not built');
  const vip = `${l.subnet}.105`;
  const tk = new LinuxTakeover({ vip, prefix: 24, interface: l.ifA, netns: l.a, garpCount: 2, garpDelayMs: 0, clock: realClock });
  t.after(() => tk.close());
  assert.deepEqual(tk.announcer, { via: 'packet-socket' });
  await tk.acquire();
  assert.equal(await waitFor('gratuitous ARP at B', () => neighbour(l, vip), (m) => m !== null), l.macA);
  await tk.release();
  await must('ip', '-n', l.b, 'neigh', 'flush', 'dev', l.ifB);
  // Taken over again: announced again, on the same socket.
  await tk.acquire();
  assert.equal(await waitFor('second takeover at B', () => neighbour(l, vip), (m) => m !== null), l.macA);
  await tk.release();

  const forced = new LinuxTakeover({ vip, prefix: 24, interface: l.ifA, netns: l.a, garp: 'arping', clock: realClock });
  assert.deepEqual(forced.announcer, { via: 'arping', reason: 'configured (garp: arping)' });
  const absent = new LinuxTakeover({ vip, prefix: 24, interface: 'hfnosuch1', netns: l.a, clock: realClock });
  assert.equal(absent.announcer.via, 'arping');
  assert.match((absent.announcer as { reason: string }).reason, /packet socket on hfnosuch1: if_nametoindex: No such device/);
  tk.close();
  assert.deepEqual(tk.announcer, { via: 'arping', reason: 'closed' });
});

test('acquire adds the VIP and announces it: the neighbour learns its MAC unasked and reaches it; release removes it', async (t) => {
  const l = await link(t);
  if ('skip' in l) return void t.skip(l.skip);
  const vip = `${l.subnet}.100`;
  const errors: TakeoverError[] = [];
  const tk = new LinuxTakeover({ vip, prefix: 24, interface: l.ifA, netns: l.a, garpCount: 3, garpDelayMs: 1000, clock: realClock, onError: (e) => errors.push(e) });
  const keep = setInterval(() => {}, 1000); // realClock timers are unref'd: keep the loop for the second burst
  t.after(async () => {
    clearInterval(keep);
    await tk.release();
  });
  assert.equal(await neighbour(l, vip), null);
  await tk.acquire();
  assert.ok((await vipsOn(l.a, l.ifA)).includes(`${vip}/24`));
  // Gratuitous ARP: B never asked, yet its cache maps the VIP to A's MAC.
  assert.equal(await waitFor('gratuitous ARP at B', () => neighbour(l, vip), (m) => m !== null), l.macA);
  // The second burst, garpDelayMs later, re-announces it to a neighbour that lost it (flushed
  // once the first burst, 3 ARPs 10 ms apart, is surely over).
  await new Promise((r) => setTimeout(r, 300));
  await must('ip', '-n', l.b, 'neigh', 'flush', 'dev', l.ifB);
  assert.equal(await neighbour(l, vip), null);
  assert.equal(await waitFor('second burst at B', () => neighbour(l, vip), (m) => m !== null), l.macA);
  // And answers: a TCP connect from B to a closed port gets A's RST (no reply at all would time out).
  assert.equal(await connectFrom(l.b, vip, 9), 'ECONNREFUSED');
  await tk.acquire(); // idempotent
  await tk.release();
  assert.ok(!(await vipsOn(l.a, l.ifA)).includes(`${vip}/24`));
  await tk.release(); // idempotent
  assert.deepEqual(errors, []);
});

test('an address left by a crashed master counts as acquired; one already gone counts as released', async (t) => {
  const l = await link(t);
  if ('skip' in l) return void t.skip(l.skip);
  const vip = `${l.subnet}.101`;
  await must('ip', '-n', l.a, 'addr', 'add', `${vip}/24`, 'dev', l.ifA);
  const tk = new LinuxTakeover({ vip, prefix: 24, interface: l.ifA, netns: l.a, garpCount: 1, garpDelayMs: 0, clock: realClock });
  await tk.acquire();
  assert.equal(tk.acquired, true);
  await must('ip', '-n', l.a, 'addr', 'del', `${vip}/24`, 'dev', l.ifA);
  await tk.release();
  assert.equal(tk.acquired, false);
});

test('release right after acquire cancels the second burst', async (t) => {
  const l = await link(t);
  if ('skip' in l) return void t.skip(l.skip);
  const vip = `${l.subnet}.102`;
  const tk = new LinuxTakeover({ vip, prefix: 24, interface: l.ifA, netns: l.a, garpCount: 1, garpDelayMs: 200, clock: realClock });
  await tk.acquire();
  await waitFor('first burst at B', () => neighbour(l, vip), (m) => m !== null);
  await tk.release();
  await must('ip', '-n', l.b, 'neigh', 'flush', 'dev', l.ifB);
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(await neighbour(l, vip), null, 'no announcement after release');
});

test('a missing interface rejects with TakeoverError naming the command and what ip said', async (t) => {
  const l = await link(t);
  if ('skip' in l) return void t.skip(l.skip);
  const tk = new LinuxTakeover({ vip: `${l.subnet}.103`, prefix: 24, interface: 'hfnosuch0', netns: l.a, clock: realClock });
  await assert.rejects(tk.acquire(), (err: unknown) => {
    assert.ok(err instanceof TakeoverError);
    assert.equal(err.code, 'HF_ERR_TAKEOVER');
    assert.match(err.command, new RegExp(`^ip -n ${l.a} addr add ${l.subnet.replaceAll('.', '\\.')}\\.103/24 dev hfnosuch0$`));
    assert.match(err.detail, /exit \d+: .*(Cannot find device|does not exist)/);
    return true;
  });
  assert.equal(tk.acquired, false);
});

test('an announcement that cannot start (arping missing) rejects and takes the VIP off the interface again', async (t) => {
  const l = await link(t);
  if ('skip' in l) return void t.skip(l.skip);
  const vip = `${l.subnet}.104`;
  // Inside namespace A, with a PATH that holds `ip` but no arping, so spawning arping fails (ENOENT).
  const bin = await mkdtemp(join(tmpdir(), 'hf-noarping-'));
  t.after(() => rm(bin, { recursive: true, force: true }));
  await symlink((await must('sh', '-c', 'command -v ip')).trim(), join(bin, 'ip'));
  const linux = pathToFileURL(join(dirname(fileURLToPath(import.meta.url)), 'linux.js')).href;
  const script = `import { LinuxTakeover } from ${JSON.stringify(linux)};
import { realClock } from ${JSON.stringify(new URL('../core/clock.js', linux).href)};
const tk = new LinuxTakeover({ vip: '${vip}', prefix: 24, interface: '${l.ifA}', arping: 'iputils', garp: 'arping', garpCount: 1, garpDelayMs: 0, clock: realClock });
let rejected = null;
await tk.acquire().catch((e) => { rejected = e.code; });
console.log(JSON.stringify({ rejected, acquired: tk.acquired }));`;
  const out = await new Promise<Run>((resolve) => {
    execFile('ip', ['netns', 'exec', l.a, process.execPath, '--input-type=module', '-e', script], { timeout: 10_000, env: { ...process.env, PATH: bin } }, (err, stdout, stderr) =>
      resolve({ code: err ? 1 : 0, stdout: String(stdout), stderr: String(stderr) }),
    );
  });
  assert.equal(out.code, 0, out.stderr);
  assert.deepEqual(JSON.parse(out.stdout), { rejected: 'HF_ERR_TAKEOVER', acquired: false });
  assert.deepEqual((await vipsOn(l.a, l.ifA)).filter((a) => a.startsWith(`${vip}/`)), []);
});
