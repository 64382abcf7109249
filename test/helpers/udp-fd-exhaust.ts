/**
 * @module A scenario run in a child process with a low descriptor limit (the e2e test starts it as
 * `sh -c 'ulimit -n 256; exec node dist/test/helpers/udp-fd-exhaust.js --run'`): a dispatcher with a
 * `udp` service and an echo backend; client A establishes a flow; every free descriptor is then taken
 * (opening /dev/null until EMFILE), so the relay cannot open an upstream socket for client B's new
 * flow; two descriptors are given back and B tries again. Prints one JSON line with what happened.
 */
import dgram from 'node:dgram';
import { closeSync, openSync } from 'node:fs';
import { configSchema } from '../../src/config/schema.js';
import { channels, type MessageDropEvent, type SessionRefuseEvent } from '../../src/core/diagnostics.js';
import { startDispatcher } from '../../src/dispatcher/dispatcher.js';
import { bindUdpEcho, parseReply } from './udp-echo.js';

export interface FdExhaustReport {
  /** A's reply before, during and after the shortage ('b0|...' or null). */
  aBefore: string | null;
  aDuring: string | null;
  /** B's reply while no descriptor was free, and once two were. */
  bDuring: string | null;
  bAfter: string | null;
  /** Descriptors taken to reach EMFILE. */
  filled: number;
  drops: string[];
  refusals: string[];
}

const WAIT_MS = 300;

async function scenario(): Promise<FdExhaustReport> {
  const echo = await bindUdpEcho('b0');
  const config = configSchema.parse({
    logging: { level: 'silent' },
    admin: { enabled: false },
    services: [{ name: 'udp', protocol: 'udp', listen: '127.0.0.1:0', backends: [{ id: 'b0', address: `127.0.0.1:${echo.port}` }] }],
  });
  const d = await startDispatcher(config);
  const service = d.serviceAddress('udp');
  const drops: string[] = [];
  const refusals: string[] = [];
  channels.messageDrop.subscribe((m) => drops.push((m as MessageDropEvent).reason));
  channels.sessionRefuse.subscribe((m) => refusals.push((m as SessionRefuseEvent).reason));

  const open = async (): Promise<{ request(p: string): Promise<string | null>; close(): void }> => {
    const s = dgram.createSocket('udp4');
    s.on('error', () => {});
    await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', resolve));
    return {
      request: (p) =>
        new Promise((resolve) => {
          const timer = setTimeout(() => {
            s.removeAllListeners('message');
            resolve(null);
          }, WAIT_MS);
          s.once('message', (m: Buffer) => {
            clearTimeout(timer);
            const r = parseReply(m);
            resolve(r ? `${r.id}|${r.payload}` : null);
          });
          s.send(Buffer.from(p), service.port, service.host);
        }),
      close: () => s.close(),
    };
  };
  const a = await open();
  const b = await open();
  const aBefore = await a.request('a1');

  const held: number[] = [];
  for (;;) {
    try {
      held.push(openSync('/dev/null', 'r'));
    } catch {
      break;
    }
  }
  const bDuring = await b.request('b1');
  const aDuring = await a.request('a2');
  closeSync(held.pop()!);
  closeSync(held.pop()!);
  const bAfter = await b.request('b2');
  for (const fd of held) closeSync(fd);
  a.close();
  b.close();
  await d.close();
  await echo.close();
  return { aBefore, aDuring, bDuring, bAfter, filled: held.length + 2, drops, refusals };
}

// `node --test dist/test` runs every .js file under a test/ directory, this one included: only
// `--run` runs the scenario.
if (process.argv.includes('--run')) {
  scenario().then(
    (report) => {
      process.stdout.write(`${JSON.stringify(report)}\n`);
      process.exit(0);
    },
    (err: unknown) => {
      console.error(err instanceof Error ? (err.stack ?? err.message) : String(err));
      process.exit(1);
    },
  );
}
