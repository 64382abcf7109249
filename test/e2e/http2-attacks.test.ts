/**
 * @module One attack test per HTTP/2 defence (issue 19): rapid reset (CVE-2023-44487), SETTINGS
 * flood, PING flood, HPACK bomb (a header block that decodes past maxHeaderListSize), CONTINUATION
 * flood, zero-window stall. Each attacker speaks raw frames (test/helpers/h2-frames.ts) or a
 * misconfigured node:http2 client; each must see its connection closed — GOAWAY ENHANCE_YOUR_CALM
 * where holdfast decides, nghttp2's own close for the CONTINUATION flood — the defence counted on the
 * `holdfast:http2:defence` channel, and a well-behaved connection beside it still served.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import diagnostics_channel from 'node:diagnostics_channel';
import http2 from 'node:http2';
import type { Http2DefenceEvent } from '../../src/core/diagnostics.js';
import { startHttpBackend } from '../helpers/scripted-backend.js';
import { h2Connect, h2Request, h2Service } from '../helpers/h2-client.js';
import { END_HEADERS, END_STREAM, FrameType, frame, getBlock, hpackInt, literal, rawH2, type RawH2 } from '../helpers/h2-frames.js';
import type { ServiceDispatcher } from '../helpers/dispatcher.js';

const ENHANCE_YOUR_CALM = http2.constants.NGHTTP2_ENHANCE_YOUR_CALM;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Setup {
  readonly d: ServiceDispatcher;
  readonly defences: Http2DefenceEvent[];
}

/** A service whose backend answers /slow after 300 ms and anything else at once with `size` bytes. */
async function setup(t: TestContext, http2Cfg: Record<string, unknown>, size = 16): Promise<Setup> {
  const b = await startHttpBackend(async (req, res) => {
    if (req.url === '/slow') await sleep(300);
    res.end(Buffer.alloc(size, 120));
  });
  t.after(() => b.close());
  const d = await h2Service(t, [b.hostPort], {}, { http2: http2Cfg });
  const defences: Http2DefenceEvent[] = [];
  const on = (m: unknown): void => {
    defences.push(m as Http2DefenceEvent);
  };
  diagnostics_channel.subscribe('holdfast:http2:defence', on);
  t.after(() => diagnostics_channel.unsubscribe('holdfast:http2:defence', on));
  return { d, defences };
}

async function closedWithin(raw: RawH2, ms: number): Promise<boolean> {
  return Promise.race([raw.closed.then(() => true), sleep(ms).then(() => false)]);
}

/** A well-behaved client on its own connection is served. */
async function bystanderServed(t: TestContext, d: ServiceDispatcher): Promise<void> {
  const c = h2Connect(t, `http://127.0.0.1:${d.address.port}`);
  assert.equal((await h2Request(c, { ':path': '/ok' })).headers[':status'], 200, 'another connection is not affected');
}

test('rapid reset (CVE-2023-44487): streams opened and reset past maxResetsPerSecond get GOAWAY ENHANCE_YOUR_CALM', async (t) => {
  const { d, defences } = await setup(t, { maxResetsPerSecond: 20 });
  const raw = await rawH2(d.address.port);
  for (let id = 1; id < 2 * 200 && !raw.socket.destroyed; id += 2) {
    const rst = Buffer.alloc(4);
    rst.writeUInt32BE(http2.constants.NGHTTP2_CANCEL);
    raw.send(frame(FrameType.HEADERS, END_HEADERS | END_STREAM, id, Buffer.concat([Buffer.from([0x82, 0x86]), literal(':path', '/slow'), Buffer.from([0x41, 0x01, 0x61])])), frame(FrameType.RST_STREAM, 0, id, rst));
    if (id % 20 === 19) await sleep(1);
  }
  assert.ok(await closedWithin(raw, 3000), 'the connection is closed');
  assert.equal(raw.goawayCode(), ENHANCE_YOUR_CALM);
  assert.ok(defences.some((e) => e.defence === 'rapid-reset'), JSON.stringify(defences));
  await bystanderServed(t, d);
});

test('SETTINGS flood: past maxSettingsPerSecond, GOAWAY ENHANCE_YOUR_CALM', async (t) => {
  const { d, defences } = await setup(t, { maxSettingsPerSecond: 20 });
  const raw = await rawH2(d.address.port);
  const setting = Buffer.alloc(6);
  setting.writeUInt16BE(0x4, 0); // SETTINGS_INITIAL_WINDOW_SIZE
  setting.writeUInt32BE(65535, 2);
  for (let i = 0; i < 200 && !raw.socket.destroyed; i++) raw.send(frame(FrameType.SETTINGS, 0, 0, setting));
  assert.ok(await closedWithin(raw, 3000), 'the connection is closed');
  assert.equal(raw.goawayCode(), ENHANCE_YOUR_CALM);
  assert.deepEqual(
    defences.map((e) => e.defence),
    ['settings-flood'],
  );
  await bystanderServed(t, d);
});

test('PING flood: past maxPingsPerSecond, GOAWAY ENHANCE_YOUR_CALM', async (t) => {
  const { d, defences } = await setup(t, { maxPingsPerSecond: 20 });
  const raw = await rawH2(d.address.port);
  for (let i = 0; i < 500 && !raw.socket.destroyed; i++) raw.send(frame(FrameType.PING, 0, 0, Buffer.alloc(8, i & 0xff)));
  assert.ok(await closedWithin(raw, 3000), 'the connection is closed');
  assert.equal(raw.goawayCode(), ENHANCE_YOUR_CALM);
  assert.deepEqual(
    defences.map((e) => e.defence),
    ['ping-flood'],
  );
  await bystanderServed(t, d);
});

test('HPACK bomb: header blocks decoding past maxHeaderListSize are refused, and past maxBadHeaderBlocks the connection gets GOAWAY', async (t) => {
  const { d, defences } = await setup(t, { maxHeaderListSize: 8192, maxBadHeaderBlocks: 3 });
  const raw = await rawH2(d.address.port);
  await sleep(100); // our SETTINGS ACK has reached the server: its maxHeaderListSize is in force
  // One 4000-byte value put in the dynamic table, then referenced 100 times with one byte each:
  // 4 KB on the wire, 400 KB decoded.
  for (let id = 1; id < 2 * 10 && !raw.socket.destroyed; id += 2) {
    const parts = [getBlock(), literal('x-big', 'v'.repeat(4000), true)];
    for (let i = 0; i < 100; i++) parts.push(hpackInt(62, 7, 0x80));
    raw.send(frame(FrameType.HEADERS, END_HEADERS | END_STREAM, id, Buffer.concat(parts)));
    await sleep(20);
  }
  assert.ok(await closedWithin(raw, 3000), 'the connection is closed');
  assert.ok(raw.types.includes(FrameType.RST_STREAM), 'each bomb stream is refused');
  assert.ok(!raw.types.includes(FrameType.DATA), 'no bomb reached a backend');
  assert.equal(raw.goawayCode(), ENHANCE_YOUR_CALM);
  assert.deepEqual(
    defences.map((e) => e.defence),
    ['header-block'],
  );
  await bystanderServed(t, d);
});

test('CONTINUATION flood: nghttp2 ends the connection after its CONTINUATION bound; counted as header-block', async (t) => {
  const { d, defences } = await setup(t, {});
  const raw = await rawH2(d.address.port);
  raw.send(frame(FrameType.HEADERS, 0, 1, getBlock()));
  for (let i = 0; i < 5000 && !raw.socket.destroyed; i++) {
    raw.send(frame(FrameType.CONTINUATION, 0, 1, literal(`x-a${i}`, 'v'.repeat(100))));
    if (i % 100 === 99) await sleep(1);
  }
  assert.ok(await closedWithin(raw, 3000), 'the connection is closed');
  assert.deepEqual(
    defences.map((e) => e.defence),
    ['header-block'],
  );
  await bystanderServed(t, d);
});

test('zero-window stall: a client that gives no flow-control window for stallTimeoutMs gets GOAWAY; memory stays bounded', async (t) => {
  const { d, defences } = await setup(t, { stallTimeoutMs: 300 }, 1024 * 1024);
  const c = http2.connect(`http://127.0.0.1:${d.address.port}`, { settings: { initialWindowSize: 0 } });
  c.on('error', () => {});
  t.after(() => c.destroy());
  const goaway = new Promise<number>((resolve) => c.once('goaway', (code: number) => resolve(code)));
  const s = c.request({ ':path': '/big' }, { endStream: true });
  s.on('error', () => {});
  s.pause();
  assert.equal(await Promise.race([goaway, sleep(5000).then(() => -1)]), ENHANCE_YOUR_CALM);
  assert.deepEqual(
    defences.map((e) => e.defence),
    ['zero-window'],
  );
  await bystanderServed(t, d);
});


