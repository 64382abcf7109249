/**
 * @module Bearer-token authentication of the admin listener (issue 14): where the token comes from
 * (`admin.tokenFile`, or HOLDFAST_ADMIN_TOKEN), the rule that a non-loopback admin address needs one,
 * which paths stay open, and the constant-time comparison.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { ConfigInvalidError } from '../core/errors.js';

/** Environment variable that holds the admin token (overrides admin.tokenFile). */
export const ADMIN_TOKEN_ENV = 'HOLDFAST_ADMIN_TOKEN';
/** A shorter token is refused: it could be guessed over the network. */
export const ADMIN_TOKEN_MIN_CHARS = 16;

/** Whether `host` (an admin listen host) is reachable only from this machine. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h === '::1') return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  return h.startsWith('::ffff:127.');
}

/**
 * The admin token, or null when none is configured. Throws ConfigInvalidError naming
 * `admin.tokenFile` when the file cannot be read or is too short, and when the admin listener is not
 * on loopback and there is no token (an unauthenticated admin API with actions must not be
 * reachable from the network).
 */
export function resolveAdminToken(admin: { listen: string; tokenFile?: string | undefined }, env: NodeJS.ProcessEnv = process.env): string | null {
  let token: string | null = null;
  let where = `${ADMIN_TOKEN_ENV}`;
  const fromEnv = env[ADMIN_TOKEN_ENV];
  if (fromEnv !== undefined && fromEnv.trim() !== '') {
    token = fromEnv.trim();
  } else if (admin.tokenFile !== undefined) {
    where = 'admin.tokenFile';
    try {
      token = readFileSync(admin.tokenFile, 'utf8').trim();
    } catch (err) {
      throw new ConfigInvalidError([`admin.tokenFile: cannot read "${admin.tokenFile}": ${(err as Error).message}`], { cause: err });
    }
  }
  if (token !== null && token.length < ADMIN_TOKEN_MIN_CHARS) {
    throw new ConfigInvalidError([`${where}: expected a token of at least ${ADMIN_TOKEN_MIN_CHARS} characters, received ${token.length}`]);
  }
  const host = admin.listen.slice(0, admin.listen.lastIndexOf(':'));
  if (token === null && !isLoopbackHost(host)) {
    throw new ConfigInvalidError([
      `admin.listen: "${admin.listen}" is not a loopback address and no admin token is set: set admin.tokenFile or ${ADMIN_TOKEN_ENV}, or listen on 127.0.0.1`,
    ]);
  }
  return token;
}

/**
 * Paths served without a token: the liveness check always; Prometheus metrics when the admin
 * listener is on loopback (a local scraper needs no secret; from the network they need the token);
 * the dashboard's static files and the OpenAPI document, which hold no cluster data (the dashboard
 * asks for the token and sends it with every API call).
 */
export function isOpenPath(path: string, loopback: boolean): boolean {
  if (path === '/healthz' || path === '/' || path === '/index.html' || path === '/api/v1/openapi.json') return true;
  if (path.startsWith('/assets/')) return true;
  return path === '/metrics' && loopback;
}

const digest = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();

export type AuthVerdict = 'ok' | 'missing' | 'wrong';

/**
 * Checks an Authorization header against `token`: missing (no bearer credentials: 401) or wrong
 * (403). Both sides are hashed first so that timingSafeEqual compares equal lengths and the time
 * says nothing about the token's length or prefix.
 */
export function checkBearer(header: string | undefined, token: string): AuthVerdict {
  if (header === undefined) return 'missing';
  const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
  if (!m) return 'missing';
  return timingSafeEqual(digest(m[1]!), digest(token)) ? 'ok' : 'wrong';
}
