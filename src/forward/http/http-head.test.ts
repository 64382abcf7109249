import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HttpRequestError } from '../../core/errors.js';
import {
  errorResponse,
  hasBadValueChar,
  isAuthority,
  isTarget,
  isToken,
  forwardedFor,
  parseRequestHead,
  parseResponseHead,
  writeRequestHead,
  writeResponseHead,
} from './http-head.js';

const head = (...lines: string[]) => lines.join('\r\n');

test('a request head is parsed: method, target, version, framing, keep-alive', () => {
  const r = parseRequestHead(head('POST /a?b=1 HTTP/1.1', 'Host: x', 'Content-Length: 12', 'X-Id:  7 '));
  assert.equal(r.method, 'POST');
  assert.equal(r.target, '/a?b=1');
  assert.equal(r.minor, 1);
  assert.equal(r.contentLength, 12);
  assert.equal(r.chunked, false);
  assert.equal(r.keepAlive, true);
  assert.deepEqual(
    r.fields.map((f) => [f.name, f.value]),
    [
      ['host', 'x'],
      ['content-length', '12'],
      ['x-id', '7'],
    ],
  );
});

test('keep-alive follows the version and the Connection tokens', () => {
  assert.equal(parseRequestHead(head('GET / HTTP/1.1', 'Host: x', 'Connection: close')).keepAlive, false);
  assert.equal(parseRequestHead(head('GET / HTTP/1.0')).keepAlive, false);
  assert.equal(parseRequestHead(head('GET / HTTP/1.0', 'Connection: Keep-Alive')).keepAlive, true);
});

function refusal(text: string): [number, string] {
  try {
    parseRequestHead(text);
  } catch (err) {
    assert.ok(err instanceof HttpRequestError);
    return [err.status, err.message];
  }
  assert.fail('accepted');
}

for (const [why, text, expected] of [
  ['CL with TE', head('POST / HTTP/1.1', 'Host: x', 'Content-Length: 3', 'Transfer-Encoding: chunked'), [400, 'Content-Length with Transfer-Encoding']],
  ['duplicate CL, same value', head('POST / HTTP/1.1', 'Host: x', 'Content-Length: 3', 'Content-Length: 3'), [400, 'more than one Content-Length']],
  ['CL list', head('POST / HTTP/1.1', 'Host: x', 'Content-Length: 3, 3'), [400, 'invalid Content-Length']],
  ['signed CL', head('POST / HTTP/1.1', 'Host: x', 'Content-Length: +3'), [400, 'invalid Content-Length']],
  ['CL over 2^53', head('POST / HTTP/1.1', 'Host: x', 'Content-Length: 9007199254740993'), [400, 'Content-Length too large']],
  ['TE gzip', head('POST / HTTP/1.1', 'Host: x', 'Transfer-Encoding: gzip'), [400, 'unsupported Transfer-Encoding']],
  ['TE chunked twice', head('POST / HTTP/1.1', 'Host: x', 'Transfer-Encoding: chunked', 'Transfer-Encoding: chunked'), [400, 'unsupported Transfer-Encoding']],
  ['obs-fold', head('GET / HTTP/1.1', 'Host: x', 'X-A: 1', ' 2'), [400, 'obsolete line folding']],
  ['space before colon', head('GET / HTTP/1.1', 'Host : x'), [400, 'whitespace before ":" in header']],
  ['no colon', head('GET / HTTP/1.1', 'Host x'), [400, 'header line without ":"']],
  ['bare LF in a field', 'GET / HTTP/1.1\r\nHost: x\nX: y', [400, 'control character in header value']],
  ['bare CR in request line', 'GET /\r HTTP/1.1\r\nHost: x', [400, 'bare CR or LF in request line']],
  ['control char in value', head('GET / HTTP/1.1', 'Host: x', 'X: a\x01b'), [400, 'control character in header value']],
  ['missing Host', head('GET / HTTP/1.1'), [400, 'missing Host']],
  ['two Hosts', head('GET / HTTP/1.1', 'Host: a', 'Host: b'), [400, 'more than one Host']],
  ['HTTP/2.0', head('GET / HTTP/2.0', 'Host: x'), [505, 'unsupported version HTTP/2.0']],
  ['junk version', head('GET / HTTX/1.1', 'Host: x'), [400, 'malformed request line']],
  ['extra space', head('GET  / HTTP/1.1', 'Host: x'), [400, 'malformed request line']],
  ['TE on HTTP/1.0', head('POST / HTTP/1.0', 'Transfer-Encoding: chunked'), [400, 'Transfer-Encoding in an HTTP/1.0 request']],
  ['userinfo in Host', head('GET / HTTP/1.1', 'Host: x@evil.example'), [400, 'invalid Host']],
  ['space in Host', head('GET / HTTP/1.1', 'Host: a b'), [400, 'invalid Host']],
  ['port too long in Host', head('GET / HTTP/1.1', 'Host: a:123456'), [400, 'invalid Host']],
  ['userinfo in absolute-form', head('GET http://u@a/ HTTP/1.1', 'Host: a'), [400, 'invalid authority in request target']],
  ['empty absolute authority', head('GET http:///x HTTP/1.1', 'Host: a'), [400, 'invalid authority in request target']],
  ['other scheme', head('GET ftp://a/ HTTP/1.1', 'Host: a'), [400, 'unsupported scheme ftp in request target']],
  ['101 fields', head('GET / HTTP/1.1', 'Host: x', ...Array.from({ length: 100 }, (_, i) => `X-${i}: ${i}`)), [431, 'more than 100 header fields']],
] as const) {
  test(`refuses a request with ${why}`, () => {
    assert.deepEqual(refusal(text), expected);
  });
}

test('the forwarded request drops hop-by-hop fields and adds the client', () => {
  const r = parseRequestHead(
    head('GET / HTTP/1.1', 'Host: x', 'Connection: keep-alive, X-Secret', 'Keep-Alive: 5', 'X-Secret: s', 'TE: trailers', 'X-Forwarded-For: 10.0.0.1', 'Forwarded: for=10.0.0.1', 'Accept: */*'),
  );
  assert.equal(
    writeRequestHead(r, forwardedFor('::ffff:127.0.0.1')),
    head(
      'GET / HTTP/1.1',
      'Host: x',
      'Accept: */*',
      'X-Forwarded-For: 10.0.0.1, 127.0.0.1',
      'X-Forwarded-Proto: http',
      'Forwarded: for=10.0.0.1, for=127.0.0.1;proto=http',
      '',
      '',
    ),
  );
});

test('Connection cannot remove the fields that frame the request or name its target (issue 21)', () => {
  // The reported smuggling: Content-Length framed the body, then Connection nomination removed it.
  const cl = parseRequestHead(head('POST / HTTP/1.1', 'Host: x', 'Connection: Content-Length', 'Content-Length: 36'));
  assert.equal(cl.contentLength, 36);
  assert.equal(writeRequestHead(cl, null), head('POST / HTTP/1.1', 'Host: x', 'Content-Length: 36', '', ''));
  const ka = parseRequestHead(head('GET / HTTP/1.1', 'Host: x', 'Connection: keep-alive, Content-Length, Host', 'Content-Length: 5'));
  assert.equal(writeRequestHead(ka, null), head('GET / HTTP/1.1', 'Host: x', 'Content-Length: 5', '', ''));
  const te = parseRequestHead(head('POST / HTTP/1.1', 'Host: x', 'Connection: Transfer-Encoding', 'Transfer-Encoding:  Chunked'));
  assert.equal(te.chunked, true);
  assert.equal(writeRequestHead(te, null), head('POST / HTTP/1.1', 'Host: x', 'Transfer-Encoding: chunked', '', ''));
});

test('the forwarded framing is our parse, normalised: leading zeros and odd spacing do not pass through', () => {
  const r = parseRequestHead(head('POST / HTTP/1.1', 'Host: x', 'content-length:   007'));
  assert.equal(writeRequestHead(r, null), head('POST / HTTP/1.1', 'Host: x', 'Content-Length: 7', '', ''));
});

test('an absolute-form target: its authority replaces Host (RFC 9112 §3.2.2)', () => {
  const r = parseRequestHead(head('GET http://real.example:8080/p?q HTTP/1.1', 'Host: other.example', 'Accept: */*'));
  assert.equal(r.authority, 'real.example:8080');
  assert.equal(writeRequestHead(r, null), head('GET http://real.example:8080/p?q HTTP/1.1', 'Host: real.example:8080', 'Accept: */*', '', ''));
  assert.equal(parseRequestHead(head('GET HTTPS://[::1]:443 HTTP/1.1', 'Host: x')).authority, '[::1]:443');
  assert.equal(parseRequestHead(head('GET / HTTP/1.1', 'Host: [::1]:80')).authority, null);
  assert.equal(parseRequestHead(head('GET / HTTP/1.1', 'Host: ')).fields[0]!.value, '', 'an empty Host is valid');
});

test('the header count bound is configurable', () => {
  const fields = Array.from({ length: 20 }, (_, i) => `X-${i}: ${i}`);
  assert.equal(parseRequestHead(head('GET / HTTP/1.1', 'Host: x', ...fields), 21).fields.length, 21);
  assert.throws(() => parseRequestHead(head('GET / HTTP/1.1', 'Host: x', ...fields), 20), (e: unknown) => e instanceof HttpRequestError && e.status === 431);
});

test('a reply naming its framing fields in Connection keeps them (issue 21)', () => {
  const cl = parseResponseHead(head('HTTP/1.1 200 OK', 'Connection: Content-Length', 'Content-Length: 3'), 'GET');
  assert.equal(cl.needsRewrite, true, 'the Connection field itself is hop-by-hop');
  assert.equal(writeResponseHead(cl, 1, false), head('HTTP/1.1 200 OK', 'Content-Length: 3', '', ''));
  const te = parseResponseHead(head('HTTP/1.1 200 OK', 'Connection: Transfer-Encoding, X-Hop', 'Transfer-Encoding: chunked', 'X-Hop: 1'), 'GET');
  assert.equal(writeResponseHead(te, 1, false), head('HTTP/1.1 200 OK', 'Transfer-Encoding: chunked', '', ''));
});

test('an IPv6 client is quoted in Forwarded; an HTTP/1.0 request asks the backend for keep-alive', () => {
  const r = parseRequestHead(head('GET / HTTP/1.0', 'X-Forwarded-Proto: https'));
  assert.equal(
    writeRequestHead(r, forwardedFor('::1')),
    head('GET / HTTP/1.0', 'X-Forwarded-Proto: https', 'X-Forwarded-For: ::1', 'Forwarded: for="[::1]";proto=http', 'Connection: keep-alive', '', ''),
  );
});

test('an upgrade request keeps Upgrade and Connection: Upgrade', () => {
  const r = parseRequestHead(head('GET /ws HTTP/1.1', 'Host: x', 'Connection: Upgrade', 'Upgrade: websocket'));
  assert.equal(r.upgrade, true);
  assert.equal(writeRequestHead(r, null), head('GET /ws HTTP/1.1', 'Host: x', 'Upgrade: websocket', 'Connection: Upgrade', '', ''));
});

test('response framing: length, chunked, close-delimited, and no body for HEAD, 204 and 304', () => {
  assert.equal(parseResponseHead(head('HTTP/1.1 200 OK', 'Content-Length: 5'), 'GET').contentLength, 5);
  assert.equal(parseResponseHead(head('HTTP/1.1 200 OK', 'Transfer-Encoding: gzip, chunked'), 'GET').chunked, true);
  const close = parseResponseHead(head('HTTP/1.1 200 OK'), 'GET');
  assert.equal(close.closeDelimited, true);
  assert.equal(close.closes, true);
  for (const [status, method] of [['200', 'HEAD'], ['204', 'GET'], ['304', 'GET']] as const) {
    const r = parseResponseHead(head(`HTTP/1.1 ${status} X`, 'Transfer-Encoding: chunked', 'Content-Length: 9'.replace('Content', 'X-Content')), method);
    assert.equal(r.chunked, false, status);
    assert.equal(r.closeDelimited, false, status);
    assert.equal(r.contentLength, 0, status);
  }
  assert.throws(() => parseResponseHead(head('HTTP/1.1 200 OK', 'Content-Length: 1', 'Transfer-Encoding: chunked'), 'GET'), /Content-Length with Transfer-Encoding/);
  assert.throws(() => parseResponseHead('HTTP/1.1 2000 OK', 'GET'), /malformed status line/);
});

test('a response passes unchanged unless it carries hop-by-hop fields or is HTTP/1.0', () => {
  assert.equal(parseResponseHead(head('HTTP/1.1 200 OK', 'Content-Length: 0'), 'GET').needsRewrite, false);
  const r = parseResponseHead(head('HTTP/1.0 200 OK', 'Content-Length: 0', 'Connection: keep-alive, X-Hop', 'X-Hop: 1', 'Keep-Alive: timeout=5'), 'GET');
  assert.equal(r.needsRewrite, true);
  assert.equal(r.closes, false);
  assert.equal(writeResponseHead(r, 1, false), head('HTTP/1.1 200 OK', 'Content-Length: 0', '', ''));
  assert.equal(writeResponseHead(r, 0, false), head('HTTP/1.1 200 OK', 'Content-Length: 0', 'Connection: keep-alive', '', ''));
  assert.equal(writeResponseHead(r, 1, true), head('HTTP/1.1 200 OK', 'Content-Length: 0', 'Connection: close', '', ''));
});

test('our own error responses are complete and close the connection', () => {
  const text = errorResponse(503, 'no backend available', 'Retry-After: 1\r\n');
  const [h, body] = text.split('\r\n\r\n') as [string, string];
  assert.match(h, /^HTTP\/1\.1 503 Service Unavailable\r\n/);
  assert.match(h, /\r\nConnection: close\r\n/);
  assert.match(h, /\r\nRetry-After: 1$/);
  assert.equal(Number(/Content-Length: (\d+)/.exec(h)![1]), Buffer.byteLength(body));
});

test('over TLS: proto=https in both fields (a client X-Forwarded-Proto is not passed on); the owned subject field replaces the client own', () => {
  const r = parseRequestHead(head('GET / HTTP/1.1', 'Host: x', 'X-Forwarded-Proto: http', 'X-Client-Subject: CN=forged'));
  assert.equal(
    writeRequestHead(r, forwardedFor('10.0.0.9', 'https'), { name: 'X-Client-Subject', value: 'CN=alice\r\nX: y' }),
    head('GET / HTTP/1.1', 'Host: x', 'X-Forwarded-For: 10.0.0.9', 'X-Forwarded-Proto: https', 'Forwarded: for=10.0.0.9;proto=https', 'X-Client-Subject: CN=alice??X: y', '', ''),
  );
  assert.equal(writeRequestHead(r, null, { name: 'X-Client-Subject', value: null }), head('GET / HTTP/1.1', 'Host: x', 'X-Forwarded-Proto: http', '', ''));
});

// ---- the loops that replaced regular expressions (issue 16) agree with the grammar as regexes ----

const TOKEN_RE = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const BAD_VALUE_CHAR_RE = /[\x00-\x08\x0a-\x1f\x7f]/;
const TARGET_RE = /^[\x21\x22\x24-\x7e\x80-\xff]+$/;
const AUTHORITY_RE = /^(?:\[[0-9A-Fa-f:.]+\]|(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})*)(?::[0-9]{0,5})?$/;
const STATUS_RE = /^HTTP\/1\.([01]) ([0-9]{3})(?: ([^\r\n]*))?$/;

/** Deterministic strings over `alphabet` (xorshift), lengths 0..12. */
function* samples(alphabet: string, count: number): Generator<string> {
  let x = 0x9e3779b9;
  const next = (): number => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return x >>> 0;
  };
  for (let i = 0; i < count; i++) {
    let s = '';
    const n = next() % 13;
    for (let j = 0; j < n; j++) s += alphabet[next() % alphabet.length];
    yield s;
  }
}

test('isToken, isTarget, hasBadValueChar: the same answer as the grammar for every latin1 byte, alone and in strings', () => {
  for (let c = 0; c < 256; c++) {
    for (const s of [String.fromCharCode(c), `a${String.fromCharCode(c)}b`, `${String.fromCharCode(c)}${String.fromCharCode(c)}`]) {
      assert.equal(isToken(s), TOKEN_RE.test(s), `token ${c}`);
      assert.equal(isTarget(s), TARGET_RE.test(s), `target ${c}`);
      assert.equal(hasBadValueChar(s), BAD_VALUE_CHAR_RE.test(s), `value ${c}`);
    }
  }
  assert.equal(isToken(''), false);
  assert.equal(isTarget(''), false);
});

test('isAuthority: the same answer as the authority grammar', () => {
  const fixed = ['', 'example.com', 'example.com:', 'example.com:8080', 'example.com:123456', 'a:b', '[::1]:80', '[::1', 'x@evil', 'a%41b', 'a%4', 'h:1:2', ' a', 'a b', 'é.example', ':80'];
  for (const s of [...fixed, ...samples("aZ09-._~!$&'()*+,;=:%[]@ /é4F", 20_000)]) {
    assert.equal(isAuthority(s), AUTHORITY_RE.test(s), JSON.stringify(s));
  }
});

test('status lines: parseResponseHead accepts exactly what the status-line grammar does', () => {
  const prefixes = ['HTTP/1.1 200', 'HTTP/1.0 404', 'HTTP/1.1 20', 'HTTP/1.2 200', 'HTTP/2.0 200', 'HTTP/1.1 2x0', 'http/1.1 200', 'HTTP/1.1  200'];
  const tails = ['', ' OK', ' ', 'X', ' OK\r', ' O\nK', '0', ' Not Found', '\t'];
  for (const p of prefixes) {
    for (const tail of tails) {
      const line = p + tail;
      const m = STATUS_RE.exec(line);
      let got: { status: number; minor: number } | null = null;
      try {
        const r = parseResponseHead(`${line}\r\nContent-Length: 0`, 'GET');
        got = { status: r.status, minor: r.minor };
      } catch {
        got = null;
      }
      assert.deepEqual(got, m ? { status: Number(m[2]), minor: Number(m[1]) } : null, JSON.stringify(line));
    }
  }
});
