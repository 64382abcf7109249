/**
 * @module The header-section parsing that SIP (RFC 3261 §7.3) and RTSP (RFC 2326 §4, borrowing
 * RFC 2616 §4.2) share: header lines with LWS folding read into byte-offset records, quote-aware comma
 * lists and `;` parameters, and splicing edits into a message's raw bytes. The protocol inspectors
 * (`sip-message.ts`, `rtsp-message.ts`) add their start lines, token sets, name forms and the headers
 * routing depends on.
 *
 * Text is a head decoded as latin1 (one char per byte), so string indices are byte offsets.
 */
import { findHeadEnd } from './text-stream-framer.js';

/** Thrown by `fail` inside a parser and turned by its entry point into a 'malformed' result. */
export class Malformed {
  constructor(readonly detail: string) {}
}

export function fail(detail: string): never {
  throw new Malformed(detail);
}

/**
 * Runs `parse`, turning what it throws into a 'malformed' result: a parser entry point never throws.
 */
export function parseOrMalformed<M>(parse: () => M): { ok: true; message: M } | { ok: false; reason: 'malformed'; detail: string } {
  try {
    return { ok: true, message: parse() };
  } catch (err) {
    if (err instanceof Malformed) return { ok: false, reason: 'malformed', detail: err.detail };
    return { ok: false, reason: 'malformed', detail: `parser error: ${String(err)}` };
  }
}

/** A message's head as `readHead` finds it. */
export interface MessageHead {
  /** Offset of the start line's first byte (CRs and LFs before it are skipped, RFC 3261 §7.5). */
  readonly first: number;
  /** The start line, without its line end. */
  readonly startLine: string;
  /** raw[0, the LF ending the last header line] as latin1. */
  readonly text: string;
  /** Offset in `text` of the first header line. */
  readonly headersFrom: number;
  /** Offset of the body (just past the blank line). */
  readonly body: number;
}

/** Finds the start line and the header section of `raw`; fails on an empty message or no blank line. */
export function readHead(raw: Buffer): MessageHead {
  let first = 0;
  while (first < raw.length && (raw[first] === 13 || raw[first] === 10)) first++;
  if (first === raw.length) fail('empty message');
  const head = findHeadEnd(raw, first);
  if (!head) fail('no blank line after the headers');
  const text = raw.toString('latin1', 0, head.lineEnd + 1);
  const eol = text.indexOf('\n', first);
  const startLine = text.slice(first, eol > first && text.charCodeAt(eol - 1) === 13 ? eol - 1 : eol);
  return { first, startLine, text, headersFrom: eol + 1, body: head.body };
}

export function isWs(c: number): boolean {
  return c === 32 || c === 9 || c === 13 || c === 10;
}

/** A folded value with each fold (line end + LWS) replaced by one SP (RFC 3261 §7.3.1). */
export function unfold(text: string): string {
  return text.includes('\n') ? text.replace(/\r?\n[ \t]+/g, ' ') : text;
}

/** One value per name: a repeat must be identical (single-valued headers). */
export function single(current: string | null, value: string, name: string): string {
  if (current !== null && current !== value) fail(`${name} repeated with different values`);
  return value;
}

/** One header line as it is in the raw bytes (a folded header counts as one). */
export interface HeaderLine {
  /** Lower-case name, as the protocol's `canonicalName` gives it. */
  readonly name: string;
  /** Byte offset of the line's first byte. */
  readonly start: number;
  /** Byte offset just past the line end of its last (folded) line. */
  readonly end: number;
  /** The value's bytes, leading and trailing whitespace excluded (folds inside included). */
  readonly valueStart: number;
  readonly valueEnd: number;
  /** The value, unfolded (each fold becomes one SP). */
  readonly value: string;
}

export interface HeaderLinesOptions {
  /** What a header name must match. */
  readonly token: RegExp;
  /** The stored name of a name as written. */
  readonly canonicalName: (name: string) => string;
  /** More header lines than this is malformed (bounds the work per message). */
  readonly maxLines: number;
  /** Called with each header once its last folded line is read, after it is stored at `index`. */
  readonly onHeader: (header: HeaderLine, index: number) => void;
}

/**
 * Reads the header lines of `text` from `pos` (the first byte after the start line) to its end (the
 * head's last LF), continuation lines (starting with SP or HTAB) joined to the header before them.
 * Fails (throws Malformed) on a folded line before any header, a line without a colon, a name that is
 * not a token, and more than `maxLines` headers. Bare LF line ends are accepted.
 */
export function parseHeaderLines(text: string, pos: number, options: HeaderLinesOptions): HeaderLine[] {
  const headers: HeaderLine[] = [];
  let open: { name: string; start: number; colon: number; valueEnd: number; end: number } | null = null;
  const closeHeader = () => {
    if (!open) return;
    let vs = open.colon + 1;
    let ve = open.valueEnd;
    while (vs < ve && isWs(text.charCodeAt(vs))) vs++;
    while (ve > vs && isWs(text.charCodeAt(ve - 1))) ve--;
    const index = headers.length;
    if (index >= options.maxLines) fail('too many header lines');
    const header = { name: open.name, start: open.start, end: open.end, valueStart: vs, valueEnd: ve, value: unfold(text.slice(vs, ve)) };
    headers.push(header);
    open = null;
    options.onHeader(header, index);
  };
  while (pos < text.length) {
    let eol = text.indexOf('\n', pos);
    if (eol === -1) eol = text.length - 1; // the head text ends with the last line's LF
    const lineEnd = eol > pos && text.charCodeAt(eol - 1) === 13 ? eol - 1 : eol;
    const c = text.charCodeAt(pos);
    if (c === 32 || c === 9) {
      if (!open) fail('folded line before any header');
      open.valueEnd = lineEnd;
      open.end = eol + 1;
    } else {
      closeHeader();
      const colon = text.indexOf(':', pos);
      if (colon === -1 || colon >= lineEnd) fail('header line without a colon');
      let nameEnd = colon;
      while (nameEnd > pos && (text.charCodeAt(nameEnd - 1) === 32 || text.charCodeAt(nameEnd - 1) === 9)) nameEnd--;
      const name = text.slice(pos, nameEnd);
      if (!options.token.test(name)) fail('bad header name');
      open = { name: options.canonicalName(name), start: pos, colon, valueEnd: lineEnd, end: eol + 1 };
    }
    pos = eol + 1;
  }
  closeHeader();
  return headers;
}

/**
 * Splits `s` between `from` and `to` at commas that are outside quoted strings and angle brackets
 * (RFC 3261 §7.3.1), returning each element's [start, end) trimmed of LWS. Empty elements are kept
 * (as empty spans) so that callers can reject them.
 */
export function splitCommaList(s: string, from: number, to: number): [number, number][] {
  const out: [number, number][] = [];
  let quoted = false;
  let angle = false;
  let start = from;
  const push = (end: number) => {
    let a = start;
    let b = end;
    while (a < b && isWs(s.charCodeAt(a))) a++;
    while (b > a && isWs(s.charCodeAt(b - 1))) b--;
    out.push([a, b]);
  };
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i);
    if (quoted) {
      if (c === 92) i++; // backslash: quoted-pair
      else if (c === 34) quoted = false;
    } else if (c === 34) quoted = true;
    else if (c === 60) angle = true;
    else if (c === 62) angle = false;
    else if (c === 44 && !angle) {
      push(i);
      start = i + 1;
    }
  }
  push(to);
  return out;
}

/** Splits header parameters `;a=b;c` (text after the value proper), quote-aware. */
export function parseParams(text: string): [string, string | null][] {
  const out: [string, string | null][] = [];
  let quoted = false;
  let start = 0;
  const push = (end: number) => {
    const part = text.slice(start, end).trim();
    if (part === '') return;
    const eq = part.indexOf('=');
    if (eq === -1) out.push([part, null]);
    else out.push([part.slice(0, eq).trim(), part.slice(eq + 1).trim()]);
  };
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (quoted) {
      if (c === 92) i++;
      else if (c === 34) quoted = false;
    } else if (c === 34) quoted = true;
    else if (c === 59) {
      push(i);
      start = i + 1;
    }
  }
  push(text.length);
  return out;
}

/** A replacement of raw[start, end) by `text` (latin1); start === end inserts. */
export interface TextEdit {
  readonly start: number;
  readonly end: number;
  readonly text: string;
}

/**
 * raw[0, length) with `edits` applied, always a new buffer. Edits must not overlap (an overlapping one
 * is skipped); they are applied in offset order, inserts at the same offset in the order given.
 */
export function spliceEdits(raw: Buffer, length: number, edits: readonly TextEdit[]): Buffer {
  const sorted = edits.length > 1 ? [...edits].sort((a, b) => a.start - b.start || a.end - b.end) : edits;
  const parts: Buffer[] = [];
  let at = 0;
  for (const e of sorted) {
    if (e.start < at) continue; // overlapping: callers never produce these
    if (e.start > at) parts.push(raw.subarray(at, e.start));
    if (e.text !== '') parts.push(Buffer.from(e.text, 'latin1'));
    at = e.end;
  }
  if (at < length) parts.push(raw.subarray(at, length));
  return Buffer.concat(parts);
}
