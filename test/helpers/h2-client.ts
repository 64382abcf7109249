/**
 * @module An HTTP/2 test client on node:http2 (one request, its whole reply: interim statuses, headers,
 * body, trailers; a reset stream rejects) and a test dispatcher with `http.http2` on.
 */
import type { TestContext } from 'node:test';
import http2, { type ClientHttp2Session, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2';
import { backendList, singleServiceConfig, startServiceDispatcher, type ServiceDispatcher } from './dispatcher.js';

export interface H2Reply {
  headers: IncomingHttpHeaders;
  body: Buffer;
  trailers: IncomingHttpHeaders | null;
  informational: number[];
}

/** One request on `client`; resolves with the whole reply, rejects on a stream error. */
export function h2Request(
  client: ClientHttp2Session,
  headers: OutgoingHttpHeaders,
  body?: Buffer | string,
  trailers?: OutgoingHttpHeaders,
  onHead?: () => void,
): Promise<H2Reply> {
  return new Promise((resolve, reject) => {
    const s = client.request(headers, { endStream: body === undefined, waitForTrailers: trailers !== undefined });
    const parts: Buffer[] = [];
    const reply: H2Reply = { headers: {}, body: Buffer.alloc(0), trailers: null, informational: [] };
    s.on('headers', (h) => reply.informational.push(Number(h[':status'])));
    s.on('response', (h) => {
      reply.headers = h;
      onHead?.();
    });
    s.on('trailers', (t) => {
      reply.trailers = t;
    });
    s.on('data', (d: Buffer) => parts.push(d));
    s.on('error', () => {});
    // 'close', not 'end': a reset stream may end its readable side too.
    s.on('close', () => {
      if (s.rstCode !== undefined && s.rstCode !== http2.constants.NGHTTP2_NO_ERROR) {
        reject(new Error(`stream reset with code ${s.rstCode}`));
        return;
      }
      reply.body = Buffer.concat(parts);
      resolve(reply);
    });
    if (trailers !== undefined) s.on('wantTrailers', () => s.sendTrailers(trailers));
    if (body !== undefined) s.end(body);
  });
}

export function h2Connect(t: TestContext, url: string, opts: http2.SecureClientSessionOptions = {}): ClientHttp2Session {
  const c = http2.connect(url, opts);
  c.on('error', () => {});
  t.after(() => c.destroy());
  return c;
}

export async function h2Service(t: TestContext, backends: readonly string[], extra: Record<string, unknown> = {}, http: Record<string, unknown> = {}): Promise<ServiceDispatcher> {
  const input = { name: 'web', protocol: 'http', listen: '127.0.0.1:0', backends: backendList(backends), http: { http2: true, ...http }, ...extra };
  return startServiceDispatcher(t, singleServiceConfig(input), 'web');
}

