/**
 * @module Differential HTTP/1.1 request framing (issue 18): the first request of a byte string as
 * holdfast frames it (the forwarder's own functions: emptyLinesBefore, requestHeadEnd for the head's
 * end, bare LF and the size bound; parseRequestHead; then the body by Content-Length or the chunked
 * scanner) against Node's llhttp in strict mode (node:http's parser). The properties:
 *
 * - holdfast accepts a request  ⇒  llhttp accepts it with the same method, target, version, header
 *   fields (names and values) and body bytes;
 * - llhttp rejects a request  ⇒  holdfast does not accept it (it rejects it, or waits for more bytes
 *   than the input has: holdfast judges whole heads).
 *
 * holdfast may refuse more than llhttp (it is stricter on purpose); it must never frame differently.
 */
import { createRequire } from 'node:module';
import { ChunkedScanner } from '../src/forward/http/http-chunked.js';
import { emptyLinesBefore, parseRequestHead, requestHeadEnd } from '../src/forward/http/http-head.js';

const require = createRequire(import.meta.url);
interface LlhttpParser {
  initialize(type: number, resource: object, maxHeaderSize?: number, lenient?: number): void;
  execute(data: Buffer): number | Error;
  finish(): number | Error | undefined;
  close(): void;
  [key: number]: unknown;
}
const common = require('_http_common') as {
  HTTPParser: { new (): LlhttpParser; REQUEST: number; kOnHeaders: number; kOnHeadersComplete: number; kOnBody: number; kOnMessageComplete: number; kLenientNone?: number };
  methods: string[];
};
const { HTTPParser, methods } = common;

/** The forwarder's default head bound (http.maxHeaderBytes). */
export const MAX_HEAD_BYTES = 16 * 1024;

export interface Framed {
  readonly method: string;
  readonly target: string;
  readonly minor: number;
  /** [name as received, value] in order. */
  readonly fields: readonly (readonly [string, string])[];
  readonly body: Buffer;
}

export type Framing = { readonly kind: 'request'; readonly request: Framed } | { readonly kind: 'reject'; readonly why: string } | { readonly kind: 'incomplete' };

/** The first request of `buf` as holdfast's forwarder frames it. */
export function frameHoldfast(buf: Buffer): Framing {
  const b = buf.subarray(emptyLinesBefore(buf));
  let end: number;
  try {
    end = requestHeadEnd(b, MAX_HEAD_BYTES);
  } catch (err) {
    return { kind: 'reject', why: (err as Error).message };
  }
  if (end < 0) return { kind: 'incomplete' };
  let req;
  try {
    req = parseRequestHead(b.toString('latin1', 0, end));
  } catch (err) {
    return { kind: 'reject', why: (err as Error).message };
  }
  const rest = b.subarray(end + 4);
  let body: Buffer;
  if (req.chunked) {
    const scanner = new ChunkedScanner();
    const parts: Buffer[] = [];
    const used = scanner.scan(rest, 0, rest.length, (d, s, e) => parts.push(Buffer.from(d.subarray(s, e))));
    if (used < 0) return { kind: 'reject', why: scanner.error };
    if (!scanner.done) return { kind: 'incomplete' };
    body = Buffer.concat(parts);
  } else {
    const n = Math.max(0, req.contentLength);
    if (rest.length < n) return { kind: 'incomplete' };
    body = rest.subarray(0, n);
  }
  return {
    kind: 'request',
    request: {
      method: req.method,
      target: req.target,
      minor: req.minor,
      fields: req.fields.map((f) => [f.line.slice(0, f.line.indexOf(':')), f.value] as const),
      body,
    },
  };
}

/** The first request of `buf` as llhttp (strict, node:http's settings) frames it. */
export function frameLlhttp(buf: Buffer): Framing {
  const p = new HTTPParser();
  let head: { method: string; target: string; minor: number; fields: [string, string][] } | null = null;
  let extra: string[] = [];
  const body: Buffer[] = [];
  let done = false;
  p[HTTPParser.kOnHeaders] = (headers: string[]) => {
    extra = extra.concat(headers);
  };
  p[HTTPParser.kOnHeadersComplete] = (_major: number, minor: number, headers: string[] | undefined, method: number, url: string | undefined) => {
    if (head !== null) return 0; // a later (pipelined) message: only the first is compared
    const flat = (headers ?? extra) as string[];
    const fields: [string, string][] = [];
    for (let i = 0; i < flat.length; i += 2) fields.push([flat[i]!, flat[i + 1]!]);
    head = { method: methods[method] ?? String(method), target: url ?? '', minor, fields };
    return 0;
  };
  p[HTTPParser.kOnBody] = (b: Buffer) => {
    if (!done) body.push(Buffer.from(b));
  };
  p[HTTPParser.kOnMessageComplete] = () => {
    done = true;
  };
  p.initialize(HTTPParser.REQUEST, {}, MAX_HEAD_BYTES, 0);
  let r: number | Error;
  try {
    r = p.execute(buf);
  } finally {
    p.close(); // the native parser's memory: a million parsers otherwise hold gigabytes
  }
  if (r instanceof Error && !done) return { kind: 'reject', why: (r as Error & { code?: string }).code ?? r.message };
  if (!done || head === null) return { kind: 'incomplete' };
  const h = head as { method: string; target: string; minor: number; fields: [string, string][] };
  return { kind: 'request', request: { method: h.method, target: h.target, minor: h.minor, fields: h.fields, body: Buffer.concat(body) } };
}

/** Null when the two framings agree with the properties above, else what differs. */
export function disagreement(input: Buffer): string | null {
  const ours = frameHoldfast(input);
  const theirs = frameLlhttp(input);
  if (ours.kind === 'request') {
    // The one divergence allowed: raw bytes 0x80-0xFF in the target (llhttp refuses them; holdfast
    // forwards them byte for byte, as nginx accepts them). It is no framing difference.
    if (theirs.kind === 'reject' && theirs.why === 'HPE_INVALID_URL' && /[\x80-\xff]/.test(ours.request.target)) return null;
    if (theirs.kind !== 'request') return `holdfast accepted what llhttp ${theirs.kind === 'reject' ? `rejected (${theirs.why})` : 'did not finish'}`;
    const a = ours.request;
    const b = theirs.request;
    if (a.method !== b.method) return `method ${a.method} vs ${b.method}`;
    if (a.target !== b.target) return `target ${JSON.stringify(a.target)} vs ${JSON.stringify(b.target)}`;
    if (a.minor !== b.minor) return `version 1.${a.minor} vs 1.${b.minor}`;
    if (a.fields.length !== b.fields.length) return `${a.fields.length} fields vs ${b.fields.length}`;
    for (let i = 0; i < a.fields.length; i++) {
      const [an, av] = a.fields[i]!;
      const [bn, bv] = b.fields[i]!;
      if (an.toLowerCase() !== bn.toLowerCase() || av !== bv) return `field ${i}: ${JSON.stringify([an, av])} vs ${JSON.stringify([bn, bv])}`;
    }
    if (!a.body.equals(b.body)) return `body of ${a.body.length} bytes vs ${b.body.length}`;
    return null;
  }
  // holdfast rejected (stricter is allowed) or is still waiting for bytes (it judges whole heads).
  return null;
}
