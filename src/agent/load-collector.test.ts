import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { FakeClock } from '../core/clock.js';
import {
  cpuUsage,
  fetchBacklog,
  ioQueueLength,
  LoadCollector,
  networkUsage,
  normaliseBacklog,
  normaliseQueue,
  parseBacklog,
  parseCpuTimes,
  parseDiskWeightedMs,
  parseMemoryUsage,
  parseMemPressure,
  parseSockstat,
  parseUdpBufferErrors,
  udpDropSaturation,
  weightedLoad,
  type ProcReader,
} from './load-collector.js';

const FIXTURES = new URL('../../../test/fixtures/proc/', import.meta.url);
const fixture = (name: string): string => readFileSync(new URL(name, FIXTURES), 'utf8');

const WEIGHTS = { cpu: 0.4, memory: 0.2, network: 0.2, io: 0.1, backlog: 0.1 };

function close(actual: number, expected: number, what = ''): void {
  assert.ok(Math.abs(actual - expected) < 1e-9, `${what} ${actual} != ${expected}`);
}

test('CPU: busy and total jiffies from the aggregate line; usage = Δbusy / Δtotal', () => {
  const a = parseCpuTimes(fixture('stat-a'))!;
  const b = parseCpuTimes(fixture('stat-b'))!;
  // 177667 + 0 + 52243 + 189178 + 527 + 0 + 19740 + 539, minus idle 189178 and iowait 527.
  assert.deepEqual(a, { total: 439894, busy: 250189 });
  assert.equal(b.total - a.total, 200);
  close(cpuUsage(a, b), 0.45, 'cpu');
  assert.equal(cpuUsage(a, a), 0, 'no time passed');
  assert.equal(cpuUsage(b, a), 0, 'counters went backwards');
  assert.equal(parseCpuTimes('intr 1 2 3\n'), null);
  assert.equal(parseCpuTimes('cpu  1 2\n'), null);
  // A kernel without the steal column still parses.
  assert.deepEqual(parseCpuTimes('cpu  10 0 5 80 5 0 0\n'), { total: 100, busy: 15 });
});

test('memory: 1 - MemAvailable / MemTotal, or MemFree + Buffers + Cached on old kernels', () => {
  close(parseMemoryUsage(fixture('meminfo'))!, 0.75, 'meminfo');
  close(parseMemoryUsage(fixture('meminfo-old-kernel'))!, 0.625, 'old kernel');
  assert.equal(parseMemoryUsage('MemFree: 10 kB\n'), null);
  assert.equal(parseMemoryUsage('MemTotal: 0 kB\nMemAvailable: 0 kB\n'), null);
});

test('network: socket buffer pages against the pressure threshold, and UDP drops', () => {
  assert.deepEqual(parseSockstat(fixture('sockstat')), { tcpPages: 32000, udpPages: 64000 });
  assert.equal(parseMemPressure(fixture('tcp_mem')), 128000);
  assert.equal(parseMemPressure(fixture('udp_mem')), 256000);
  assert.equal(parseMemPressure('1 2\n'), null);
  assert.deepEqual(parseSockstat('sockets: used 1\n'), { tcpPages: null, udpPages: null });

  // UdpLite's counters (9999 → 19999) must not be mistaken for Udp's.
  assert.equal(parseUdpBufferErrors(fixture('snmp-a')), 1205);
  assert.equal(parseUdpBufferErrors(fixture('snmp-b')), 1235);
  assert.equal(parseUdpBufferErrors(fixture('snmp6-a'), true), 100);
  assert.equal(parseUdpBufferErrors(fixture('snmp6-b'), true), 110);
  assert.equal(parseUdpBufferErrors('Ip: Forwarding\nIp: 2\n'), null);

  // 40 drops in 1 s: 40 / (40 + 10).
  close(udpDropSaturation(1305, 1345, 1000), 0.8, 'drops');
  close(udpDropSaturation(0, 10, 1000), 0.5, 'half');
  close(udpDropSaturation(0, 1, 1000), 1 / 11, 'one');
  assert.equal(udpDropSaturation(10, 10, 1000), 0);
  assert.equal(udpDropSaturation(10, 5, 1000), 0, 'counter reset');
  assert.equal(udpDropSaturation(0, 5, 0), 0, 'no interval');

  assert.equal(networkUsage({ tcp: 0.25, udp: 0.25, drops: 0.8 }), 0.8);
  assert.equal(networkUsage({ tcp: 1.7, udp: null, drops: null }), 1, 'capped');
  assert.equal(networkUsage({ tcp: null, udp: null, drops: null }), null);
});

test('I/O: the busiest device average queue, q / (1 + q)', () => {
  const a = parseDiskWeightedMs(fixture('diskstats-a'));
  const b = parseDiskWeightedMs(fixture('diskstats-b'));
  assert.equal(a.get('sda'), 913568);
  assert.equal(a.get('nvme0n1'), 358023);
  assert.equal(a.has('ram0'), false, 'memory-backed devices are skipped');
  assert.equal(a.get('loop0'), 30);
  // sda: 3000 ms of weighted time in 1000 ms = 3 requests on average (ram0's +100000 is not counted).
  close(ioQueueLength(a, b, 1000), 3, 'queue');
  close(normaliseQueue(3), 0.75, 'normalised');
  close(normaliseQueue(1), 0.5);
  assert.equal(normaliseQueue(0), 0);
  assert.equal(ioQueueLength(b, a, 1000), 0, 'counter reset');
  assert.equal(ioQueueLength(a, b, 0), 0, 'no interval');
  assert.equal(parseDiskWeightedMs('garbage\n').size, 0);
});

test('backlog: {"backlog": n} or a bare number, over the capacity', () => {
  assert.equal(parseBacklog('{"backlog": 25, "other": 1}'), 25);
  assert.equal(parseBacklog('42\n'), 42);
  assert.equal(parseBacklog('{"queue": 3}'), null);
  assert.equal(parseBacklog('-1'), null);
  assert.equal(parseBacklog('[1]'), null);
  assert.equal(parseBacklog('<html>'), null);
  assert.equal(normaliseBacklog(25, 100), 0.25);
  assert.equal(normaliseBacklog(250, 100), 1);
});

test('load = Σ w x over the measured indicators, renormalised over their weights', () => {
  const all = { cpu: 0.45, memory: 0.75, network: 0.8, io: 0.75, backlog: 0.25 };
  close(weightedLoad(all, WEIGHTS)!, 0.4 * 0.45 + 0.2 * 0.75 + 0.2 * 0.8 + 0.1 * 0.75 + 0.1 * 0.25, 'all');
  // No backlog: its 0.1 is shared, load = (0.18 + 0.15 + 0.16 + 0.075) / 0.9.
  close(weightedLoad({ ...all, backlog: null }, WEIGHTS)!, 0.565 / 0.9, 'no backlog');
  assert.equal(weightedLoad({ cpu: null, memory: null, network: null, io: null, backlog: null }, WEIGHTS), null, 'nothing measurable: no answer, not 0');
  assert.equal(weightedLoad({ ...all, cpu: 3 }, { cpu: 1, memory: 0, network: 0, io: 0, backlog: 0 }), 1, 'clamped');
});

/** A /proc reader over the fixtures: `-a` files before `flip()`, `-b` after. */
function fixtureProc(): { read: ProcReader; flip(): void } {
  let suffix = 'a';
  const files: Record<string, () => string> = {
    stat: () => `stat-${suffix}`,
    meminfo: () => 'meminfo',
    'net/sockstat': () => 'sockstat',
    'sys/net/ipv4/tcp_mem': () => 'tcp_mem',
    'sys/net/ipv4/udp_mem': () => 'udp_mem',
    'net/snmp': () => `snmp-${suffix}`,
    'net/snmp6': () => `snmp6-${suffix}`,
    diskstats: () => `diskstats-${suffix}`,
  };
  return {
    read: async (path) => (files[path] ? fixture(files[path]()) : null),
    flip: () => {
      suffix = 'b';
    },
  };
}

test('LoadCollector: every indicator from two readings 1000 ms apart', async () => {
  const clock = new FakeClock(5000);
  const proc = fixtureProc();
  const fetched: string[] = [];
  const collector = new LoadCollector({
    weights: WEIGHTS,
    backlogCapacity: 100,
    statsUrl: 'http://app/stats',
    clock,
    read: proc.read,
    fetchBacklog: async (url) => {
      fetched.push(url);
      return 25;
    },
  });
  await collector.prime();
  clock.advance(1000);
  proc.flip();
  const s = await collector.sample();
  close(s.cpu, 0.45, 'cpu');
  close(s.memory, 0.75, 'memory');
  // Socket memory is 0.25 for both TCP and UDP; the 40 drops/s (30 IPv4 + 10 IPv6) dominate.
  close(s.network, 0.8, 'network');
  close(s.io, 0.75, 'io');
  close(s.backlog, 0.25, 'backlog');
  close(s.load, 0.4 * 0.45 + 0.2 * 0.75 + 0.2 * 0.8 + 0.1 * 0.75 + 0.1 * 0.25, 'load');
  assert.deepEqual(s.missing, []);
  assert.deepEqual(fetched, ['http://app/stats']);

  // Draining: no more fetches; the backlog is left out of the load.
  collector.disableStats();
  clock.advance(1000);
  const t = await collector.sample();
  assert.deepEqual(t.missing, ['backlog']);
  assert.equal(t.cpu, 0, 'the same reading twice: no CPU time passed');
  assert.equal(fetched.length, 1);
});

test('LoadCollector: indicators it cannot read are missing, reported as 0, and left out of the load', async () => {
  const clock = new FakeClock();
  const collector = new LoadCollector({
    weights: WEIGHTS,
    backlogCapacity: 100,
    clock,
    read: async (path) => (path === 'meminfo' ? fixture('meminfo') : null),
  });
  await collector.prime();
  clock.advance(1000);
  const s = await collector.sample();
  assert.deepEqual(s.missing, ['cpu', 'network', 'io', 'backlog']);
  assert.deepEqual([s.cpu, s.network, s.io, s.backlog], [0, 0, 0, 0]);
  close(s.load, 0.75, 'memory alone');
});

test('LoadCollector: when no weighted indicator can be read, the last load is repeated, not 0', async () => {
  const clock = new FakeClock();
  let readable = true;
  const collector = new LoadCollector({
    weights: { cpu: 0, memory: 1, network: 0, io: 0, backlog: 0 },
    backlogCapacity: 100,
    clock,
    read: async (path) => (readable && path === 'meminfo' ? fixture('meminfo') : null),
  });
  await collector.prime();
  clock.advance(1000);
  close((await collector.sample()).load, 0.75, 'memory read');
  readable = false;
  clock.advance(1000);
  close((await collector.sample()).load, 0.75, 'memory unreadable: the last load, not an idle-looking 0');
});

test('LoadCollector on this machine: every value in [0,1]', async () => {
  const collector = new LoadCollector({ weights: WEIGHTS, backlogCapacity: 100 });
  await collector.prime();
  const s = await collector.sample();
  for (const [name, v] of Object.entries(s)) {
    if (name === 'missing') continue;
    assert.ok(typeof v === 'number' && v >= 0 && v <= 1, `${name} = ${String(v)}`);
  }
  if (process.platform === 'linux') assert.deepEqual(s.missing, ['backlog']);
});

test('fetchBacklog over real HTTP: JSON, plain text, errors, timeout', async (t) => {
  const answers: Record<string, (res: http.ServerResponse) => void> = {
    '/json': (res) => res.end('{"backlog": 7}'),
    '/plain': (res) => res.end('12'),
    '/error': (res) => {
      res.statusCode = 500;
      res.end('3');
    },
    '/hang': () => {},
  };
  const server = http.createServer((req, res) => answers[req.url ?? '']?.(res));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  assert.equal(await fetchBacklog(`${base}/json`, 1000), 7);
  assert.equal(await fetchBacklog(`${base}/plain`, 1000), 12);
  assert.equal(await fetchBacklog(`${base}/error`, 1000), null);
  const started = Date.now();
  assert.equal(await fetchBacklog(`${base}/hang`, 100), null);
  assert.ok(Date.now() - started < 1000);
  const abort = new AbortController();
  const pending = fetchBacklog(`${base}/hang`, 5000, abort.signal);
  abort.abort();
  assert.equal(await pending, null);
  assert.equal(await fetchBacklog('http://127.0.0.1:1/', 1000), null, 'refused');
});
