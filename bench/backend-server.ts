/**
 * @module The benchmark origin as its own process, so it gets its own event loop (and, the OS
 * permitting, its own core) apart from the harness and the proxy under test.
 *
 *   node dist/bench/backend-server.js --port 0 --size 1024 [--host 127.0.0.1]
 *
 * Prints `listening <port>` on stdout once it accepts connections; exits on SIGTERM or SIGINT.
 */
import { parseArgs } from 'node:util';
import { startOrigin } from './lib/backend.js';

function intArg(name: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(n)) {
    throw new Error(`--${name}: expected a non-negative integer, received "${text}"`);
  }
  return n;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      port: { type: 'string' },
      size: { type: 'string' },
      host: { type: 'string' },
    },
    strict: true,
  });
  const origin = await startOrigin({
    host: values.host ?? '127.0.0.1',
    port: intArg('port', values.port, 0),
    size: intArg('size', values.size, 1024),
  });
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
