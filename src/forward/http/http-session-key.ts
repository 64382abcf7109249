/**
 * @module HTTP virtual session keys (issue 5): the value that names a client's session — a cookie's
 * value in the request's Cookie field(s) (RFC 6265 §5.4), or a configured request header's value —
 * and what a reply's Set-Cookie (RFC 6265 §5.2) says about it: a new value to pin, or an expired
 * cookie that ends the session. Works on the fields the head parser already split (lower-cased
 * names, trimmed values). Per request: indexOf on the Cookie values and one slice (the session table
 * copies a key it keeps), no regex, no split; per reply: one comparison per field, attributes parsed only for the cookie's own
 * Set-Cookie.
 */
import type { Field } from './http-head.js';

/**
 * Longest key kept (the value's latin1 length, i.e. its bytes). A longer value names no session: the
 * request is balanced as if it had none (a key is held in the session table until it times out, so
 * a client must not be able to make the table hold arbitrary amounts of text).
 */
export const MAX_SESSION_KEY_BYTES = 256;

/** Extracts the session key from a request's fields, or null when it names no session. */
export type SessionKeyOf = (fields: readonly Field[]) => string | null;


function isWsp(c: number): boolean {
  return c === 32 || c === 9;
}

/**
 * The value of cookie `name` in one Cookie field value ("a=1; b=2", RFC 6265 §4.2.1; servers are
 * lenient about the space after ";", so any OWS is accepted around names, "=" and values). The first
 * pair with that name wins: a user agent sends the cookie with the most specific path first (§5.4
 * step 2). Returns '' for a present but empty value, null when absent.
 */
export function cookieInValue(value: string, name: string): string | null {
  for (let at = value.indexOf(name); at >= 0; at = value.indexOf(name, at + 1)) {
    // The name must start a pair: only OWS between it and the previous ";" (or the start).
    let p = at - 1;
    while (p >= 0 && isWsp(value.charCodeAt(p))) p--;
    if (p >= 0 && value.charCodeAt(p) !== 59 /* ; */) continue;
    let q = at + name.length;
    while (q < value.length && isWsp(value.charCodeAt(q))) q++;
    if (q >= value.length || value.charCodeAt(q) !== 61 /* = */) continue;
    let start = q + 1;
    let end = value.indexOf(';', start);
    if (end < 0) end = value.length;
    while (start < end && isWsp(value.charCodeAt(start))) start++;
    while (end > start && isWsp(value.charCodeAt(end - 1))) end--;
    return value.slice(start, end);
  }
  return null;
}

/**
 * The session named by cookie `name` in the request's Cookie fields (HTTP/1.1 clients may send
 * several Cookie lines; they are searched in order). null: absent, empty, or
 * longer than MAX_SESSION_KEY_BYTES.
 */
export function requestCookie(fields: readonly Field[], name: string): string | null {
  for (let i = 0; i < fields.length; i++) {
    const f = fields[i]!;
    if (f.name !== 'cookie') continue;
    const v = cookieInValue(f.value, name);
    if (v !== null) return v.length > 0 && v.length <= MAX_SESSION_KEY_BYTES ? v : null;
  }
  return null;
}

/**
 * The session named by the first field called `lowerName` (already lower-cased), its whole value.
 * null: absent, empty, or longer than MAX_SESSION_KEY_BYTES.
 */
export function requestHeader(fields: readonly Field[], lowerName: string): string | null {
  for (let i = 0; i < fields.length; i++) {
    const f = fields[i]!;
    if (f.name !== lowerName) continue;
    const v = f.value;
    return v.length > 0 && v.length <= MAX_SESSION_KEY_BYTES ? v : null;
  }
  return null;
}

/** The extractor for a service's `sessions` config, or null when it names neither cookie nor header. */
export function sessionKeyOf(config: { readonly cookie?: string | undefined; readonly header?: string | undefined }): SessionKeyOf | null {
  const cookie = config.cookie;
  if (cookie !== undefined) return (fields) => requestCookie(fields, cookie);
  const header = config.header?.toLowerCase();
  if (header !== undefined) return (fields) => requestHeader(fields, header);
  return null;
}

/** What a reply's Set-Cookie for the session cookie says. */
export interface SessionCookie {
  /** The cookie's value (may be '' or longer than MAX_SESSION_KEY_BYTES: the caller decides). */
  readonly value: string;
  /** Max-Age ≤ 0 or Expires in the past (RFC 6265 §5.2.1, §5.2.2, §5.3 step 3): the client drops it. */
  readonly expired: boolean;
}

/**
 * The last Set-Cookie for cookie `name` in a reply's fields (a later one replaces an earlier one in
 * the client's store, §5.3 step 11), or null when none sets it. `wallNow` gives the wall-clock ms an
 * Expires attribute is compared with (read only then: most replies carry none).
 */
export function responseSetCookie(fields: readonly Field[], name: string, wallNow: () => number): SessionCookie | null {
  let found: SessionCookie | null = null;
  for (let i = 0; i < fields.length; i++) {
    const f = fields[i]!;
    if (f.name !== 'set-cookie') continue;
    const c = parseSetCookie(f.value, name, wallNow);
    if (c !== null) found = c;
  }
  return found;
}

/**
 * One Set-Cookie value (RFC 6265 §5.2) if it sets cookie `name`, else null. The name-value pair is
 * what precedes the first ";", split at its first "=", both sides trimmed of WSP; a pair without "="
 * is ignored (§5.2 step 2). Of the attributes only Max-Age and Expires are read: the last valid
 * Max-Age wins over any Expires, otherwise the last valid Expires (§5.3 step 3).
 */
export function parseSetCookie(value: string, name: string, wallNow: () => number): SessionCookie | null {
  let p = 0;
  while (p < value.length && isWsp(value.charCodeAt(p))) p++;
  if (!value.startsWith(name, p)) return null;
  let q = p + name.length;
  while (q < value.length && isWsp(value.charCodeAt(q))) q++;
  if (q >= value.length || value.charCodeAt(q) !== 61 /* = */) return null;
  let pairEnd = value.indexOf(';', q + 1);
  if (pairEnd < 0) pairEnd = value.length;
  let vs = q + 1;
  let ve = pairEnd;
  while (vs < ve && isWsp(value.charCodeAt(vs))) vs++;
  while (ve > vs && isWsp(value.charCodeAt(ve - 1))) ve--;
  const cookieValue = value.slice(vs, ve);
  let maxAge: number | null = null;
  let expires: number | null = null;
  for (let a = pairEnd; a < value.length; ) {
    let e = value.indexOf(';', a + 1);
    if (e < 0) e = value.length;
    const attr = value.slice(a + 1, e);
    a = e;
    const eq = attr.indexOf('=');
    const an = (eq < 0 ? attr : attr.slice(0, eq)).trim().toLowerCase();
    if (an !== 'max-age' && an !== 'expires') continue;
    const av = eq < 0 ? '' : attr.slice(eq + 1).trim();
    if (an === 'max-age') {
      // §5.2.2: "-"? DIGIT+, anything else is ignored.
      if (/^-?[0-9]+$/.test(av)) maxAge = Number(av);
    } else {
      const t = parseCookieDate(av);
      if (t !== null) expires = t;
    }
  }
  const expired = maxAge !== null ? maxAge <= 0 : expires !== null && expires <= wallNow();
  return { value: cookieValue, expired };
}

const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];
/** §5.1.1 delimiter: %x09 / %x20-2F / %x3B-40 / %x5B-60 / %x7B-7E. */
const DELIMITERS = /[\x09\x20-\x2f\x3b-\x40\x5b-\x60\x7b-\x7e]+/;
const TIME = /^([0-9]{1,2}):([0-9]{1,2}):([0-9]{1,2})(?:[^0-9]|$)/;
const DAY = /^([0-9]{1,2})(?:[^0-9]|$)/;
const YEAR = /^([0-9]{2,4})(?:[^0-9]|$)/;

/**
 * RFC 6265 §5.1.1 cookie-date parsing (always UTC, whatever the text says about zones): the first
 * time, day-of-month, month and year tokens found, 2-digit years mapped to 1970-2069. Returns ms since
 * the epoch, or null when the date is invalid (the attribute is then ignored).
 */
export function parseCookieDate(text: string): number | null {
  let time: RegExpExecArray | null = null;
  let day: number | null = null;
  let month: number | null = null;
  let year: number | null = null;
  for (const token of text.split(DELIMITERS)) {
    if (token === '') continue;
    if (time === null) {
      const m = TIME.exec(token);
      if (m) {
        time = m;
        continue;
      }
    }
    if (day === null) {
      const m = DAY.exec(token);
      if (m) {
        day = Number(m[1]);
        continue;
      }
    }
    if (month === null) {
      const i = MONTHS.indexOf(token.slice(0, 3).toLowerCase());
      if (i >= 0) {
        month = i;
        continue;
      }
    }
    if (year === null) {
      const m = YEAR.exec(token);
      if (m) year = Number(m[1]);
    }
  }
  if (time === null || day === null || month === null || year === null) return null;
  if (year >= 70 && year <= 99) year += 1900;
  else if (year >= 0 && year <= 69) year += 2000;
  const h = Number(time[1]);
  const mi = Number(time[2]);
  const s = Number(time[3]);
  if (day < 1 || day > 31 || year < 1601 || h > 23 || mi > 59 || s > 59) return null;
  const t = Date.UTC(year, month, day, h, mi, s);
  // §5.1.1 step 6: a date that does not exist (31 Feb) fails.
  if (new Date(t).getUTCDate() !== day) return null;
  return t;
}
