/**
 * @module The client of bench/hanet.ts and the HANet e2e test, run inside the client namespace and
 * driven by JSON lines on stdin (one answer line per command on stdout, same `id`):
 * - `probe-start {host, port}`: a UDP datagram every millisecond to the origin's echo;
 *   `probe-stop`: the longest outage — from the send time of the first unanswered datagram to the
 *   first echo received after it (fault to first packet through the sibling, both ways).
 * - `stream-start {url, concurrency}`: small GETs back to back on keep-alive connections;
 *   `stream-stop`: how many completed and failed (no retries: a failure is a failure).
 * - `download {url, bytes, count, rate?}`: `count` downloads at once (paced at `rate` bytes/s by the
 *   origin when given), each checked byte for byte.
 * - `latency {url, n}`: n sequential small GETs, the median and mean time.
 * - `loaded {url, concurrency, n}`: n small GETs over `concurrency` connections: mean latency and rate.
 */
import dgram from 'node:dgram';
import http from 'node:http';
import readline from 'node:readline';
import { pattern, PATTERN_BYTES } from './hanet-origin.js';
import { runIfMain } from './main.js';

const REQUEST_TIMEOUT_MS = 30_000;

interface Probe {
  socket: dgram.Socket;
  timer: NodeJS.Timeout;
  sent: number[];
  received: (number | undefined)[];
}

function get(agent: http.Agent, url: string): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent, timeout: REQUEST_TIMEOUT_MS }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts) }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

/** Downloads `bytes` from url, comparing every byte with the pattern as it arrives. */
function download(url: string, bytes: number, rate: number): Promise<{ ok: boolean; got: number; error?: string }> {
  const chunk = pattern();
  return new Promise((resolve) => {
    let got = 0;
    let bad = false;
    const req = http.get(`${url}?n=${bytes}${rate > 0 ? `&rate=${rate}` : ''}`, { agent: false, timeout: REQUEST_TIMEOUT_MS }, (res) => {
      res.on('data', (c: Buffer) => {
        for (let i = 0; i < c.length && !bad; ) {
          const off = (got + i) % PATTERN_BYTES;
          const n = Math.min(c.length - i, PATTERN_BYTES - off);
          if (c.compare(chunk, off, off + n, i, i + n) !== 0) bad = true;
          i += n;
        }
        got += c.length;
      });
      res.on('end', () => resolve({ ok: !bad && got === bytes, got }));
      res.on('error', (err) => resolve({ ok: false, got, error: err.message }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (err) => resolve({ ok: false, got, error: err.message }));
  });
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.floor(s.length / 2)]!;
}

runIfMain(import.meta.url, () => {
  let probe: Probe | null = null;
  let stream: { stop: boolean; ok: number; failed: number; errors: string[]; done: Promise<void>[] } | null = null;
  const out = (o: object): void => void process.stdout.write(`${JSON.stringify(o)}\n`);
  const rl = readline.createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    const c = JSON.parse(line) as { id: number; cmd: string; [k: string]: unknown };
    void (async () => {
      switch (c.cmd) {
        case 'probe-start': {
          const socket = dgram.createSocket('udp4');
          const p: Probe = { socket, timer: setInterval(() => {}, 1000), sent: [], received: [] };
          clearInterval(p.timer);
          socket.on('message', (msg) => {
            const seq = msg.readUInt32BE(0);
            if (p.received[seq] === undefined) p.received[seq] = performance.now();
          });
          socket.on('error', () => {});
          const buf = Buffer.alloc(16);
          p.timer = setInterval(() => {
            const seq = p.sent.length;
            buf.writeUInt32BE(seq, 0);
            p.sent.push(performance.now());
            socket.send(buf, Number(c.port), String(c.host));
          }, 1);
          probe = p;
          out({ id: c.id, ok: true });
          break;
        }
        case 'probe-stop': {
          const p = probe!;
          probe = null;
          clearInterval(p.timer);
          // Late echoes of the last datagrams.
          await new Promise((r) => setTimeout(r, 100));
          p.socket.close();
          // The longest run of unanswered datagrams, and the first echo received after it began.
          let best = { from: -1, to: -1, lost: 0 };
          let i = 0;
          const n = p.sent.length - 50; // the last ones may still be on their way
          while (i < n) {
            if (p.received[i] !== undefined) {
              i++;
              continue;
            }
            const start = i;
            while (i < n && p.received[i] === undefined) i++;
            const from = p.sent[start]!;
            let to = Infinity;
            for (let k = i; k < p.received.length; k++) if (p.received[k] !== undefined) to = Math.min(to, p.received[k]!);
            if (i - start > best.lost) best = { from, to, lost: i - start };
          }
          out({ id: c.id, outageMs: best.lost === 0 ? 0 : best.to - best.from, lost: best.lost, sent: p.sent.length });
          break;
        }
        case 'stream-start': {
          const agent = new http.Agent({ keepAlive: true, maxSockets: Number(c.concurrency) });
          const s = { stop: false, ok: 0, failed: 0, errors: [] as string[], done: [] as Promise<void>[] };
          for (let k = 0; k < Number(c.concurrency); k++) {
            s.done.push(
              (async () => {
                while (!s.stop) {
                  try {
                    const r = await get(agent, String(c.url));
                    if (r.status === 200 && r.body.length === 64) s.ok++;
                    else {
                      s.failed++;
                      s.errors.push(`status ${r.status}`);
                    }
                  } catch (err) {
                    s.failed++;
                    if (s.errors.length < 20) s.errors.push((err as Error).message);
                  }
                }
              })(),
            );
          }
          stream = s;
          out({ id: c.id, ok: true });
          break;
        }
        case 'stream-stop': {
          const s = stream!;
          stream = null;
          s.stop = true;
          await Promise.all(s.done);
          out({ id: c.id, ok: s.ok, failed: s.failed, errors: s.errors });
          break;
        }
        case 'download': {
          const started = performance.now();
          const rs = await Promise.all(Array.from({ length: Number(c.count) }, () => download(String(c.url), Number(c.bytes), Number(c.rate ?? 0))));
          const ms = performance.now() - started;
          out({ id: c.id, completed: rs.filter((r) => r.ok).length, count: rs.length, ms, bytesPerSec: (Number(c.bytes) * rs.length) / (ms / 1000), errors: rs.filter((r) => !r.ok).map((r) => r.error ?? `got ${r.got}`) });
          break;
        }
        case 'latency': {
          const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
          const times: number[] = [];
          let failed = 0;
          for (let k = 0; k < Number(c.n); k++) {
            const t0 = performance.now();
            try {
              await get(agent, String(c.url));
              times.push(performance.now() - t0);
            } catch {
              failed++;
            }
          }
          agent.destroy();
          out({ id: c.id, medianMs: median(times), meanMs: times.reduce((a, b) => a + b, 0) / Math.max(1, times.length), failed });
          break;
        }
        case 'loaded': {
          // n small GETs over `concurrency` keep-alive connections: latency under load (HANet Fig. 11).
          const agent = new http.Agent({ keepAlive: true, maxSockets: Number(c.concurrency) });
          const times: number[] = [];
          let left = Number(c.n);
          let failed = 0;
          const started = performance.now();
          await Promise.all(
            Array.from({ length: Number(c.concurrency) }, async () => {
              while (left-- > 0) {
                const t0 = performance.now();
                try {
                  await get(agent, String(c.url));
                  times.push(performance.now() - t0);
                } catch {
                  failed++;
                }
              }
            }),
          );
          const ms = performance.now() - started;
          agent.destroy();
          out({ id: c.id, meanMs: times.reduce((a, b) => a + b, 0) / Math.max(1, times.length), perSec: times.length / (ms / 1000), failed });
          break;
        }
        default:
          out({ id: c.id, error: `unknown command ${c.cmd}` });
      }
    })();
  });
  console.log(JSON.stringify({ ready: 'hanet-client' }));
});
