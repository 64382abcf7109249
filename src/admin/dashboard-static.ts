/**
 * @module The dashboard's static files, built by scripts/build-dashboard.mjs (esbuild) into
 * dist/dashboard/ and served by the admin listener at `/` and `/assets/*`. Nothing is fetched at run
 * time from anywhere else. Holds no cluster data: the page reads everything through the API.
 */
import { readFile } from 'node:fs/promises';
import type http from 'node:http';

/** dist/src/admin/ → dist/dashboard/. */
export const DASHBOARD_DIR = new URL('../../dashboard/', import.meta.url);

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json',
};

/** The few files the build writes; anything else under /assets/ is 404. */
const FILES = new Map<string, string>([
  ['/', 'index.html'],
  ['/index.html', 'index.html'],
  ['/assets/app.js', 'assets/app.js'],
  ['/assets/app.css', 'assets/app.css'],
]);

const SECURITY_HEADERS = {
  'content-security-policy': "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; connect-src 'self'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
};

/** Serves a dashboard file (GET or HEAD) and returns true, or returns false for other paths. */
export async function serveDashboard(req: http.IncomingMessage, res: http.ServerResponse, path: string, dir: URL = DASHBOARD_DIR): Promise<boolean> {
  const file = FILES.get(path);
  if (file === undefined) return false;
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'application/json' }).end(JSON.stringify({ error: 'method not allowed' }));
    return true;
  }
  let body: Buffer;
  try {
    body = await readFile(new URL(file, dir));
  } catch {
    const text = 'The dashboard is not built: run `npm run build` (esbuild writes dist/dashboard/).\n';
    res.writeHead(503, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(text) });
    res.end(req.method === 'HEAD' ? undefined : text);
    return true;
  }
  const ext = file.slice(file.lastIndexOf('.'));
  res.writeHead(200, { 'content-type': TYPES[ext] ?? 'application/octet-stream', 'content-length': body.length, 'cache-control': 'no-cache', ...SECURITY_HEADERS });
  res.end(req.method === 'HEAD' ? undefined : body);
  return true;
}
