/**
 * @module The admin HTTP server: Prometheus metrics, the status API and a liveness check, bearer-token
 * authentication when a token is configured (api-auth.ts), and the routes of `extra` (API v1, event
 * stream, dashboard).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { formatHostPort, type HostPort } from '../core/address.js';
import { ListenError } from '../core/errors.js';
import { checkBearer, isLoopbackHost, isOpenPath } from './api-auth.js';
import type { Logger } from './log.js';
import type { StatusSnapshot } from './status.js';

export interface AdminServerDeps {
  status: () => StatusSnapshot;
  /** A registry, or anything that answers as one (the dispatcher's aggregate over its workers). */
  registry: Pick<Registry, 'contentType' | 'metrics'>;
  logger?: Logger;
  /** Bearer token every non-open path needs (api-auth.ts); absent or null: no authentication. */
  token?: string | null;
  /** More routes (API v1, dashboard): answers and returns true, or returns false for a path not its own. */
  extra?: AdminHandler;
}

export type AdminHandler = (req: http.IncomingMessage, res: http.ServerResponse, path: string, url: URL) => boolean | Promise<boolean>;

export interface AdminServer {
  /** The bound address (port resolved when 0 was asked for). */
  readonly address: HostPort;
  /** Stops listening and closes every connection, keep-alive ones included. */
  close(): Promise<void>;
}

const ALLOW = 'GET, HEAD';

interface Reply {
  status: number;
  type: string;
  body: string;
  headers?: Record<string, string>;
}

type Route = (deps: AdminServerDeps) => Reply | Promise<Reply>;

const json = (status: number, value: unknown, headers?: Record<string, string>): Reply => ({
  status,
  type: 'application/json',
  body: JSON.stringify(value),
  ...(headers ? { headers } : {}),
});

const routes: ReadonlyMap<string, Route> = new Map<string, Route>([
  ['/metrics', async (d) => ({ status: 200, type: d.registry.contentType, body: await d.registry.metrics() })],
  ['/api/v1/status', (d) => json(200, d.status())],
  ['/healthz', () => ({ status: 200, type: 'text/plain; charset=utf-8', body: 'ok' })],
]);

async function route(req: http.IncomingMessage, res: http.ServerResponse, deps: AdminServerDeps, loopback: boolean): Promise<Reply | null> {
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  const path = q === -1 ? url : url.slice(0, q);
  if (deps.token && !isOpenPath(path, loopback)) {
    const verdict = checkBearer(req.headers.authorization, deps.token);
    if (verdict === 'missing') return json(401, { error: 'unauthorized: send Authorization: Bearer <token>' }, { 'www-authenticate': 'Bearer realm="holdfast"' });
    if (verdict === 'wrong') return json(403, { error: 'forbidden: wrong token' });
  }
  const handler = routes.get(path);
  if (!handler) {
    if (deps.extra && (await deps.extra(req, res, path, new URL(url, 'http://admin')))) return null;
    return json(404, { error: 'not found', path });
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    return json(405, { error: 'method not allowed', method: req.method ?? '' }, { allow: ALLOW });
  }
  return handler(deps);
}

/**
 * Starts the admin server on `listen` (port 0 picks a free port). Rejects with ListenError when the
 * address cannot be bound. Every answer is computed per request (never cached), so a scrape sees the
 * state of that instant.
 */
export async function startAdminServer(listen: HostPort, deps: AdminServerDeps): Promise<AdminServer> {
  const loopback = isLoopbackHost(listen.host);
  const server = http.createServer((req, res) => {
    route(req, res, deps, loopback)
      .catch((err: unknown) => {
        deps.logger?.error({ err, url: req.url }, 'admin request failed');
        if (res.headersSent) {
          res.destroy();
          return null;
        }
        return json(500, { error: 'internal error' });
      })
      .then((reply) => {
        if (reply === null) return;
        const body = Buffer.from(reply.body, 'utf8');
        res.writeHead(reply.status, {
          'content-type': reply.type,
          'content-length': body.length,
          'cache-control': 'no-store',
          ...reply.headers,
        });
        if (req.method === 'HEAD') res.end();
        else res.end(body);
      })
      .catch((err: unknown) => res.destroy(err as Error));
  });

  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error): void => {
      server.off('listening', onListening);
      reject(new ListenError(formatHostPort(listen), { cause: err }));
    };
    const onListening = (): void => {
      server.off('error', onError);
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen(listen.port, listen.host);
  });

  // Errors after binding (e.g. EMFILE on accept) must not crash the dispatcher over its admin port.
  server.on('error', (err) => deps.logger?.error({ err }, 'admin server error'));

  const bound = server.address() as AddressInfo;
  const address: HostPort = { host: bound.address, port: bound.port };
  deps.logger?.info({ address: formatHostPort(address) }, 'admin server listening');

  let closing: Promise<void> | null = null;
  return {
    address,
    close(): Promise<void> {
      closing ??= new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
