import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseRequestHead, parseResponseHead } from './http-head.js';
import {
  cookieInValue,
  MAX_SESSION_KEY_BYTES,
  parseCookieDate,
  parseSetCookie,
  requestCookie,
  requestHeader,
  responseSetCookie,
  sessionKeyOf,
} from './http-session-key.js';

const request = (...fields: string[]) => parseRequestHead(['GET / HTTP/1.1', 'Host: x', ...fields].join('\r\n')).fields;
const response = (...fields: string[]) => parseResponseHead(['HTTP/1.1 200 OK', 'Content-Length: 0', ...fields].join('\r\n'), 'GET').fields;

test('a cookie is found only where a pair starts, first one wins, OWS trimmed (RFC 6265 §4.2.1, §5.4)', () => {
  assert.equal(cookieInValue('a=1; JSESSIONID=abc; b=2', 'JSESSIONID'), 'abc');
  assert.equal(cookieInValue('JSESSIONID=abc', 'JSESSIONID'), 'abc');
  // A longer name that ends with it, and the name inside another cookie's value, are not it.
  assert.equal(cookieInValue('xJSESSIONID=1; JSESSIONID=2', 'JSESSIONID'), '2');
  assert.equal(cookieInValue('a=JSESSIONID=3', 'JSESSIONID'), null);
  assert.equal(cookieInValue('JSESSIONIDX=4', 'JSESSIONID'), null);
  // The most specific path comes first (§5.4 step 2): the first pair.
  assert.equal(cookieInValue('JSESSIONID=first;JSESSIONID=second', 'JSESSIONID'), 'first');
  assert.equal(cookieInValue('a=1 ;  JSESSIONID =  v w  ; b', 'JSESSIONID'), 'v w');
  assert.equal(cookieInValue('JSESSIONID=a=b', 'JSESSIONID'), 'a=b');
  assert.equal(cookieInValue('JSESSIONID="q"', 'JSESSIONID'), '"q"');
  assert.equal(cookieInValue('JSESSIONID=', 'JSESSIONID'), '');
  assert.equal(cookieInValue('JSESSIONID', 'JSESSIONID'), null);
  assert.equal(cookieInValue('JSESSIONID;JSESSIONID=5', 'JSESSIONID'), '5');
  // Names are case-sensitive.
  assert.equal(cookieInValue('jsessionid=6', 'JSESSIONID'), null);
});

test('the request key: every Cookie line searched in order; empty or longer than the bound names no session', () => {
  assert.equal(requestCookie(request('Cookie: a=1', 'Accept: */*', 'Cookie: sid=s2; b=3'), 'sid'), 's2');
  assert.equal(requestCookie(request('Cookie: sid=one', 'Cookie: sid=two'), 'sid'), 'one');
  assert.equal(requestCookie(request('Cookie: other=1'), 'sid'), null);
  assert.equal(requestCookie(request('X-Cookie: sid=1'), 'sid'), null);
  assert.equal(requestCookie(request('Cookie: sid='), 'sid'), null);
  assert.equal(requestCookie(request(`Cookie: sid=${'k'.repeat(256)}`), 'sid'), 'k'.repeat(256));
  assert.equal(MAX_SESSION_KEY_BYTES, 256);
  assert.equal(requestCookie(request(`Cookie: sid=${'k'.repeat(257)}`), 'sid'), null);
  assert.equal(requestHeader(request('x-session-id:  abc  '), 'x-session-id'), 'abc');
  assert.equal(requestHeader(request('X-Session-Id: 1', 'X-Session-Id: 2'), 'x-session-id'), '1');
  assert.equal(requestHeader(request('X-Session-Id:'), 'x-session-id'), null);
  assert.equal(requestHeader(request(`X-Session-Id: ${'h'.repeat(257)}`), 'x-session-id'), null);
});

test('sessionKeyOf follows the config: cookie, header (any case), or nothing', () => {
  const fields = request('Cookie: JSESSIONID=c1', 'X-Session-Id: h1');
  assert.equal(sessionKeyOf({ cookie: 'JSESSIONID' })!(fields), 'c1');
  assert.equal(sessionKeyOf({ header: 'X-SESSION-ID' })!(fields), 'h1');
  assert.equal(sessionKeyOf({}), null);
});

test('Set-Cookie: the pair before the first ";"; Max-Age ≤ 0 or a past Expires expire it; Max-Age wins (§5.2, §5.3)', () => {
  const now = (): number => Date.UTC(2030, 0, 1);
  assert.deepEqual(parseSetCookie('sid=abc; Path=/; HttpOnly', 'sid', now), { value: 'abc', expired: false });
  assert.deepEqual(parseSetCookie('  sid = abc ;Path=/', 'sid', now), { value: 'abc', expired: false });
  assert.equal(parseSetCookie('sidx=1', 'sid', now), null);
  assert.equal(parseSetCookie('other=sid=1', 'sid', now), null);
  assert.equal(parseSetCookie('sid', 'sid', now), null);
  assert.deepEqual(parseSetCookie('sid=; Max-Age=0', 'sid', now), { value: '', expired: true });
  assert.deepEqual(parseSetCookie('sid=x; max-age=-5', 'sid', now), { value: 'x', expired: true });
  assert.deepEqual(parseSetCookie('sid=x; Max-Age=60', 'sid', now), { value: 'x', expired: false });
  // An invalid Max-Age is ignored (§5.2.2), so Expires decides.
  assert.deepEqual(parseSetCookie('sid=x; Max-Age=soon; Expires=Thu, 01 Jan 1970 00:00:00 GMT', 'sid', now), { value: 'x', expired: true });
  assert.deepEqual(parseSetCookie('sid=x; Max-Age=60; Expires=Thu, 01 Jan 1970 00:00:00 GMT', 'sid', now), { value: 'x', expired: false });
  assert.deepEqual(parseSetCookie('sid=x; Max-Age=0; Max-Age=60', 'sid', now), { value: 'x', expired: false });
  assert.deepEqual(parseSetCookie('sid=x; Expires=Wed, 02 Jan 2030 00:00:00 GMT', 'sid', now), { value: 'x', expired: false });
  assert.deepEqual(parseSetCookie('sid=x; Expires=Mon, 31 Dec 2029 23:59:59 GMT', 'sid', now), { value: 'x', expired: true });
  assert.deepEqual(parseSetCookie('sid=x; Expires=never', 'sid', now), { value: 'x', expired: false });
});

test('the last Set-Cookie for the name counts; others are skipped', () => {
  const now = (): number => Date.UTC(2030, 0, 1);
  assert.deepEqual(responseSetCookie(response('Set-Cookie: a=1', 'Set-Cookie: sid=v1', 'Set-Cookie: sid=v2; Path=/', 'Set-Cookie: b=2'), 'sid', now), {
    value: 'v2',
    expired: false,
  });
  assert.equal(responseSetCookie(response('Set-Cookie: a=1', 'X-Sid: sid=1'), 'sid', now), null);
});

test('cookie dates per RFC 6265 §5.1.1: the usual formats, all UTC, invalid dates refused', () => {
  assert.equal(parseCookieDate('Wed, 21 Oct 2015 07:28:00 GMT'), Date.UTC(2015, 9, 21, 7, 28, 0));
  // RFC 850 style with a 2-digit year (70-99 → 19xx, 0-69 → 20xx).
  assert.equal(parseCookieDate('Thursday, 01-Jan-70 00:00:01 GMT'), 1000);
  assert.equal(parseCookieDate('Sat, 01-Jan-33 10:00:00 GMT'), Date.UTC(2033, 0, 1, 10, 0, 0));
  // asctime: no zone, still UTC.
  assert.equal(parseCookieDate('Sun Nov  6 08:49:37 1994'), Date.UTC(1994, 10, 6, 8, 49, 37));
  assert.equal(parseCookieDate('31 Feb 2021 00:00:00'), null);
  assert.equal(parseCookieDate('1 Jan 1600 00:00:00'), null);
  assert.equal(parseCookieDate('1 Jan 2020 24:00:00'), null);
  assert.equal(parseCookieDate('1 Jan 2020'), null);
  assert.equal(parseCookieDate(''), null);
});
