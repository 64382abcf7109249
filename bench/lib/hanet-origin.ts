/**
 * @module The origin of bench/hanet.ts and the HANet e2e test, run inside server 1's namespace: an
 * HTTP server (GET /small: 64 bytes; GET /bytes?n=N: N bytes of a fixed pseudo-random pattern that
 * the client regenerates to check every byte) and a UDP echo (each datagram sent back as is), on
 * all addresses (`&rate=B` paces a download at B bytes/s), so it answers on the service address wherever HANet moved it. Prints
 * `hanet-origin ready` once both listen.
 */
import dgram from 'node:dgram';
import http from 'node:http';
import { runIfMain } from './main.js';

/** 64 KiB of pattern; a download of n bytes is this repeated, cut at n. */
export const PATTERN_BYTES = 65536;

export function pattern(): Buffer {
  const b = Buffer.allocUnsafe(PATTERN_BYTES);
  let x = 0x2545f491;
  for (let i = 0; i < PATTERN_BYTES; i++) {
    // xorshift32
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

const SMALL = Buffer.alloc(64, 'h');

export function startOrigin(httpPort: number, udpPort: number): Promise<{ close(): void }> {
  const chunk = pattern();
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname === '/small') {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': SMALL.length });
      res.end(SMALL);
      return;
    }
    if (url.pathname === '/bytes') {
      const n = Number(url.searchParams.get('n') ?? '0');
      // rate (bytes/s, optional): paced, so that a download lasts long enough to span a fault.
      const rate = Number(url.searchParams.get('rate') ?? '0');
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': n });
      let sent = 0;
      const started = performance.now();
      const pump = (): void => {
        while (sent < n) {
          if (rate > 0) {
            const due = started + (sent / rate) * 1000;
            const wait = due - performance.now();
            if (wait > 1) {
              setTimeout(pump, wait);
              return;
            }
          }
          const take = Math.min(PATTERN_BYTES, n - sent);
          const ok = res.write(take === PATTERN_BYTES ? chunk : chunk.subarray(0, take));
          sent += take;
          if (!ok) {
            res.once('drain', pump);
            return;
          }
        }
        res.end();
      };
      pump();
      return;
    }
    res.writeHead(404).end();
  });
  server.keepAliveTimeout = 60_000;
  const udp = dgram.createSocket('udp4');
  udp.on('message', (msg, rinfo) => udp.send(msg, rinfo.port, rinfo.address));
  return new Promise((resolve) => {
    let waiting = 2;
    const done = (): void => {
      if (--waiting === 0) resolve({ close: () => (server.close(), udp.close()) });
    };
    server.listen(httpPort, '0.0.0.0', done);
    udp.bind(udpPort, '0.0.0.0', done);
  });
}

runIfMain(import.meta.url, async () => {
  await startOrigin(Number(process.argv[2] ?? 8080), Number(process.argv[3] ?? 9000));
  console.log('hanet-origin ready');
});
