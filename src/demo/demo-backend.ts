/**
 * @module A demo origin server: answers every request with who it is, so the demo's traffic shows
 * the balancer at work. `/health` is what the dispatcher's HTTP probe asks.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { HostPort } from '../core/address.js';

export interface DemoBackend {
  readonly id: string;
  readonly address: HostPort;
  readonly served: () => number;
  close(): Promise<void>;
}

export async function startDemoBackend(id: string, host = '127.0.0.1', port = 0): Promise<DemoBackend> {
  let served = 0;
  const server = http.createServer((req, res) => {
    served++;
    req.resume();
    req.on('end', () => {
      const body = JSON.stringify({ backend: id, method: req.method, url: req.url, served }) + '\n';
      res.writeHead(200, { 'content-type': 'application/json', 'x-demo-backend': id });
      res.end(body);
    });
  });
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const a = server.address() as AddressInfo;
  return {
    id,
    address: { host: a.address, port: a.port },
    served: () => served,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
