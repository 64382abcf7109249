/**
 * @module UDP echo backends for the UDP relay tests: each answers every datagram to its sender with
 * `<id>|` + the datagram, so a test sees which backend answered, and records which source addresses
 * it heard from (the relay's upstream sockets). The health monitor's `udp` probe (an empty datagram)
 * is neither answered nor counted: it is not traffic.
 *
 * In-process (`startUdpEcho`) or as a child process (`startUdpEchoProcess`, for kill -9):
 *
 *   node dist/test/helpers/udp-echo.js --id b1
 *
 * prints `listening <port>` once its socket is bound.
 */
import dgram from 'node:dgram';
import type { TestContext } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { startProcess, type Proc } from '../../bench/lib/procs.js';

export interface UdpEcho {
  readonly id: string;
  readonly host: string;
  readonly port: number;
  /** Datagrams received, by source "ip:port". */
  readonly sources: Map<string, number>;
  /** Datagrams received in total. */
  received(): number;
  close(): Promise<void>;
}

/** The tag a reply carries: `b1|payload` → { id: 'b1', payload: 'payload' }; null when untagged. */
export function parseReply(reply: Buffer): { id: string; payload: string } | null {
  const text = reply.toString('latin1');
  const bar = text.indexOf('|');
  return bar < 0 ? null : { id: text.slice(0, bar), payload: text.slice(bar + 1) };
}

/** An echo backend with no test attached (child processes, scripts): the caller closes it. */
export async function bindUdpEcho(id: string): Promise<UdpEcho> {
  const udp = dgram.createSocket('udp4');
  const sources = new Map<string, number>();
  let received = 0;
  const tag = Buffer.from(`${id}|`, 'latin1');
  udp.on('error', () => {});
  udp.on('message', (m, r) => {
    if (m.length === 0) return; // the health probe
    received++;
    const key = `${r.address}:${r.port}`;
    sources.set(key, (sources.get(key) ?? 0) + 1);
    udp.send(Buffer.concat([tag, m]), r.port, r.address);
  });
  await new Promise<void>((resolve) => udp.bind(0, '127.0.0.1', resolve));
  const port = udp.address().port;
  let closing: Promise<void> | null = null;
  return {
    id,
    host: '127.0.0.1',
    port,
    sources,
    received: () => received,
    close() {
      closing ??= new Promise<void>((resolve) => udp.close(() => resolve()));
      return closing;
    },
  };
}

/** An echo backend in this process, closed when the test ends. */
export async function startUdpEcho(t: TestContext, id: string): Promise<UdpEcho> {
  const echo = await bindUdpEcho(id);
  t.after(() => echo.close());
  return echo;
}

export interface UdpEchoProcess {
  readonly id: string;
  readonly host: string;
  readonly port: number;
  readonly proc: Proc;
}

/** An echo backend in a child process (so a test can SIGKILL it), stopped when the test ends. */
export async function startUdpEchoProcess(t: TestContext, id: string): Promise<UdpEchoProcess> {
  const proc = await startProcess({
    name: `udp-echo-${id}`,
    command: process.execPath,
    args: [fileURLToPath(import.meta.url), '--id', id],
    readyLine: /^listening (\d+)$/,
  });
  t.after(() => proc.stop());
  return { id, host: '127.0.0.1', port: Number(proc.readyMatch![1]), proc };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { id: { type: 'string' } }, strict: true });
  const echo = await bindUdpEcho(values.id ?? 'echo');
  process.stdout.write(`listening ${echo.port}\n`);
  const stop = (): void => {
    void echo.close().then(() => process.exit(0));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

// `node --test dist/test` runs every .js file under a test/ directory, this one included, without
// the --id every real use passes: then it is a module with nothing to run.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href && process.argv.includes('--id')) {
  main().catch((err: unknown) => {
    console.error(err instanceof Error ? err.message : String(err));
    process.exit(1);
  });
}
