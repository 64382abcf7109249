/**
 * @module The failover chaos benchmark's origin as its own process, so the benchmark can SIGKILL it
 * mid-reply and start it again on the same port (bench/lib/chaos-origin.ts says what it serves).
 *
 *   node dist/bench/chaos-origin-server.js --port 0 [--host 127.0.0.1]
 *
 * Prints `listening <port>` on stdout once it accepts connections; exits on SIGTERM or SIGINT.
 */
import { parseArgs } from 'node:util';
import { startChaosOrigin } from './lib/chaos-origin.js';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      port: { type: 'string' },
      host: { type: 'string' },
    },
    strict: true,
  });
  const portText = values.port ?? '0';
  const port = Number(portText);
  if (!/^\d+$/.test(portText) || port > 65535) throw new Error(`--port: expected 0..65535, received "${portText}"`);
  const origin = await startChaosOrigin({ host: values.host ?? '127.0.0.1', port });
  process.stdout.write(`listening ${origin.port}\n`);
  const stop = (): void => {
    void origin.close().then(() => process.exit(0));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : String(err));
  process.exit(1);
});
