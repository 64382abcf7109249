/**
 * @module Tests of the RTSP inspector: RFC 2326 example messages (test/fixtures/rtsp), Transport specs
 * and their rewriting, Session ids and timeouts, what is malformed, the stream framer (split chunks,
 * interleaved `$` frames, bounds), and a fuzz run (random bytes, truncations and mutations: never throws).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  applyRtspEdits,
  buildRtspResponse,
  formatTransportSpec,
  isRelayableTransport,
  parseRtspMessage,
  RtspStreamFramer,
  salvageCseq,
  type RtspFrame,
  type RtspMessage,
} from './rtsp-message.js';

const fixtures = new URL('../../../test/fixtures/rtsp/', import.meta.url);

/** A fixture's bytes, LF line ends turned into CRLF (see test/fixtures/rtsp/README.md). */
function loadRtspFixture(name: string): Buffer {
  return Buffer.from(readFileSync(new URL(name, fixtures), 'latin1').replace(/\r?\n/g, '\r\n'), 'latin1');
}

function parse(raw: Buffer | string): RtspMessage {
  const r = parseRtspMessage(typeof raw === 'string' ? Buffer.from(raw, 'latin1') : raw);
  if (!r.ok) assert.fail(`expected a message, got malformed: ${r.detail}`);
  return r.message;
}

function malformed(raw: string): string {
  const r = parseRtspMessage(Buffer.from(raw, 'latin1'));
  assert.equal(r.ok, false, `expected malformed: ${JSON.stringify(raw)}`);
  return r.ok ? '' : r.detail;
}

test('RFC 2326 §14.1 SETUP: request line, CSeq, one UDP unicast Transport spec with client_port', () => {
  const m = parse(loadRtspFixture('rfc2326-14.1-setup.txt'));
  assert.equal(m.kind, 'request');
  assert.equal(m.method, 'SETUP');
  assert.equal(m.uri, 'rtsp://audio.example.com/twister/audio.en');
  assert.equal(m.version, 'RTSP/1.0');
  assert.equal(m.cseq, 1);
  assert.equal(m.session, null);
  assert.equal(m.transports.length, 1);
  const spec = m.transports[0]!;
  assert.equal(spec.protocol, 'RTP/AVP/UDP');
  assert.equal(spec.lower, 'UDP');
  assert.equal(spec.unicast, true);
  assert.deepEqual(spec.clientPort, [3056, 3057]);
  assert.equal(spec.serverPort, null);
  assert.ok(isRelayableTransport(spec));
  assert.equal(m.raw.toString('latin1', spec.start, spec.end), 'RTP/AVP/UDP;unicast;client_port=3056-3057');
  assert.equal(m.bodyLength, 0);
  assert.equal(m.length, m.raw.length);
});

test('RFC 2326 §14.1 SETUP reply: status, Session, a folded Transport with client_port and server_port', () => {
  const m = parse(loadRtspFixture('rfc2326-14.1-setup-reply.txt'));
  assert.equal(m.kind, 'response');
  assert.equal(m.status, 200);
  assert.equal(m.reason, 'OK');
  assert.deepEqual(m.session, { id: '12345678', timeoutS: null });
  const spec = m.transports[0]!;
  assert.deepEqual(spec.clientPort, [3056, 3057]);
  assert.deepEqual(spec.serverPort, [5000, 5001]);
});

test('Transport rewriting: the spec is replaced in place, parameters in order, the rest of the message untouched', () => {
  const m = parse(loadRtspFixture('rfc2326-14.1-setup-reply.txt'));
  const spec = m.transports[0]!;
  const text = formatTransportSpec(spec, { client_port: '7000-7001', server_port: '20000-20001' });
  assert.equal(text, 'RTP/AVP/UDP;unicast;client_port=7000-7001;server_port=20000-20001');
  const out = applyRtspEdits(m, [{ start: spec.start, end: spec.end, text }]).toString('latin1');
  assert.equal(
    out,
    'RTSP/1.0 200 OK\r\nCSeq: 1\r\nSession: 12345678\r\nTransport: RTP/AVP/UDP;unicast;client_port=7000-7001;server_port=20000-20001\r\n\r\n',
  );
  assert.ok(parseRtspMessage(Buffer.from(out, 'latin1')).ok, 'the rewritten message parses');
});

test('RFC 2326 §12.39 Transport list: a multicast spec then a unicast one; quoted mode values keep their commas', () => {
  const m = parse(loadRtspFixture('rfc2326-12.39-transport-list.txt'));
  assert.equal(m.cseq, 302);
  assert.equal(m.transports.length, 2);
  assert.equal(m.transports[0]!.unicast, false);
  assert.equal(isRelayableTransport(m.transports[0]!), false);
  assert.equal(m.transports[1]!.unicast, true);
  assert.deepEqual(m.transports[1]!.clientPort, [3456, 3457]);
  assert.ok(isRelayableTransport(m.transports[1]!));
  assert.equal(m.transports.findIndex(isRelayableTransport), 1);
});

test('Transport: interleaved TCP and non-RTP specs are not relayable; a single port means a pair', () => {
  const m = parse('SETUP rtsp://a/b RTSP/1.0\r\nCSeq: 3\r\nTransport: RTP/AVP/TCP;interleaved=0-1, x-real-rdt/udp;client_port=6970, RTP/AVP;unicast;client_port=6970\r\n\r\n');
  assert.equal(m.transports.length, 3);
  assert.equal(m.transports[0]!.lower, 'TCP');
  assert.deepEqual(m.transports[0]!.interleaved, [0, 1]);
  assert.equal(isRelayableTransport(m.transports[0]!), false);
  assert.equal(isRelayableTransport(m.transports[1]!), false);
  assert.deepEqual(m.transports[2]!.clientPort, [6970, 6971]);
  assert.ok(isRelayableTransport(m.transports[2]!));
});

test('RFC 2326 §14.1 PLAY: Session with ;timeout=60; DESCRIBE reply: SDP body framed by Content-Length', () => {
  const play = parse(loadRtspFixture('rfc2326-14.1-play.txt'));
  assert.deepEqual(play.session, { id: '12345678', timeoutS: 60 });
  const describe = parse(loadRtspFixture('rfc2326-14.2-describe-reply.txt'));
  assert.equal(describe.bodyLength, 165);
  assert.ok(describe.raw.toString('latin1', describe.bodyOffset).startsWith('v=0\r\n'));
  assert.equal(describe.length, describe.raw.length);
});

test('malformed: start lines, headers, CSeq, Session, Content-Length', () => {
  assert.match(malformed('GARBAGE\r\n\r\n'), /request line/);
  assert.match(malformed('OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n'), /blank line/);
  assert.match(malformed('RTSP/1.0 99 Weird\r\nCSeq: 1\r\n\r\n'), /status line/);
  assert.match(malformed('OPTIONS * RTSP/1.0\r\n\r\n'), /no CSeq/);
  assert.match(malformed('OPTIONS * RTSP/1.0\r\nCSeq: one\r\n\r\n'), /bad CSeq/);
  assert.match(malformed('OPTIONS * RTSP/1.0\r\nCSeq: 1\r\nCSeq: 2\r\n\r\n'), /repeated/);
  assert.match(malformed('OPTIONS * RTSP/1.0\r\nCSeq: 1\r\nSession: a b\r\n\r\n'), /Session id/);
  assert.match(malformed(`OPTIONS * RTSP/1.0\r\nCSeq: 1\r\nSession: ${'a'.repeat(257)}\r\n\r\n`), /Session id/);
  assert.match(malformed('OPTIONS * RTSP/1.0\r\nCSeq: 1\r\nSession: abc;timeout=soon\r\n\r\n'), /timeout/);
  assert.match(malformed('OPTIONS * RTSP/1.0\r\nCSeq: 1\r\nContent-Length: 5\r\n\r\nab'), /Content-Length/);
  assert.match(malformed('OPTIONS * RTSP/1.0\r\nCSeq: 1\r\nBad Header: x\r\n\r\n'), /header name/);
  assert.match(malformed('OPTIONS * RTSP/1.0\r\n folded\r\nCSeq: 1\r\n\r\n'), /folded/);
  assert.match(malformed('OPTIONS * RTSP/1.0\r\nCSeq: 1\r\nnocolon\r\n\r\n'), /colon/);
  // Lenient: bare LF, leading CRLF, case-insensitive names.
  const m = parse('\r\noptions * RTSP/1.0\ncseq: 9\nSESSION: A.b-c_d+e$\n\n');
  assert.equal(m.cseq, 9);
  assert.equal(m.session?.id, 'A.b-c_d+e$');
});

test('buildRtspResponse and salvageCseq: our own replies echo CSeq and Session', () => {
  assert.equal(
    buildRtspResponse(453, 'Not Enough Bandwidth', { cseq: 4, session: { id: 'xyz', timeoutS: null } }).toString('latin1'),
    'RTSP/1.0 453 Not Enough Bandwidth\r\nCSeq: 4\r\nSession: xyz\r\nContent-Length: 0\r\n\r\n',
  );
  assert.equal(buildRtspResponse(400, 'Bad Request', { cseq: null }).toString('latin1'), 'RTSP/1.0 400 Bad Request\r\nContent-Length: 0\r\n\r\n');
  assert.equal(salvageCseq(Buffer.from('BAD LINE\r\nCSeq: 17\r\n\r\n')), 17);
  assert.equal(salvageCseq(Buffer.from('BAD LINE\r\nCSeq: x\r\n\r\n')), null);
});

function drain(f: RtspStreamFramer): RtspFrame[] {
  const out: RtspFrame[] = [];
  for (let x = f.next(); x; x = f.next()) out.push(x);
  return out;
}

test('framer: messages and interleaved frames split at every byte come out whole and in order', () => {
  const describe = loadRtspFixture('rfc2326-14.2-describe-reply.txt');
  const interleaved = Buffer.concat([Buffer.from([0x24, 1, 0, 3]), Buffer.from('abc')]);
  const setup = loadRtspFixture('rfc2326-14.1-setup.txt');
  const stream = Buffer.concat([describe, interleaved, Buffer.from('\r\n'), setup]);
  for (let cut = 1; cut < stream.length; cut += 7) {
    const f = new RtspStreamFramer(4096, 4096);
    const frames: RtspFrame[] = [];
    for (let i = 0; i < stream.length; i += cut) {
      f.push(stream.subarray(i, i + cut));
      frames.push(...drain(f));
    }
    assert.deepEqual(
      frames.map((x) => (x.type === 'error' ? x : { type: x.type, bytes: x.bytes.toString('latin1') })),
      [
        { type: 'message', bytes: describe.toString('latin1') },
        { type: 'interleaved', bytes: interleaved.toString('latin1') },
        { type: 'message', bytes: setup.toString('latin1') },
      ],
      `chunks of ${cut}`,
    );
    assert.equal(f.bufferedBytes, 0);
  }
});

test('framer: a head over maxHeaderBytes, a body over maxBodyBytes or a bad Content-Length is an error, then nothing', () => {
  const big = new RtspStreamFramer(64, 1024);
  big.push(Buffer.from(`OPTIONS * RTSP/1.0\r\nX: ${'a'.repeat(100)}`));
  assert.deepEqual(drain(big).map((x) => x.type === 'error' && x.reason), ['too-large']);
  big.push(Buffer.from('OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n\r\n'));
  assert.deepEqual(drain(big), []);
  const body = new RtspStreamFramer(1024, 10);
  body.push(Buffer.from('ANNOUNCE * RTSP/1.0\r\nCSeq: 1\r\nContent-Length: 11\r\n\r\n'));
  assert.deepEqual(drain(body).map((x) => x.type === 'error' && x.reason), ['too-large']);
  const bad = new RtspStreamFramer(1024, 1024);
  bad.push(Buffer.from('ANNOUNCE * RTSP/1.0\r\nCSeq: 1\r\nContent-Length: -1\r\n\r\n'));
  assert.deepEqual(drain(bad).map((x) => x.type === 'error' && x.reason), ['malformed']);
});

/** xorshift32: a deterministic fuzz run. */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 4294967296;
  };
}

test('fuzz: random bytes, truncations and mutations of the fixtures never throw, from the parser or the framer', () => {
  const seeds = ['rfc2326-14.1-setup.txt', 'rfc2326-14.1-setup-reply.txt', 'rfc2326-14.1-play.txt', 'rfc2326-14.2-describe-reply.txt', 'rfc2326-12.39-transport-list.txt'].map(loadRtspFixture);
  const rand = rng(0x2326);
  const alphabet = Buffer.from('\r\n:;,=-$"<> \tRTSP/1.0CSeqSessionTransportclient_portserver_port0123456789');
  let parsed = 0;
  for (let i = 0; i < 20_000; i++) {
    const base = seeds[i % seeds.length]!;
    let buf: Buffer;
    switch (i % 4) {
      case 0:
        buf = Buffer.from(Array.from({ length: Math.floor(rand() * 200) }, () => Math.floor(rand() * 256)));
        break;
      case 1:
        buf = base.subarray(0, Math.floor(rand() * base.length));
        break;
      default: {
        buf = Buffer.from(base);
        const n = 1 + Math.floor(rand() * 6);
        for (let k = 0; k < n; k++) buf[Math.floor(rand() * buf.length)] = alphabet[Math.floor(rand() * alphabet.length)]!;
      }
    }
    const r = parseRtspMessage(buf);
    if (r.ok) {
      parsed++;
      for (const spec of r.message.transports) {
        assert.ok(spec.start >= 0 && spec.end <= r.message.length && spec.start <= spec.end);
        applyRtspEdits(r.message, [{ start: spec.start, end: spec.end, text: formatTransportSpec(spec, { client_port: '1-2' }) }]);
      }
    }
    const f = new RtspStreamFramer(512, 512);
    for (let at = 0; at < buf.length; ) {
      const next = at + 1 + Math.floor(rand() * 40);
      f.push(buf.subarray(at, next));
      drain(f);
      at = next;
    }
  }
  assert.ok(parsed > 1000, `some mutations still parse (${parsed})`);
});
