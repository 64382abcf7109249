/**
 * @module Tests of the SIP inspector on RFC 3261 §24.2 messages, compact forms, a folded "tortuous"
 * INVITE (RFC 4475 style), every malformed case it rejects, the rewriting helpers, the TCP framer,
 * and a fuzz run (random bytes, truncations and mutations of the fixtures: never throws).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  annotateTopVia,
  applyEdits,
  buildSipResponse,
  headerValues,
  parseSipMessage,
  removeTopVia,
  responseTarget,
  SipStreamFramer,
  type SipFrame,
  type SipMessage,
  type SipParseResult,
} from './sip-message.js';

const fixtures = new URL('../../../test/fixtures/sip/', import.meta.url);

/** A fixture's bytes, LF line ends turned into CRLF (see test/fixtures/sip/README.md). */
function loadSipFixture(name: string): Buffer {
  return Buffer.from(readFileSync(new URL(name, fixtures), 'latin1').replace(/\r?\n/g, '\r\n'), 'latin1');
}

const FIXTURES = [
  'rfc3261-f1-invite.txt',
  'rfc3261-f6-180-ringing.txt',
  'rfc3261-f9-200-ok.txt',
  'rfc3261-f11-ack.txt',
  'rfc3261-f13-bye.txt',
  'compact-form.txt',
  'torture-folded.txt',
];

function ok(result: SipParseResult): SipMessage {
  if (!result.ok) assert.fail(`expected a message, got ${result.reason}: ${result.detail}`);
  return result.message;
}

function parseUdp(raw: Buffer | string): SipParseResult {
  return parseSipMessage(typeof raw === 'string' ? Buffer.from(raw, 'latin1') : raw, { transport: 'udp' });
}

function slice(m: SipMessage, start: number, end: number): string {
  return m.raw.toString('latin1', start, end);
}

/** SDP lines as the fixtures carry them (CRLF each). */
const ALICE_SDP = [
  'v=0',
  'o=alice 2890844526 2890844526 IN IP4 pc33.atlanta.com',
  's=-',
  'c=IN IP4 192.0.2.101',
  't=0 0',
  'm=audio 49172 RTP/AVP 0',
  'a=rtpmap:0 PCMU/8000',
].map((l) => `${l}\r\n`).join('');

test('RFC 3261 F1 INVITE: start line, dialog identifiers, Via, Contact, Max-Forwards and the SDP body', () => {
  const m = ok(parseUdp(loadSipFixture('rfc3261-f1-invite.txt')));
  assert.equal(m.kind, 'request');
  assert.equal(m.method, 'INVITE');
  assert.equal(m.uri, 'sip:bob@biloxi.com');
  assert.equal(m.status, 0);
  assert.equal(m.callId, 'a84b4c76e66710');
  assert.equal(m.cseq, 314159);
  assert.equal(m.cseqMethod, 'INVITE');
  assert.equal(m.fromTag, '1928301774');
  assert.equal(m.toTag, null);
  assert.equal(m.contact, '<sip:alice@pc33.atlanta.com>');
  assert.equal(m.maxForwards, 70);
  assert.equal(m.vias.length, 1);
  const via = m.vias[0]!;
  assert.deepEqual(
    { transport: via.transport, host: via.host, port: via.port, branch: via.branch, received: via.received, rport: via.rport },
    { transport: 'UDP', host: 'pc33.atlanta.com', port: null, branch: 'z9hG4bKnashds8', received: null, rport: null },
  );
  assert.equal(slice(m, via.start, via.end), 'SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bKnashds8');
  assert.equal(m.contentLengthHeader, Buffer.byteLength(ALICE_SDP));
  assert.equal(m.bodyLength, 141);
  assert.equal(slice(m, m.bodyOffset, m.length), ALICE_SDP);
  assert.equal(m.length, m.raw.length);
  assert.deepEqual(
    m.headers.map((h) => h.name),
    ['via', 'max-forwards', 'to', 'from', 'call-id', 'cseq', 'contact', 'content-type', 'content-length'],
  );
  const cseq = m.headers[5]!;
  assert.equal(slice(m, cseq.start, cseq.end), 'CSeq: 314159 INVITE\r\n');
  assert.equal(slice(m, cseq.valueStart, cseq.valueEnd), '314159 INVITE');
});

test('RFC 3261 F6 180 Ringing: three Via lines folded before ;received, a two-value Record-Route', () => {
  const m = ok(parseUdp(loadSipFixture('rfc3261-f6-180-ringing.txt')));
  assert.equal(m.kind, 'response');
  assert.equal(m.status, 180);
  assert.equal(m.reason, 'Ringing');
  assert.equal(m.method, 'INVITE');
  assert.equal(m.uri, '');
  assert.equal(m.toTag, 'a6c85cf');
  assert.equal(m.fromTag, '1928301774');
  assert.deepEqual(
    m.vias.map((v) => [v.host, v.branch, v.received]),
    [
      ['server10.biloxi.com', 'z9hG4bK4b43c2ff8.1', '192.0.2.3'],
      ['bigbox3.site3.atlanta.com', 'z9hG4bK77ef4c2312983.1', '192.0.2.2'],
      ['pc33.atlanta.com', 'z9hG4bKnashds8', '192.0.2.1'],
    ],
  );
  const first = m.headers[m.vias[0]!.header]!;
  assert.equal(slice(m, first.start, first.end), 'Via: SIP/2.0/UDP server10.biloxi.com;branch=z9hG4bK4b43c2ff8.1\r\n ;received=192.0.2.3\r\n');
  assert.equal(first.value, 'SIP/2.0/UDP server10.biloxi.com;branch=z9hG4bK4b43c2ff8.1 ;received=192.0.2.3');
  assert.deepEqual(
    headerValues(m, 'record-route').map((r) => r.value),
    ['<sip:server10.biloxi.com;lr>', '<sip:bigbox3.site3.atlanta.com;lr>'],
  );
  assert.equal(m.bodyLength, 0);
});

test('RFC 3261 F9 200 OK carries its SDP; F11 ACK and F13 BYE carry the route set', () => {
  const ok200 = ok(parseUdp(loadSipFixture('rfc3261-f9-200-ok.txt')));
  assert.equal(ok200.status, 200);
  assert.equal(ok200.contentLengthHeader, 129);
  assert.ok(slice(ok200, ok200.bodyOffset, ok200.length).startsWith('v=0\r\no=bob '));
  assert.ok(slice(ok200, ok200.bodyOffset, ok200.length).endsWith('a=rtpmap:0 PCMU/8000\r\n'));

  const ack = ok(parseUdp(loadSipFixture('rfc3261-f11-ack.txt')));
  assert.equal(ack.method, 'ACK');
  assert.equal(ack.cseq, 314159);
  assert.equal(ack.cseqMethod, 'ACK');
  assert.equal(ack.toTag, 'a6c85cf');
  const routes = headerValues(ack, 'route');
  assert.deepEqual(routes.map((r) => r.value), ['<sip:bigbox3.site3.atlanta.com;lr>', '<sip:server10.biloxi.com;lr>']);
  assert.equal(slice(ack, routes[1]!.start, routes[1]!.end), '<sip:server10.biloxi.com;lr>');

  const bye = ok(parseUdp(loadSipFixture('rfc3261-f13-bye.txt')));
  assert.equal(bye.method, 'BYE');
  assert.equal(bye.cseq, 231);
  assert.equal(bye.fromTag, 'a6c85cf');
  assert.equal(bye.toTag, '1928301774');
  assert.deepEqual([bye.vias[0]!.host, bye.vias[0]!.port], ['192.0.2.4', null]);
});

test('compact forms: v, t, f, i, m, c, k, s, l; two Via values in one line; an empty rport', () => {
  const m = ok(parseSipMessage(loadSipFixture('compact-form.txt'), { transport: 'tcp' }));
  assert.equal(m.callId, 'f81d4fae-7dec-11d0-a765-00a0c91e6bf6@foo.bar.com');
  assert.equal(m.fromTag, '88sja8x');
  assert.equal(m.toTag, null);
  assert.equal(m.contact, '<sips:bob@192.0.2.4>;expires=60');
  assert.equal(m.contentLengthHeader, 141);
  assert.equal(m.maxForwards, null);
  assert.deepEqual(
    m.headers.map((h) => h.name),
    ['via', 'to', 'from', 'call-id', 'cseq', 'contact', 'content-type', 'supported', 'subject', 'content-length'],
  );
  assert.equal(m.vias.length, 2);
  assert.equal(m.vias[0]!.header, m.vias[1]!.header);
  assert.deepEqual(
    m.vias.map((v) => [v.transport, v.host, v.port, v.branch, v.rport]),
    [
      ['UDP', 'pc33.atlanta.com', 5062, 'z9hG4bKcompact1', ''],
      ['TCP', '192.0.2.7', null, 'z9hG4bKcompact0', null],
    ],
  );
  assert.equal(slice(m, m.vias[1]!.start, m.vias[1]!.end), 'SIP/2.0/TCP 192.0.2.7;branch=z9hG4bKcompact0');
});

test('a tortuous INVITE (RFC 4475 style): folding everywhere, odd case, spaces before colons, escaped quotes', () => {
  const m = ok(parseUdp(loadSipFixture('torture-folded.txt')));
  assert.equal(m.method, 'INVITE');
  assert.equal(m.uri, 'sip:vivekg@chair-dnrc.example.com;unknownparam');
  assert.equal(m.toTag, '1918181833n');
  assert.equal(m.fromTag, '98asjd8');
  assert.equal(m.maxForwards, 68);
  assert.equal(m.cseq, 9);
  assert.equal(m.cseqMethod, 'INVITE');
  assert.equal(m.callId, 'wsinv.ndaksdj@192.0.2.1');
  assert.deepEqual(
    m.vias.map((v) => [v.transport, v.host, v.branch, v.rport]),
    [
      ['UDP', '192.0.2.2', '390skdjuw', ''],
      ['TCP', 'spindle.example.com', 'z9hG4bK9ikj8', null],
      ['UDP', '192.168.255.111', 'z9hG4bK30239', null],
    ],
  );
  assert.ok(m.contact?.startsWith('"Quoted string \\"\\"" <sip:jdrosen@example.com>'), m.contact ?? 'null');
  assert.equal(m.bodyLength, 150);
  assert.equal(headerValues(m, 'subject').length, 0, 'the empty "s :" header has no value');
});

/** A minimal valid request, with `patch` applied to its text, for the malformed table. */
const BASE =
  'OPTIONS sip:bob@192.0.2.4 SIP/2.0\r\n' +
  'Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKbase\r\n' +
  'Max-Forwards: 70\r\n' +
  'From: <sip:alice@192.0.2.1>;tag=a1\r\n' +
  'To: <sip:bob@192.0.2.4>\r\n' +
  'Call-ID: base-1\r\n' +
  'CSeq: 1 OPTIONS\r\n' +
  'Content-Length: 0\r\n' +
  '\r\n';

test('the base request of the malformed table parses', () => {
  const m = ok(parseUdp(BASE));
  assert.equal(m.method, 'OPTIONS');
  assert.equal(m.length, BASE.length);
});

test('malformed: everything routing depends on, and framing', () => {
  const drop = (name: string) => BASE.replace(new RegExp(`^${name}:.*\\r\\n`, 'm'), '');
  const cases: [name: string, text: string, transport: 'udp' | 'tcp', detail: string][] = [
    ['empty', '', 'udp', 'empty message'],
    ['only line ends', '\r\n\r\n\r\n', 'udp', 'empty message'],
    ['no blank line', BASE.slice(0, -2), 'udp', 'no blank line after the headers'],
    ['no Call-ID', drop('Call-ID'), 'udp', 'no usable Call-ID'],
    ['no CSeq', drop('CSeq'), 'udp', 'no CSeq'],
    ['no Via', drop('Via'), 'udp', 'no Via'],
    ['no From', drop('From'), 'udp', 'no From'],
    ['no To', drop('To'), 'udp', 'no To'],
    ['empty Call-ID', BASE.replace('Call-ID: base-1', 'Call-ID:'), 'udp', 'no usable Call-ID'],
    ['Call-ID with a space', BASE.replace('Call-ID: base-1', 'Call-ID: base 1'), 'udp', 'no usable Call-ID'],
    ['two different Call-IDs', BASE.replace('Call-ID: base-1\r\n', 'Call-ID: base-1\r\ni: base-2\r\n'), 'udp', 'Call-ID repeated with different values'],
    ['two different CSeqs', BASE.replace('CSeq: 1 OPTIONS\r\n', 'CSeq: 1 OPTIONS\r\nCSeq: 2 OPTIONS\r\n'), 'udp', 'CSeq repeated with different values'],
    ['CSeq method differs', BASE.replace('CSeq: 1 OPTIONS', 'CSeq: 1 INVITE'), 'udp', 'CSeq method differs from the request method'],
    ['CSeq method differs in case', BASE.replace('CSeq: 1 OPTIONS', 'CSeq: 1 options'), 'udp', 'CSeq method differs from the request method'],
    ['CSeq without method', BASE.replace('CSeq: 1 OPTIONS', 'CSeq: 1'), 'udp', 'bad CSeq'],
    ['CSeq number too large', BASE.replace('CSeq: 1 OPTIONS', 'CSeq: 2147483648 OPTIONS'), 'udp', 'CSeq number out of range'],
    ['bad request line (two tokens)', BASE.replace('OPTIONS sip:bob@192.0.2.4 SIP/2.0', 'OPTIONS SIP/2.0'), 'udp', 'bad request line'],
    ['bad request line (double space)', BASE.replace('OPTIONS sip:', 'OPTIONS  sip:'), 'udp', 'bad request line'],
    ['bad version', BASE.replace('SIP/2.0\r\nVia', 'SIP/3.0\r\nVia'), 'udp', 'not SIP/2.0'],
    ['HTTP request', BASE.replace('OPTIONS sip:bob@192.0.2.4 SIP/2.0', 'GET / HTTP/1.1'), 'udp', 'bad Request-URI'],
    ['URI without scheme', BASE.replace('sip:bob@192.0.2.4 SIP', 'bob SIP'), 'udp', 'bad Request-URI'],
    ['two @ in a sip: URI (issue 21)', BASE.replace('sip:bob@192.0.2.4 SIP', 'sip:bob@1@7.0.0.1 SIP'), 'udp', 'bad Request-URI'],
    ['sip: URI without host', BASE.replace('sip:bob@192.0.2.4 SIP', 'sip:bob@ SIP'), 'udp', 'bad Request-URI'],
    ['sip: URI with a bad port', BASE.replace('sip:bob@192.0.2.4 SIP', 'sip:bob@192.0.2.4:123456 SIP'), 'udp', 'bad Request-URI'],
    ['bad method token', BASE.replace('OPTIONS sip:', 'OPT<IONS sip:').replace('1 OPTIONS', '1 OPT<IONS'), 'udp', 'bad method'],
    ['status 99', 'SIP/2.0 99 Low\r\n' + BASE.slice(BASE.indexOf('\r\n') + 2), 'udp', 'bad status line'],
    ['status 700', 'SIP/2.0 700 High\r\n' + BASE.slice(BASE.indexOf('\r\n') + 2), 'udp', 'bad status line'],
    ['status not 3 digits', 'SIP/2.0 2000 OK\r\n' + BASE.slice(BASE.indexOf('\r\n') + 2), 'udp', 'bad status line'],
    ['Via SIP/3.0', BASE.replace('SIP/2.0/UDP', 'SIP/3.0/UDP'), 'udp', 'Via: expected SIP/2.0/<transport> <sent-by>'],
    ['Via without sent-by', BASE.replace('SIP/2.0/UDP 192.0.2.1:5060;', 'SIP/2.0/UDP ;'), 'udp', 'Via: bad sent-by'],
    ['Via port 0', BASE.replace(':5060;', ':0;'), 'udp', 'Via: bad sent-by'],
    ['Via port 70000', BASE.replace(':5060;', ':70000;'), 'udp', 'Via: bad sent-by'],
    ['Via empty value in list', BASE.replace('z9hG4bKbase', 'z9hG4bKbase, '), 'udp', 'Via: empty value'],
    ['Max-Forwards not a number', BASE.replace('Max-Forwards: 70', 'Max-Forwards: seventy'), 'udp', 'bad Max-Forwards'],
    ['header line without colon', BASE.replace('Max-Forwards: 70', 'Max-Forwards 70'), 'udp', 'header line without a colon'],
    ['header name with a space', BASE.replace('Max-Forwards: 70', 'Max Forwards: 70'), 'udp', 'bad header name'],
    ['folded line before any header', BASE.replace('\r\nVia:', '\r\n continued\r\nVia:'), 'udp', 'folded line before any header'],
    ['Content-Length larger than the datagram', BASE.replace('Content-Length: 0', 'Content-Length: 1'), 'udp', 'Content-Length larger than the message'],
    ['Content-Length not a number', BASE.replace('Content-Length: 0', 'Content-Length: zero'), 'udp', 'bad Content-Length'],
    ['negative Content-Length', BASE.replace('Content-Length: 0', 'Content-Length: -1'), 'udp', 'bad Content-Length'],
    ['two different Content-Lengths', BASE.replace('Content-Length: 0\r\n', 'Content-Length: 0\r\nl: 4\r\n') + 'abcd', 'udp', 'Content-Length repeated with different values'],
    ['no Content-Length on TCP', drop('Content-Length'), 'tcp', 'no Content-Length on a stream transport'],
    ['Content-Length beyond the TCP message', BASE.replace('Content-Length: 0', 'Content-Length: 10') + 'short', 'tcp', 'Content-Length larger than the message'],
  ];
  for (const [name, text, transport, detail] of cases) {
    const r = parseSipMessage(Buffer.from(text, 'latin1'), { transport });
    assert.equal(r.ok, false, `${name}: parsed`);
    if (!r.ok) {
      assert.equal(r.reason, 'malformed', name);
      assert.ok(r.detail.startsWith(detail), `${name}: rejected for "${r.detail}", expected "${detail}"`);
    }
  }
});

test('lenient: leading CRLFs, bare LF, no Max-Forwards, an identical repeated Call-ID, bytes past Content-Length, no Content-Length on UDP', () => {
  const lead = ok(parseUdp(`\r\n\r\n${BASE}`));
  assert.equal(lead.startLineStart, 4);
  assert.equal(lead.method, 'OPTIONS');

  const lf = ok(parseUdp(BASE.replace(/\r\n/g, '\n')));
  assert.equal(lf.callId, 'base-1');
  assert.equal(lf.length, BASE.length - (BASE.split('\r\n').length - 1), 'each CRLF became one LF');

  assert.equal(ok(parseUdp(BASE.replace('Max-Forwards: 70\r\n', ''))).maxForwards, null);
  assert.equal(ok(parseUdp(BASE.replace('Call-ID: base-1\r\n', 'Call-ID: base-1\r\ni: base-1\r\n'))).callId, 'base-1');

  const padded = ok(parseUdp(BASE.replace('Content-Length: 0', 'Content-Length: 3') + 'abcTRAILING'));
  assert.equal(padded.bodyLength, 3);
  assert.equal(padded.length, BASE.length + 3, 'the head is as long as BASE\'s, then three body bytes');
  assert.equal(padded.raw.toString('latin1', padded.bodyOffset, padded.length), 'abc');

  const noLength = ok(parseUdp(BASE.replace('Content-Length: 0\r\n', '') + 'hello'));
  assert.equal(noLength.contentLengthHeader, null);
  assert.equal(noLength.bodyLength, 5);

  const noBranch = ok(parseUdp(BASE.replace(';branch=z9hG4bKbase', '')));
  assert.equal(noBranch.vias[0]!.branch, null);
  assert.equal(noBranch.vias[0]!.port, 5060);

  const v6 = ok(parseUdp(BASE.replace('192.0.2.1:5060', '[2001:db8::1]:5070')));
  assert.deepEqual([v6.vias[0]!.host, v6.vias[0]!.port], ['2001:db8::1', 5070]);
});

test('too large: over maxMessageBytes is its own reason', () => {
  const r = parseSipMessage(Buffer.from(BASE), { transport: 'udp', maxMessageBytes: BASE.length - 1 });
  assert.deepEqual([r.ok, r.ok ? null : r.reason], [false, 'too-large']);
  assert.equal(parseSipMessage(Buffer.from(BASE), { transport: 'udp', maxMessageBytes: BASE.length }).ok, true);
});

test('annotateTopVia: received when sent-by differs (RFC 3261 §18.2.1), rport filled and received always (RFC 3581 §4)', () => {
  const f1 = ok(parseUdp(loadSipFixture('rfc3261-f1-invite.txt')));
  const edit = annotateTopVia(f1, '192.0.2.1', 5060)!;
  assert.equal(edit.text, 'SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bKnashds8;received=192.0.2.1');
  const rewritten = ok(parseUdp(applyEdits(f1, [edit])));
  assert.equal(rewritten.vias[0]!.received, '192.0.2.1');
  assert.equal(rewritten.bodyLength, 141);
  assert.deepEqual(responseTarget(rewritten.vias[0]!), { host: '192.0.2.1', port: 5060 });

  const compact = ok(parseUdp(loadSipFixture('compact-form.txt')));
  const c = annotateTopVia(compact, '198.51.100.9', 40000)!;
  assert.equal(c.text, 'SIP/2.0/UDP pc33.atlanta.com:5062;branch=z9hG4bKcompact1;rport=40000;received=198.51.100.9');
  const cr = ok(parseUdp(applyEdits(compact, [c])));
  assert.deepEqual(responseTarget(cr.vias[0]!), { host: '198.51.100.9', port: 40000 });
  assert.equal(cr.vias[1]!.branch, 'z9hG4bKcompact0', 'the second value of the line is untouched');

  assert.equal(annotateTopVia(ok(parseUdp(BASE)), '192.0.2.1', 5060), null, 'sent-by is the source: nothing to add');
  const same = ok(parseUdp(BASE.replace('z9hG4bKbase', 'z9hG4bKbase;rport')));
  assert.equal(annotateTopVia(same, '192.0.2.1', 5060)!.text, 'SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKbase;rport=5060;received=192.0.2.1');
  // Without rport the response goes to the sent-by port, with the received address.
  assert.deepEqual(responseTarget(ok(parseUdp(BASE.replace(':5060', ':5099'))).vias[0]!), { host: '192.0.2.1', port: 5099 });
});

test('annotateTopVia: a received= or rport value the client wrote never survives, so responses cannot be aimed elsewhere (review finding 3)', () => {
  // Sent-by is the real source 192.0.2.1:5060, but the client names a victim in received/rport.
  const forged = ok(parseUdp(BASE.replace('z9hG4bKbase', 'z9hG4bKbase;received=203.0.113.7;rport=9999')));
  const edit = annotateTopVia(forged, '192.0.2.1', 5060)!;
  assert.ok(edit, 'the forged values are rewritten');
  assert.equal(edit.text, 'SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKbase;received=192.0.2.1;rport=5060');
  const fixed = ok(parseUdp(applyEdits(forged, [edit])));
  assert.deepEqual(responseTarget(fixed.vias[0]!), { host: '192.0.2.1', port: 5060 });
  // received alone (no rport): overwritten with the source address.
  const onlyReceived = ok(parseUdp(BASE.replace('z9hG4bKbase', 'z9hG4bKbase;received=203.0.113.7')));
  const r = annotateTopVia(onlyReceived, '192.0.2.1', 5060)!;
  assert.equal(r.text, 'SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKbase;received=192.0.2.1');
  // rport with a wrong value, sent-by differing from the source: both from the real source.
  const wrongRport = ok(parseUdp(BASE.replace('z9hG4bKbase', 'z9hG4bKbase;rport=9999')));
  const w = ok(parseUdp(applyEdits(wrongRport, [annotateTopVia(wrongRport, '198.51.100.2', 40001)!])));
  assert.deepEqual(responseTarget(w.vias[0]!), { host: '198.51.100.2', port: 40001 });
  // Values that already are the source's: nothing to change.
  const right = ok(parseUdp(BASE.replace('z9hG4bKbase', 'z9hG4bKbase;rport=5060;received=192.0.2.1')));
  assert.equal(annotateTopVia(right, '192.0.2.1', 5060), null);
});

test('removeTopVia: the whole line when alone in it, the value and its comma when sharing one', () => {
  const f6 = ok(parseUdp(loadSipFixture('rfc3261-f6-180-ringing.txt')));
  const after = ok(parseUdp(applyEdits(f6, [removeTopVia(f6)])));
  assert.deepEqual(after.vias.map((v) => v.host), ['bigbox3.site3.atlanta.com', 'pc33.atlanta.com']);
  assert.equal(after.raw.length, f6.raw.length - 'Via: SIP/2.0/UDP server10.biloxi.com;branch=z9hG4bK4b43c2ff8.1\r\n ;received=192.0.2.3\r\n'.length);

  const compact = ok(parseUdp(loadSipFixture('compact-form.txt')));
  const c = ok(parseUdp(applyEdits(compact, [removeTopVia(compact)])));
  assert.equal(c.vias.length, 1);
  assert.equal(c.vias[0]!.branch, 'z9hG4bKcompact0');
  assert.ok(c.raw.toString('latin1').includes('\r\nv: SIP/2.0/TCP 192.0.2.7;branch=z9hG4bKcompact0\r\n'));
});

test('applyEdits: inserts at one offset keep their order; the datagram past Content-Length is dropped', () => {
  const m = ok(parseUdp(BASE.replace('Content-Length: 0', 'Content-Length: 2') + 'okJUNK'));
  const at = m.headers[0]!.start;
  const out = applyEdits(m, [
    { start: at, end: at, text: 'Via: first\r\n' },
    { start: at, end: at, text: 'Record-Route: <sip:x;lr>\r\n' },
  ]).toString('latin1');
  assert.ok(out.startsWith('OPTIONS sip:bob@192.0.2.4 SIP/2.0\r\nVia: first\r\nRecord-Route: <sip:x;lr>\r\nVia: SIP/2.0/UDP'));
  assert.ok(out.endsWith('\r\n\r\nok'));
});

test('buildSipResponse: a 503 per RFC 3261 §8.2.6 (Vias, From, To + tag, Call-ID, CSeq copied)', () => {
  const f1 = ok(parseUdp(loadSipFixture('rfc3261-f1-invite.txt')));
  const out = buildSipResponse(f1, 503, 'Service Unavailable', {
    srcHost: '192.0.2.1',
    srcPort: 5060,
    toTag: 'hf503',
    extra: ['Retry-After: 5'],
  });
  assert.equal(
    out.toString('latin1'),
    'SIP/2.0 503 Service Unavailable\r\n' +
      'Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bKnashds8;received=192.0.2.1\r\n' +
      'To: Bob <sip:bob@biloxi.com>;tag=hf503\r\n' +
      'From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n' +
      'Call-ID: a84b4c76e66710\r\n' +
      'CSeq: 314159 INVITE\r\n' +
      'Retry-After: 5\r\n' +
      'Content-Length: 0\r\n\r\n',
  );
  const r = ok(parseSipMessage(out, { transport: 'tcp' }));
  assert.deepEqual([r.status, r.method, r.toTag], [503, 'INVITE', 'hf503']);
});

function frames(framer: SipStreamFramer): SipFrame[] {
  const out: SipFrame[] = [];
  for (let f = framer.next(); f; f = framer.next()) out.push(f);
  return out;
}

test('SipStreamFramer: messages by Content-Length, CRLFCRLF pings, lone CRLFs skipped, any chunking', () => {
  const a = loadSipFixture('rfc3261-f1-invite.txt');
  const b = loadSipFixture('rfc3261-f9-200-ok.txt');
  const stream = Buffer.concat([Buffer.from('\r\n'), a, Buffer.from('\r\n\r\n'), b, Buffer.from('\r\n'), a]);
  for (const chunkSize of [1, 2, 3, 7, 100, stream.length]) {
    const framer = new SipStreamFramer(65_535);
    const out: SipFrame[] = [];
    for (let i = 0; i < stream.length; i += chunkSize) {
      framer.push(stream.subarray(i, i + chunkSize));
      out.push(...frames(framer));
    }
    assert.deepEqual(
      out.map((f) => f.type),
      ['message', 'ping', 'message', 'message'],
      `chunk ${chunkSize}`,
    );
    assert.ok((out[0] as { bytes: Buffer }).bytes.equals(a));
    assert.ok((out[2] as { bytes: Buffer }).bytes.equals(b));
    assert.ok((out[3] as { bytes: Buffer }).bytes.equals(a));
    assert.equal(framer.bufferedBytes, 0);
  }
});

test('SipStreamFramer: no Content-Length, a bad one, too large, a stray CR are errors; nothing after an error', () => {
  const cases: [string, string, number, 'malformed' | 'too-large'][] = [
    ['no Content-Length', BASE.replace('Content-Length: 0\r\n', ''), 65_535, 'malformed'],
    ['bad Content-Length', BASE.replace('Content-Length: 0', 'Content-Length: 1x'), 65_535, 'malformed'],
    ['huge Content-Length', BASE.replace('Content-Length: 0', 'Content-Length: 999999999'), 65_535, 'too-large'],
    ['head too large', 'INVITE sip:x SIP/2.0\r\nX: ' + 'a'.repeat(2000), 1024, 'too-large'],
    ['stray CR', '\rINVITE', 1024, 'malformed'],
  ];
  for (const [name, text, max, reason] of cases) {
    const framer = new SipStreamFramer(max);
    framer.push(Buffer.from(text, 'latin1'));
    const f = framer.next();
    assert.equal(f?.type, 'error', name);
    if (f?.type === 'error') assert.equal(f.reason, reason, name);
    framer.push(Buffer.from(BASE));
    assert.equal(framer.next(), null, `${name}: the framer is dead`);
  }
  // The compact form counts for framing too.
  const framer = new SipStreamFramer(65_535);
  framer.push(loadSipFixture('compact-form.txt'));
  assert.equal(framer.next()?.type, 'message');
});

test('SipStreamFramer: linear work on a head that arrives byte by byte (review finding 5)', () => {
  // Counted in bytes copied by Buffer.concat, not in time: a framer that merges its whole buffer
  // on every next() copies n²/2 bytes for an n-byte head pushed one byte at a time.
  const head = Buffer.from(`INVITE sip:a@b SIP/2.0\r\nX-Pad: ${'x'.repeat(16_000)}\r\n`, 'latin1');
  const message = Buffer.concat([head, Buffer.from(BASE.slice(BASE.indexOf('\r\n') + 2), 'latin1')]);
  const concat = Buffer.concat;
  let copied = 0;
  Buffer.concat = ((list: readonly Uint8Array[], total?: number) => {
    const out = concat(list, total);
    copied += out.length;
    return out;
  }) as typeof Buffer.concat;
  let out: SipFrame[];
  try {
    const framer = new SipStreamFramer(65_535);
    out = [];
    for (let i = 0; i < message.length; i++) {
      framer.push(message.subarray(i, i + 1));
      out.push(...frames(framer));
    }
  } finally {
    Buffer.concat = concat;
  }
  assert.deepEqual(out.map((f) => f.type), ['message']);
  assert.ok((out[0] as { bytes: Buffer }).bytes.equals(message));
  assert.ok(copied <= 8 * message.length, `${copied} bytes copied for a ${message.length}-byte message`);

  // The blank line straddling a chunk boundary at every offset, bare LF line ends included.
  for (const eol of ['\r\n', '\n']) {
    const text = Buffer.from(BASE.replace(/\r\n/g, eol), 'latin1');
    const end = text.length;
    for (let cut = end - 4; cut < end; cut++) {
      for (let cut2 = cut + 1; cut2 <= end; cut2++) {
        const framer = new SipStreamFramer(65_535);
        const got: SipFrame[] = [];
        for (const part of [text.subarray(0, cut), text.subarray(cut, cut2), text.subarray(cut2)]) {
          framer.push(part);
          got.push(...frames(framer));
        }
        assert.deepEqual(got.map((f) => f.type), ['message'], `${JSON.stringify(eol)} cut at ${cut}, ${cut2}`);
        assert.ok((got[0] as { bytes: Buffer }).bytes.equals(text));
      }
    }
  }
});

/** xorshift32: a deterministic stream of pseudo-random numbers for the fuzz run. */
function prng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 0x100000000;
  };
}

/**
 * A catastrophic case (exponential backtracking, a quadratic scan of a 64 KiB message) takes seconds;
 * the slowest real parse takes well under a millisecond. The bound only catches the former.
 */
const CATASTROPHIC_MS = 1000;

test('fuzz: random bytes, every truncation, mutations and adversarial repetitions never throw', () => {
  const rand = prng(0x5157);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const specials = Buffer.from('\r\n \t:;,"<>=/[]\\@0zZ');
  const inputs: Buffer[] = [];
  for (let i = 0; i < 500; i++) {
    const b = Buffer.alloc(Math.floor(rand() * 600));
    for (let j = 0; j < b.length; j++) b[j] = Math.floor(rand() * 256);
    inputs.push(b);
  }
  const sources = FIXTURES.map(loadSipFixture).concat(Buffer.from(BASE));
  for (const src of sources) for (let n = 0; n <= src.length; n++) inputs.push(src.subarray(0, n));
  for (let i = 0; i < 5000; i++) {
    const b = Buffer.from(pick(sources));
    const edits = 1 + Math.floor(rand() * 4);
    let out = b;
    for (let e = 0; e < edits; e++) {
      const at = Math.floor(rand() * out.length);
      switch (Math.floor(rand() * 4)) {
        case 0:
          out[at] = pick([...specials]);
          break;
        case 1:
          out = Buffer.concat([out.subarray(0, at), Buffer.from([pick([...specials])]), out.subarray(at)]);
          break;
        case 2:
          out = Buffer.concat([out.subarray(0, at), out.subarray(Math.min(out.length, at + Math.floor(rand() * 20)))]);
          break;
        default: {
          const len = Math.floor(rand() * 30);
          out = Buffer.concat([out.subarray(0, at), out.subarray(at, at + len), out.subarray(at)]);
        }
      }
    }
    inputs.push(out);
  }
  const head = BASE.slice(0, BASE.indexOf('Via:'));
  for (const filler of [';', ',', ' ', '\r\n ', 'a', '"', '<', 'l:', '\\']) {
    inputs.push(Buffer.from(`${head}Via: SIP/2.0/UDP h${filler.repeat(20_000)}\r\n\r\n`, 'latin1'));
    inputs.push(Buffer.from(`${head}${`X: ${filler}\r\n`.repeat(5_000)}\r\n`, 'latin1'));
  }
  inputs.push(Buffer.from(`${head}${'Via: SIP/2.0/UDP h;branch=z9hG4bKx\r\n'.repeat(200)}\r\n`));

  let accepted = 0;
  let slowest = 0;
  for (const input of inputs) {
    for (const transport of ['udp', 'tcp'] as const) {
      const t0 = performance.now();
      const r = parseSipMessage(input, { transport, maxMessageBytes: 65_535 });
      slowest = Math.max(slowest, performance.now() - t0);
      if (r.ok) {
        accepted++;
        // Whatever parses must survive the rewriting helpers too.
        const m = r.message;
        applyEdits(m, [annotateTopVia(m, '192.0.2.99', 1234) ?? { start: 0, end: 0, text: '' }, removeTopVia(m)]);
        responseTarget(m.vias[0]!);
        buildSipResponse(m, 503, 'Service Unavailable', { srcHost: '192.0.2.99', srcPort: 1234, toTag: 't' });
      } else {
        assert.ok(r.reason === 'malformed' || r.reason === 'too-large');
      }
    }
    const framer = new SipStreamFramer(4096);
    for (let i = 0; i < input.length; i += 97) {
      framer.push(input.subarray(i, i + 97));
      for (let f = framer.next(), guard = 0; f && guard < 10_000; f = framer.next(), guard++) {
        if (f.type === 'error') break;
      }
    }
  }
  assert.ok(accepted > 100, `some mutations still parse (${accepted})`);
  assert.ok(slowest < CATASTROPHIC_MS, `slowest parse ${slowest.toFixed(1)} ms`);
});

test('sip: and sips: Request-URIs of the usual shapes are accepted (RFC 3261 §25.1)', () => {
  for (const uri of [
    'sip:bob@192.0.2.4',
    'sip:192.0.2.4:5060',
    'sips:alice:secret@example.com;transport=tcp',
    'sip:+1-212-555-1212:1234@gateway.com;user=phone',
    'sip:service@[2001:db8::1]:5070;lr?subject=x%40y',
    'sip:%61lice@atlanta.com;maddr=239.255.255.1;ttl=15',
    'SIP:Bob@Example.COM.',
    'tel:+358-555-1234567',
  ]) {
    const r = parseSipMessage(Buffer.from(BASE.replace('sip:bob@192.0.2.4 SIP', `${uri} SIP`)), { transport: 'udp' });
    assert.ok(r.ok, `${uri}: ${r.ok ? '' : r.detail}`);
  }
});
