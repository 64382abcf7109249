/**
 * @module `npm run bench`: runs every benchmark in order and prints each one's table on stdout
 * (progress goes to stderr). `node dist/bench/run.js http-proxy` runs only the named ones.
 */
import * as balance from './balance.js';
import * as detection from './detection.js';
import * as failoverChaos from './failover-chaos.js';
import * as httpProxy from './http-proxy.js';
import * as wireDecode from './wire-decode.js';

interface Benchmark {
  readonly name: string;
  readonly title: string;
  /** Runs with settings from the environment (BENCH_*) and returns the markdown to print. */
  readonly run: () => Promise<string>;
}

/** In run order. A new benchmark module adds itself here. */
export const BENCHMARKS: readonly Benchmark[] = [
  {
    name: 'http-proxy',
    title: 'HTTP/1.1 proxying: holdfast vs HAProxy (single thread each) vs the origin directly',
    run: async () => httpProxy.formatTable(await httpProxy.run(httpProxy.optionsFromEnv())),
  },
  {
    name: 'balance',
    title: 'Balancers on three unequal backends under bursty load (discrete-event simulation)',
    run: async () => balance.formatTable(balance.run(balance.optionsFromEnv())),
  },
  {
    name: 'failover-chaos',
    title: 'Failover under chaos: a backend SIGKILLed every 3 s, every reply checked by hash; HAProxy vs holdfast',
    run: async () => failoverChaos.formatTable(await failoverChaos.run(failoverChaos.optionsFromEnv())),
  },
  {
    name: 'detection',
    title: 'Failure detection latency (SIGKILL, SIGSTOP, nftables cut) and false positives under CPU burners: push vs phi-accrual',
    run: async () => detection.formatTable(await detection.run(detection.optionsFromEnv())),
  },
  {
    name: 'wire-decode',
    title: 'Wire receive path: open() + decode per second (one thread)',
    run: async () => wireDecode.formatTable(wireDecode.run(wireDecode.optionsFromEnv())),
  },
];

async function main(argv: readonly string[]): Promise<number> {
  const known = new Map(BENCHMARKS.map((b) => [b.name, b]));
  const unknown = argv.filter((name) => !known.has(name));
  if (unknown.length > 0) {
    console.error(`unknown benchmark ${unknown.join(', ')}; expected one of: ${[...known.keys()].join(', ')}`);
    return 2;
  }
  const chosen = argv.length > 0 ? argv.map((name) => known.get(name)!) : BENCHMARKS;
  for (const b of chosen) {
    process.stderr.write(`\n== ${b.name}: ${b.title}\n`);
    const table = await b.run();
    process.stdout.write(`\n## ${b.name}\n\n${table}\n`);
  }
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    console.error(err instanceof Error ? (err.stack ?? err.message) : String(err));
    process.exitCode = 1;
  },
);
