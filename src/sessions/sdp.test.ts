/**
 * @module Tests of SDP inspection and rewriting: session- and media-level c=, m= ports, a=rtcp (RFC
 * 3605), port 0, IPv6 and hold left alone, audio + video, byte-exact preservation of everything
 * else, and malformed bodies refused without throwing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseSdp, rewriteSdp, type ParsedSdp } from './sdp.js';

const CRLF = '\r\n';
const sdp = (...lines: string[]): string => lines.join(CRLF) + CRLF;

function parsed(text: string): ParsedSdp {
  const r = parseSdp(text);
  if (!r.ok) throw new Error(r.reason);
  return r.sdp;
}

const AUDIO_VIDEO = sdp(
  'v=0',
  'o=alice 2890844526 98765432109876543210 IN IP4 10.0.0.5',
  's=Call',
  'c=IN IP4 10.0.0.5',
  't=0 0',
  'm=audio 49170 RTP/AVP 0 8',
  'a=rtpmap:0 PCMU/8000',
  'a=rtcp:53020 IN IP4 10.0.0.6',
  'm=video 51372 RTP/AVP 96',
  'c=IN IP4 10.0.0.7',
  'a=rtpmap:96 H264/90000',
  'x-unknown=kept?',
);

test('audio and video streams: ports, effective connection, a=rtcp or port + 1', () => {
  // 'x-unknown=kept?' is not <type>=<value> with a one-letter type: refused. Without it:
  assert.equal(parseSdp(AUDIO_VIDEO).ok, false);
  const text = AUDIO_VIDEO.replace('x-unknown=kept?\r\n', 'y=kept as is\r\n');
  const s = parsed(text);
  assert.equal(s.media.length, 2);
  assert.deepEqual({ ...s.media[0] }, {
    index: 0, type: 'audio', port: 49170, protocol: 'RTP/AVP', address: '10.0.0.5', ipVersion: 4, rtcpPort: 53020, rtcpAddress: '10.0.0.6', relayable: true,
  });
  assert.deepEqual({ ...s.media[1] }, {
    index: 1, type: 'video', port: 51372, protocol: 'RTP/AVP', address: '10.0.0.7', ipVersion: 4, rtcpPort: 51373, rtcpAddress: '10.0.0.7', relayable: true,
  });
});

test('rewrite points every relayed stream at the relay and keeps every other byte', () => {
  const text = AUDIO_VIDEO.replace('x-unknown=kept?\r\n', 'y=kept as is\r\n');
  const out = rewriteSdp(parsed(text), [{ address: '192.0.2.1', port: 20000 }, { address: '192.0.2.1', port: 20002 }]);
  assert.equal(
    out,
    sdp(
      'v=0',
      // o= untouched: the 20-digit version keeps its digits (sdp-transform's write() would not).
      'o=alice 2890844526 98765432109876543210 IN IP4 10.0.0.5',
      's=Call',
      'c=IN IP4 192.0.2.1',
      't=0 0',
      'm=audio 20000 RTP/AVP 0 8',
      'a=rtpmap:0 PCMU/8000',
      'a=rtcp:20001 IN IP4 192.0.2.1',
      'm=video 20002 RTP/AVP 96',
      'c=IN IP4 192.0.2.1',
      'a=rtpmap:96 H264/90000',
      'y=kept as is',
    ),
  );
});

test('a disabled stream (port 0) is not relayed and stays 0; the session c= is kept for non-relayed users', () => {
  const text = sdp('v=0', 'o=- 1 1 IN IP4 10.0.0.5', 's=-', 'c=IN IP4 10.0.0.5', 't=0 0', 'm=audio 4000 RTP/AVP 0', 'm=video 0 RTP/AVP 96', 'm=application 5000 TCP/MSRP *');
  const s = parsed(text);
  assert.deepEqual(s.media.map((m) => m.relayable), [true, false, false]);
  const out = rewriteSdp(s, [{ address: '192.0.2.1', port: 20000 }]);
  // The TCP stream still uses 10.0.0.5 from the session level: the audio gets its own c=.
  assert.equal(
    out,
    sdp('v=0', 'o=- 1 1 IN IP4 10.0.0.5', 's=-', 'c=IN IP4 10.0.0.5', 't=0 0', 'm=audio 20000 RTP/AVP 0', 'c=IN IP4 192.0.2.1', 'm=video 0 RTP/AVP 96', 'm=application 5000 TCP/MSRP *'),
  );
});

test('a stream with no relay port is disabled (port 0)', () => {
  const text = sdp('v=0', 'o=- 1 1 IN IP4 10.0.0.5', 's=-', 'c=IN IP4 10.0.0.5', 't=0 0', 'm=audio 4000 RTP/AVP 0', 'm=video 4002 RTP/AVP 96');
  const out = rewriteSdp(parsed(text), [{ address: '192.0.2.1', port: 20000 }, null], [false, true]);
  assert.equal(out, sdp('v=0', 'o=- 1 1 IN IP4 10.0.0.5', 's=-', 'c=IN IP4 192.0.2.1', 't=0 0', 'm=audio 20000 RTP/AVP 0', 'm=video 0 RTP/AVP 96'));
});

test('IPv6, hold (0.0.0.0), multicast and port counts are not relayed', () => {
  const s = parsed(
    sdp(
      'v=0', 'o=- 1 1 IN IP6 ::1', 's=-', 't=0 0',
      'm=audio 4000 RTP/AVP 0', 'c=IN IP6 2001:db8::1',
      'm=audio 4002 RTP/AVP 0', 'c=IN IP4 0.0.0.0',
      'm=audio 4004 RTP/AVP 0', 'c=IN IP4 224.2.1.1/127',
      'm=audio 4006/2 RTP/AVP 0', 'c=IN IP4 10.0.0.1',
    ),
  );
  assert.deepEqual(s.media.map((m) => m.relayable), [false, false, false, false]);
  assert.equal(s.media[0]!.ipVersion, 6);
  const t = { address: '192.0.2.1', port: 20000 };
  assert.equal(rewriteSdp(s, [t, t, t, t]), s.text);
});

test('LF-only line ends are kept', () => {
  const text = 'v=0\no=- 1 1 IN IP4 10.0.0.5\ns=-\nc=IN IP4 10.0.0.5\nt=0 0\nm=audio 4000 RTP/AVP 0\n';
  assert.equal(rewriteSdp(parsed(text), [{ address: '192.0.2.9', port: 30000 }]), 'v=0\no=- 1 1 IN IP4 10.0.0.5\ns=-\nc=IN IP4 192.0.2.9\nt=0 0\nm=audio 30000 RTP/AVP 0\n');
});

test('malformed SDP is refused with a reason, never thrown', () => {
  const cases = [
    '',
    'garbage',
    'hello\r\nworld\r\n',
    sdp('v=1', 's=-'),
    sdp('v=0', 'm=audio abc RTP/AVP 0', 'c=IN IP4 10.0.0.1'),
    sdp('v=0', 'm=audio 70000 RTP/AVP 0', 'c=IN IP4 10.0.0.1'),
    sdp('v=0', 'm=audio 4000 RTP/AVP 0', 'c=IN IP4 1.2.3'),
    sdp('v=0', 'm=audio 4000 RTP/AVP 0', 'c=IN IP4 300.1.1.1'),
    sdp('v=0', 'm=audio 4000 RTP/AVP 0', 'c=IN IPX 10.0.0.1'),
    sdp('v=0', 'm=audio 4000 RTP/AVP 0'),
    sdp('v=0', 'c=IN IP4 10.0.0.1', 'm=audio 4000 RTP/AVP 0', 'a=rtcp:x'),
    sdp('v=0', 'c=IN IP4 10.0.0.1', 'm=audio 4000 RTP/AVP 0', 'a=rtcp:99999'),
    sdp('v=0', 'c=IN IP4 10.0.0.1', 'm=audio'),
    'v=0\r\n\u0000\u0001\r\n',
  ];
  for (const text of cases) {
    const r = parseSdp(text);
    assert.equal(r.ok, false, JSON.stringify(text));
    if (!r.ok) assert.ok(r.reason.length > 0);
  }
  // A stream at port 0 needs no connection.
  assert.equal(parseSdp(sdp('v=0', 'm=audio 0 RTP/AVP 0')).ok, true);
});

test('random bytes never throw', () => {
  let seed = 12345;
  const rand = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
  const base = AUDIO_VIDEO.replace('x-unknown=kept?\r\n', '');
  for (let i = 0; i < 2000; i++) {
    const chars = base.split('');
    for (let k = 0; k < 3; k++) chars[Math.floor(rand() * chars.length)] = String.fromCharCode(Math.floor(rand() * 256));
    const r = parseSdp(chars.join(''));
    if (r.ok) rewriteSdp(r.sdp, r.sdp.media.map(() => ({ address: '192.0.2.1', port: 20000 })));
  }
});
