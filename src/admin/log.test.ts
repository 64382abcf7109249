import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { FakeClock } from '../core/clock.js';
import { channels } from '../core/diagnostics.js';
import type { BackendErrorEvent, BackendStateEvent } from '../core/diagnostics.js';
import { createLogger, ERROR_LOG_WINDOW_MS, subscribeLogs } from './log.js';

/** A destination that keeps every chunk written to it. */
class MemoryStream extends Writable {
  readonly chunks: string[] = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.chunks.push(chunk.toString());
    cb();
  }
  get text(): string {
    return this.chunks.join('');
  }
  /** Every JSON line written so far, parsed. */
  lines(): Record<string, unknown>[] {
    return this.text
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  }
}

/** pino's numeric levels. */
const INFO = 30;
const WARN = 40;
const DEBUG = 20;

const state = (e: BackendStateEvent): void => channels.backendState.publish(e);
const error = (e: BackendErrorEvent): void => channels.backendError.publish(e);

test('backend transitions: down logs warn, up logs info, with service, backend, from, to, reason', (t) => {
  const out = new MemoryStream();
  const unsubscribe = subscribeLogs(createLogger({ level: 'info', format: 'json' }, out), new FakeClock());
  t.after(unsubscribe);

  state({ service: 'web', backend: 'b1', from: 'up', to: 'down', reason: 'refused', at: 10 });
  state({ service: 'web', backend: 'b1', from: 'down', to: 'up', reason: 'probe ok', at: 20 });

  const lines = out.lines();
  assert.equal(lines.length, 2);
  assert.deepEqual(
    lines.map(({ level, service, backend, from, to, reason }) => ({ level, service, backend, from, to, reason })),
    [
      { level: WARN, service: 'web', backend: 'b1', from: 'up', to: 'down', reason: 'refused' },
      { level: INFO, service: 'web', backend: 'b1', from: 'down', to: 'up', reason: 'probe ok' },
    ],
  );
  assert.match(String(lines[0]!.msg), /web\/b1 down/);
});

test('a flood of 1000 backend errors logs one line, then one line with the suppressed count', (t) => {
  const out = new MemoryStream();
  const clock = new FakeClock(5_000);
  const unsubscribe = subscribeLogs(createLogger({ level: 'info', format: 'json' }, out), clock);
  t.after(unsubscribe);

  for (let i = 0; i < 1000; i++) error({ service: 'web', backend: 'b1', kind: 'refused' });
  // A different kind on the same backend has its own window.
  error({ service: 'web', backend: 'b1', kind: 'timeout' });

  let lines = out.lines();
  assert.equal(lines.length, 2);
  assert.deepEqual(
    lines.map(({ level, service, backend, kind, suppressed }) => ({ level, service, backend, kind, suppressed })),
    [
      { level: WARN, service: 'web', backend: 'b1', kind: 'refused', suppressed: undefined },
      { level: WARN, service: 'web', backend: 'b1', kind: 'timeout', suppressed: undefined },
    ],
  );

  clock.advance(ERROR_LOG_WINDOW_MS - 1);
  assert.equal(out.lines().length, 2, 'nothing more inside the window');

  clock.advance(1);
  lines = out.lines();
  assert.equal(lines.length, 3);
  assert.equal(lines[2]!.level, WARN);
  assert.equal(lines[2]!.kind, 'refused');
  assert.equal(lines[2]!.suppressed, 999);

  // The window that followed stayed quiet: it closes without a line, and the next error logs at once.
  clock.advance(ERROR_LOG_WINDOW_MS * 3);
  assert.equal(out.lines().length, 3);
  error({ service: 'web', backend: 'b1', kind: 'refused' });
  lines = out.lines();
  assert.equal(lines.length, 4);
  assert.equal(lines[3]!.suppressed, undefined);
});

test('a steady flood logs at most one line per window, each with the count of the window', (t) => {
  const out = new MemoryStream();
  const clock = new FakeClock();
  const unsubscribe = subscribeLogs(createLogger({ level: 'info', format: 'json' }, out), clock);
  t.after(unsubscribe);

  // 10 errors per 100 ms for 3 s.
  for (let step = 0; step < 30; step++) {
    for (let i = 0; i < 10; i++) error({ service: 'db', backend: 'b2', kind: 'reset' });
    clock.advance(100);
  }
  const lines = out.lines();
  assert.deepEqual(
    lines.map((l) => l.suppressed),
    [undefined, 99, 100, 100],
  );
});

test('unsubscribe stops logging and reports counts still pending', (t) => {
  const out = new MemoryStream();
  const clock = new FakeClock();
  const unsubscribe = subscribeLogs(createLogger({ level: 'info', format: 'json' }, out), clock);
  for (let i = 0; i < 5; i++) error({ service: 'web', backend: 'b1', kind: 'reset' });
  unsubscribe();
  t.after(unsubscribe); // idempotent
  assert.deepEqual(
    out.lines().map((l) => l.suppressed),
    [undefined, 4],
  );
  error({ service: 'web', backend: 'b1', kind: 'reset' });
  state({ service: 'web', backend: 'b1', from: 'up', to: 'down', reason: 'x', at: 0 });
  clock.advance(ERROR_LOG_WINDOW_MS * 2);
  assert.equal(out.lines().length, 2);
});

test('refusals log at debug only, and only when debug is enabled', (t) => {
  const quiet = new MemoryStream();
  const loud = new MemoryStream();
  const offA = subscribeLogs(createLogger({ level: 'info', format: 'json' }, quiet), new FakeClock());
  const offB = subscribeLogs(createLogger({ level: 'debug', format: 'json' }, loud), new FakeClock());
  t.after(offA);
  t.after(offB);
  channels.httpRefuse.publish({ service: 'web', status: 431, reason: 'head too large' });
  assert.equal(quiet.text, '');
  const [line] = loud.lines();
  assert.equal(line!.level, DEBUG);
  assert.equal(line!.status, 431);
  assert.equal(line!.reason, 'head too large');
  assert.equal(line!.service, 'web');
});

test('pretty format writes human-readable lines synchronously to the destination', () => {
  const out = new MemoryStream();
  const logger = createLogger({ level: 'info', format: 'pretty' }, out);
  logger.warn({ service: 'web' }, 'hello there');
  assert.match(out.text, /WARN.*hello there/);
  assert.match(out.text, /service: "web"/);
  assert.throws(() => JSON.parse(out.text.trim()));
});
