/**
 * @module A port base for `runDemo` whose ports were free a moment ago: the demo binds fixed ports
 * (see DemoOptions.portBase in src/demo/demo.ts), the service on the VIP at `base`, the two
 * dispatchers' admin and election ports at base + 1..4 (election on UDP too).
 */
import { randomInt } from 'node:crypto';
import dgram from 'node:dgram';
import net from 'node:net';

export function canBind(kind: 'tcp' | 'udp', host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    if (kind === 'tcp') {
      const s = net.createServer();
      s.once('error', () => resolve(false));
      s.listen(port, host, () => s.close(() => resolve(true)));
    } else {
      const s = dgram.createSocket('udp4');
      s.once('error', () => resolve(false));
      s.bind(port, host, () => s.close(() => resolve(true)));
    }
  });
}

export async function freeDemoPortBase(vip: string): Promise<number> {
  for (;;) {
    const base = randomInt(20_000, 60_000);
    const checks = [
      canBind('tcp', vip, base),
      ...[1, 2, 3, 4].map((i) => canBind('tcp', '127.0.0.1', base + i)),
      ...[3, 4].map((i) => canBind('udp', '127.0.0.1', base + i)),
    ];
    if ((await Promise.all(checks)).every(Boolean)) return base;
  }
}
