/**
 * @module Finds free UDP port ranges on 127.0.0.1 for media relay tests (RTP/RTCP pairs start on an
 * even port, RFC 3550 §11), which run in parallel with other tests that bind ports too.
 */
import dgram from 'node:dgram';

/**
 * A range of `pairs` port pairs starting on an even port, each port bound once and released: free a
 * moment ago, so a relay configured with it is very likely to get every port.
 */
export async function freeRange(pairs: number): Promise<{ portMin: number; portMax: number }> {
  for (;;) {
    const base = 30_000 + 2 * Math.floor(Math.random() * 15_000);
    const sockets: dgram.Socket[] = [];
    let ok = true;
    for (let p = base; p < base + 2 * pairs && ok; p++) {
      const s = dgram.createSocket('udp4');
      s.on('error', () => {});
      try {
        await new Promise<void>((resolve, reject) => {
          s.once('error', reject);
          s.bind(p, '127.0.0.1', () => resolve());
        });
        sockets.push(s);
      } catch {
        ok = false;
        s.close();
      }
    }
    await Promise.all(sockets.map((s) => new Promise<void>((r) => s.close(() => r()))));
    if (ok) return { portMin: base, portMax: base + 2 * pairs - 1 };
  }
}
