import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startOrigin } from './backend.js';
import { which } from './procs.js';
import { ERROR_RATIO_MAX, WrkErrorsError, parseDurationMs, parseWrkOutput, runWrk } from './wrk.js';

const noWrk = which('wrk') === null ? 'wrk is not installed (Debian package wrk)' : false;

// Captured from wrk 4.1.0 (Debian) against the bench origin.
const CLEAN = `Running 3s test @ http://127.0.0.1:36937/
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.15ms    1.25ms  30.45ms   91.36%
    Req/Sec    29.62k     7.85k   43.81k    80.00%
  Latency Distribution
     50%  821.00us
     75%    1.17ms
     90%    2.16ms
     99%    5.66ms
  88563 requests in 3.01s, 93.33MB read
Requests/sec:  29439.40
Transfer/sec:     31.02MB
`;

const WITH_ERRORS = `Running 2s test @ http://127.0.0.1:8080/
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   337.23us  100.01us    1.01s    90.00%
    Req/Sec    15.00k     3.00k   20.00k    80.00%
  Latency Distribution
     50%  320.00us
     75%  350.00us
     90%  400.00us
     99%    1.20s
  10000 requests in 2.00s, 10.00MB read
  Socket errors: connect 1, read 2, write 3, timeout 4
  Non-2xx or 3xx responses: 10
Requests/sec:   5000.00
Transfer/sec:      5.00MB
`;

test('parseDurationMs converts every wrk time unit to milliseconds', () => {
  assert.equal(parseDurationMs('821.00us'), 0.821);
  assert.equal(parseDurationMs('1.17ms'), 1.17);
  assert.equal(parseDurationMs('2.00s'), 2000);
  assert.equal(parseDurationMs('1.50m'), 90_000);
  assert.equal(parseDurationMs('1.00h'), 3_600_000);
  assert.throws(() => parseDurationMs('12 parsecs'), /cannot parse a time/);
});

test('parseWrkOutput reads rate, percentiles and counts of a clean run', () => {
  const r = parseWrkOutput(CLEAN);
  assert.equal(r.requestsPerSec, 29439.4);
  assert.equal(r.requests, 88563);
  assert.equal(r.durationSec, 3.01);
  assert.equal(r.latencyP50Ms, 0.821);
  assert.equal(r.latencyP75Ms, 1.17);
  assert.equal(r.latencyP90Ms, 2.16);
  assert.equal(r.latencyP99Ms, 5.66);
  assert.equal(r.latencyMaxMs, 30.45);
  assert.equal(r.non2xx, 0);
  assert.deepEqual(r.socketErrors, { connect: 0, read: 0, write: 0, timeout: 0 });
  assert.equal(r.errorRatio, 0);
});

test('parseWrkOutput counts socket errors and non-2xx responses into the error ratio', () => {
  const r = parseWrkOutput(WITH_ERRORS);
  assert.deepEqual(r.socketErrors, { connect: 1, read: 2, write: 3, timeout: 4 });
  assert.equal(r.non2xx, 10);
  assert.equal(r.errorRatio, 20 / 10000);
  assert.ok(r.errorRatio > ERROR_RATIO_MAX);
  assert.equal(r.latencyP99Ms, 1200);
  assert.equal(r.latencyMaxMs, 1010);
});

test('parseWrkOutput fails loudly without --latency output', () => {
  const noLatency = CLEAN.replace(/  Latency Distribution[\s\S]*?99%.*\n/, '');
  assert.throws(() => parseWrkOutput(noLatency), /50% latency line/);
  assert.throws(() => parseWrkOutput('unable to connect to 127.0.0.1:1 Connection refused\n'), /Requests\/sec/);
});

test('runWrk measures a real origin', { skip: noWrk }, async (t) => {
  const origin = await startOrigin({ size: 1024 });
  t.after(() => origin.close());
  const r = await runWrk({ url: `http://127.0.0.1:${origin.port}/`, seconds: 1, connections: 4 });
  assert.ok(r.requests > 0 && r.requestsPerSec > 0);
  assert.equal(r.errorRatio, 0);
  // wrk's count and the origin's agree, give or take the requests in flight when wrk stopped.
  assert.ok(origin.responses >= r.requests, `origin ${origin.responses} < wrk ${r.requests}`);
});

test('runWrk fails loudly when the target answers with errors', { skip: noWrk }, async (t) => {
  const body = 'overloaded';
  const reply = Buffer.from(`HTTP/1.1 503 Service Unavailable\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
  const server = net.createServer((s) => {
    s.on('data', () => s.write(reply));
    s.on('error', () => s.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => {
    server.close();
  });
  const { port } = server.address() as net.AddressInfo;
  await assert.rejects(runWrk({ url: `http://127.0.0.1:${port}/`, seconds: 1, connections: 2 }), (err: unknown) => {
    assert.ok(err instanceof WrkErrorsError);
    assert.ok(err.result.non2xx > 0 && err.result.errorRatio > ERROR_RATIO_MAX);
    return true;
  });
});
