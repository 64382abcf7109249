/**
 * @module The pieces of client-transparent failover (issue 4, after CoRAL): the request log and
 * its budget, which requests may be replayed, what a partly sent reply needs to be resumed
 * (validators, Content-Range), and the running record of what the client already has.
 */
import { createHash, type Hash } from 'node:crypto';
import type { FailoverConfig } from '../../config/schema.js';
import type { RequestHead, ResponseHead } from './http-head.js';

/** Methods that are idempotent (RFC 9110 §9.2.2) and so may be sent twice. */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);

/** RFC 9110 §9.2.2, plus the Idempotency-Key convention (IETF draft) for the rest. */
export function isReplayable(req: RequestHead, cfg: FailoverConfig): boolean {
  if (req.upgrade) return false;
  if (IDEMPOTENT.has(req.method) || cfg.replayUnsafe) return true;
  for (const f of req.fields) if (f.name === 'idempotency-key') return true;
  return false;
}

/** The service-wide bound on logged bytes (maxTotalLogBytes). */
export class LogBudget {
  used = 0;
  constructor(readonly max: number) {}
}

/**
 * A request's head and body as sent, kept until its reply is complete so that it can be sent
 * again. Body chunks are the Buffers the client socket produced (never reused by Node), kept by
 * reference. Past maxRequestLogBytes or the service budget the log is dropped: the request is then
 * not recoverable, and says so once.
 */
export class RequestLog {
  readonly body: Buffer[] = [];
  private bytes: number;
  private charged: number;
  overflow = false;

  constructor(
    head: string,
    private readonly max: number,
    private readonly budget: LogBudget,
  ) {
    this.bytes = head.length;
    this.charged = 0;
    this.charge(head.length);
  }

  /** Keep body bytes. Returns false when this call made the log overflow. */
  append(chunk: Buffer): boolean {
    if (this.overflow) return true;
    this.bytes += chunk.length;
    if (!this.charge(chunk.length)) return false;
    this.body.push(chunk);
    return true;
  }

  private charge(n: number): boolean {
    if (this.bytes > this.max || this.budget.used + n > this.budget.max) {
      this.drop();
      return false;
    }
    this.budget.used += n;
    this.charged += n;
    return true;
  }

  private drop(): void {
    this.overflow = true;
    this.body.length = 0;
    this.release();
  }

  /** Give the bytes back to the budget (the reply is complete, or the log was dropped). */
  release(): void {
    this.budget.used -= this.charged;
    this.charged = 0;
  }
}

/** A strong entity tag (RFC 9110 §8.8.3): quoted, not W/. */
export function strongEtag(res: ResponseHead): string | null {
  for (const f of res.fields) {
    if (f.name === 'etag') return /^"[\x21\x23-\x7e\x80-\xff]*"$/.test(f.value) ? f.value : null;
  }
  return null;
}

function acceptsByteRanges(res: ResponseHead): boolean {
  for (const f of res.fields) if (f.name === 'accept-ranges' && /(^|,)\s*bytes\s*(,|$)/i.test(f.value)) return true;
  return false;
}

/** `Content-Range: bytes first-last/complete` (RFC 9110 §14.4), or null. */
export function contentRange(res: ResponseHead): { first: number; last: number; complete: number } | null {
  for (const f of res.fields) {
    if (f.name !== 'content-range') continue;
    const m = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(f.value);
    if (!m) return null;
    return { first: Number(m[1]), last: Number(m[2]), complete: Number(m[3]) };
  }
  return null;
}

/**
 * The replayed request head asking for the rest of a representation: `Range: bytes=k-` and
 * `If-Range: <etag>` (RFC 9110 §13.1.5: a changed object comes back whole, as 200), replacing any
 * Range or If-Range of the client's own.
 */
export function rangeRequestHead(head: string, from: number, etag: string): string {
  const kept = head.slice(0, -2).replace(/\r\n(?:range|if-range):[^\r]*/gi, '');
  return `${kept}Range: bytes=${from}-\r\nIf-Range: ${etag}\r\n\r\n`;
}

/**
 * What the client already has of a reply released to it: how many body bytes (decoded, for
 * chunked replies) and their SHA-256, plus whether the reply can be finished by a range request.
 * Hashing costs CPU on every released byte, so it is done only for replies that may need it.
 */
export class ReplyRecord {
  /** Body bytes the client has. */
  sent = 0;
  readonly hash: Hash | null;
  /** The strong ETag, when range resume is possible for this reply. */
  readonly etag: string | null;

  constructor(req: RequestHead, res: ResponseHead, cfg: FailoverConfig) {
    const rangeable =
      cfg.rangeResume && req.method === 'GET' && res.status === 200 && !res.chunked && !res.closeDelimited && acceptsByteRanges(res);
    this.etag = rangeable ? strongEtag(res) : null;
    this.hash = cfg.verifiedReplay ? createHash('sha256') : null;
  }

  /** Body bytes were released to the client. */
  add(buf: Uint8Array, start: number, end: number): void {
    this.sent += end - start;
    this.hash?.update(start === 0 && end === buf.length ? buf : buf.subarray(start, end));
  }

  /** The digest of everything sent so far (the running hash goes on). */
  digest(): Buffer | null {
    return this.hash ? this.hash.copy().digest() : null;
  }
}

/**
 * A replay in progress onto a new backend, for a reply the client has partly received.
 * range: the new reply must be a 206 starting at `skip = 0` past `from`; verified: the new reply's
 * first `from` body bytes are hashed and must equal what was sent.
 */
export interface Resume {
  strategy: 'range' | 'verified';
  /** Body bytes the client had when the failure happened. */
  readonly from: number;
  /** Bytes of the new body still to hash and drop before splicing. */
  skip: number;
  hash: Hash | null;
  readonly expected: Buffer | null;
  /** Framing of the new reply's body. */
  left: number;
  /** When the original reply was chunked: bytes still owed to the current chunk, then re-frame. */
  chunkOwed: number;
  /** Chunk framing owed to the client before the next chunk (the CRLF after a chunk's data). */
  framingOwed: string;
  /** The original reply was chunked: the client needs chunk framing from us from now on. */
  readonly reframe: boolean;
}

/** Hold buffers kept for reuse per service; more are allocated when all are in use. */
export const HOLD_POOL_MAX = 64;

/**
 * Reusable buffers for held replies. A held reply is copied in (one memcpy) and leaves in one
 * write; the buffer comes back only when that write was flushed at once (otherwise the pending
 * write still points into it and it is left to the GC). Reading into per-reply buffers instead
 * would cost an allocation per read, which measured twice the CPU per 64 KiB reply.
 */
export class HoldBufferPool {
  private readonly free: Buffer[] = [];

  constructor(readonly size: number) {}

  take(): Buffer {
    return this.free.pop() ?? Buffer.allocUnsafe(this.size);
  }

  give(buf: Buffer): void {
    if (this.free.length < HOLD_POOL_MAX) this.free.push(buf);
  }
}
