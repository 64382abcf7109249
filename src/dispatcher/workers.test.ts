/**
 * @module Which services dispatcher workers share, and the per-client limits each worker applies.
 * The processes themselves: test/e2e/dispatcher-workers.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import os from 'node:os';
import { parseConfig } from '../config/load.js';
import { notSpreadBecause, withConcretePorts, workerCount, workerLimits, workerServiceConfig } from './workers.js';

const config = (extra: string, dispatcher = '') =>
  parseConfig(`${dispatcher}
services:
  - name: s
    listen: '127.0.0.1:0'
    backends: [{ id: a, address: '127.0.0.1:1' }]
${extra}`);

test('HTTP and TCP services without shared state are spread; the others say why not', () => {
  const why = (extra: string, grouped: string[] = []) => notSpreadBecause(config(extra).services[0]!, new Set(grouped));
  assert.equal(why('    protocol: http'), null);
  assert.equal(why('    protocol: tcp'), null);
  assert.equal(why('    protocol: http\n    tls: { certificates: [{ cert: /c.pem, key: /k.pem }] }'), null);
  assert.equal(why('    protocol: udp'), 'protocol udp');
  assert.equal(why('    protocol: sip'), 'protocol sip');
  assert.equal(why('    protocol: rtsp'), 'protocol rtsp');
  assert.equal(why('    protocol: http', ['s']), 'moves with an election group');
  assert.equal(why('    protocol: http\n    sessions: { cookie: SID }'), null, 'virtual sessions are spread: the primary holds the table');
  assert.equal(why('    protocol: http\n    sessions: { header: X-Session }'), null);
  assert.equal(why('    protocol: http\n    admission: { enabled: true }'), 'SA2C admission');
  assert.equal(why('    protocol: http\n    balancer: shell'), 'balancer shell reads load vectors');
  assert.equal(why('    protocol: http\n    balancer: least-connections'), null);
  assert.equal(why('    protocol: http\n    http: { http2: true }'), 'HTTP/2 (not in workers yet)');
});

test('workers: a count, auto (cores), 1 by default', () => {
  assert.equal(workerCount(config('    protocol: http')), 1);
  assert.equal(workerCount(config('    protocol: http', 'dispatcher: { workers: 3 }')), 3);
  assert.equal(workerCount(config('    protocol: http', 'dispatcher: { workers: auto }')), os.availableParallelism());
  assert.throws(() => config('    protocol: http', 'dispatcher: { workers: 0 }'), /dispatcher\.workers/);
});

test('each worker applies its share of the listener-wide bound; the per-address bounds are not divided (the primary decides them)', () => {
  const limits = config('    protocol: http\n    limits: { maxConnections: 9, maxConnectionsPerAddress: 3, connectionsPerSecond: 10, requestsPerSecond: 5 }').services[0]!.limits;
  assert.deepEqual(workerLimits(limits, 2), { ...limits, maxConnections: 5 });
  assert.equal(workerLimits({ ...limits, maxConnections: 1 }, 4).maxConnections, 1);
  assert.equal(workerLimits({ ...limits, maxConnections: 0 }, 4).maxConnections, 0);
});

test('spread services on port 0 get a concrete port (node:cluster shares listeners by address and port)', async () => {
  const c = config('    protocol: http');
  const out = await withConcretePorts(c, new Set(['s']));
  assert.match(out.services[0]!.listen, /^127\.0\.0\.1:[1-9][0-9]*$/);
  assert.equal((await withConcretePorts(c, new Set())).services[0]!.listen, '127.0.0.1:0');
});

test('each worker logs requests within its share of maxTotalLogBytes, so all workers together stay within it', () => {
  const svc = config('    protocol: http\n    http: { failover: { maxTotalLogBytes: 1000001 } }\n    limits: { maxConnections: 4 }').services[0]!;
  const w = workerServiceConfig(svc, 2);
  assert.equal(w.http.failover.maxTotalLogBytes, 500000);
  assert.equal(w.limits.maxConnections, 2);
  assert.equal(w.http.failover.maxRequestLogBytes, svc.http.failover.maxRequestLogBytes);
});
