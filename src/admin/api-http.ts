/**
 * @module The admin API's HTTP plumbing: JSON replies, typed API errors (400 with the path of what was
 * wrong, 404, 405, 413), bounded request bodies, and input validation through zod.
 */
import type http from 'node:http';
import type { z } from 'zod';

/** Request bodies above this are refused with 413 (actions take a few fields). */
export const MAX_BODY_BYTES = 64 * 1024;

export interface ApiIssue {
  /** Where: `query.limit`, `body.reason`, `path.service`. */
  path: string;
  message: string;
}

/** An answer other than 2xx, thrown by a route and written by the router. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly error: string,
    readonly issues: readonly ApiIssue[] = [],
    readonly headers: Record<string, string> = {},
  ) {
    super(error);
  }

  body(): { error: string; issues?: readonly ApiIssue[] } {
    return this.issues.length > 0 ? { error: this.error, issues: this.issues } : { error: this.error };
  }
}

export function sendJson(req: http.IncomingMessage, res: http.ServerResponse, status: number, value: unknown, headers: Record<string, string> = {}): void {
  const body = Buffer.from(JSON.stringify(value), 'utf8');
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': body.length, 'cache-control': 'no-store', ...headers });
  if (req.method === 'HEAD') res.end();
  else res.end(body);
}

/**
 * Reads the request body, at most `max` bytes: beyond, ApiError 413 (the connection is closed after
 * the answer, so the rest is not read). Empty body: undefined. Otherwise JSON, or ApiError 400.
 */
export function readJsonBody(req: http.IncomingMessage, max = MAX_BODY_BYTES): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > max) {
      reject(new ApiError(413, 'request body too large', [{ path: 'body', message: `at most ${max} bytes, declared ${declared}` }], { connection: 'close' }));
      req.resume();
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    req.on('data', (c: Buffer) => {
      if (done) return;
      size += c.length;
      if (size > max) {
        done = true;
        reject(new ApiError(413, 'request body too large', [{ path: 'body', message: `at most ${max} bytes` }], { connection: 'close' }));
        return;
      }
      chunks.push(c);
    });
    req.on('error', (err) => {
      if (!done) reject(err);
      done = true;
    });
    req.on('end', () => {
      if (done) return;
      done = true;
      const text = Buffer.concat(chunks).toString('utf8');
      if (text.trim() === '') return resolve(undefined);
      try {
        resolve(JSON.parse(text));
      } catch (err) {
        reject(new ApiError(400, 'bad request', [{ path: 'body', message: `invalid JSON: ${(err as Error).message}` }]));
      }
    });
  });
}

/** Validates `value` with `schema`; ApiError 400 listing every issue with its path under `where`. */
export function validate<T extends z.ZodTypeAny>(schema: T, value: unknown, where: string): z.infer<T> {
  const result = schema.safeParse(value);
  if (result.success) return result.data as z.infer<T>;
  const issues = result.error.issues.map((i) => ({ path: [where, ...i.path].join('.'), message: i.message }));
  throw new ApiError(400, 'bad request', issues);
}

/** The query string as a plain object (the last value of a repeated name wins). */
export function queryObject(url: URL): Record<string, string> {
  return Object.fromEntries(url.searchParams.entries());
}
