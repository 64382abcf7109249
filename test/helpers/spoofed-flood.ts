/**
 * @module A datagram flood from many source addresses without raw sockets: loopback answers to
 * every 127/8 address, so a socket bound to 127.N.x.y is a distinct client to the dispatcher.
 */
import dgram from 'node:dgram';

/** Sends one datagram from each of `count` addresses 127.`net8`.x.y to `host:port`, `batch` sockets at a time. */
export async function spoofedFlood(count: number, net8: number, to: { host: string; port: number }, payload: (i: number) => Buffer, batch = 100): Promise<void> {
  for (let start = 0; start < count; start += batch) {
    await Promise.all(
      Array.from({ length: Math.min(batch, count - start) }, async (_, k) => {
        const i = start + k;
        const s = dgram.createSocket('udp4');
        s.on('error', () => {});
        await new Promise<void>((r) => s.bind(0, `127.${net8}.${(i >> 8) & 255}.${(i & 255) || 1}`, () => r()));
        await new Promise<void>((r) => s.send(payload(i), to.port, to.host, () => r()));
        s.close();
      }),
    );
  }
}
