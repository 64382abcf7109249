import { test } from 'node:test';
import assert from 'node:assert/strict';
import { configSchema } from '../../config/schema.js';

const http2Of = (http2: unknown): unknown => {
  const c = configSchema.parse({ services: [{ name: 'web', protocol: 'http', listen: '127.0.0.1:0', backends: [{ id: 'b0', address: '127.0.0.1:1' }], http: http2 === undefined ? {} : { http2 } }] });
  return c.services[0]!.http.http2;
};

test('http.http2: off by default; `true` is the defaults; an object without `enabled` is on', () => {
  assert.equal((http2Of(undefined) as { enabled: boolean }).enabled, false);
  const on = http2Of(true) as Record<string, unknown>;
  assert.deepEqual(
    { ...on },
    {
      enabled: true,
      maxConcurrentStreams: 100,
      initialWindowSize: 65_535,
      maxFrameSize: 16_384,
      maxHeaderListSize: 32 * 1024,
      maxResetsPerSecond: 200,
      maxSettingsPerSecond: 50,
      maxPingsPerSecond: 50,
      maxBadHeaderBlocks: 16,
      stallTimeoutMs: 30_000,
      maxSessionMemoryMiB: 10,
    },
  );
  assert.equal((http2Of({ maxConcurrentStreams: 10 }) as { enabled: boolean; maxConcurrentStreams: number }).maxConcurrentStreams, 10);
  assert.equal((http2Of({ enabled: false, maxConcurrentStreams: 10 }) as { enabled: boolean }).enabled, false);
});

test('http.http2: bad values name the path', () => {
  assert.throws(() => http2Of({ maxFrameSize: 1000 }), /maxFrameSize/);
  assert.throws(() => http2Of({ pushEnabled: true }), /pushEnabled|Unrecognized/);
  assert.throws(() => http2Of('yes'), /http2/);
});
