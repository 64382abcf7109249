/**
 * @module `npm run bench`: runs every benchmark in order and prints each one's table on stdout
 * (progress goes to stderr). `node dist/bench/run.js http-proxy` runs only the named ones.
 */
import * as balance from './balance.js';
import * as detection from './detection.js';
import * as dispatcherFailover from './dispatcher-failover.js';
import * as election from './election.js';
import * as failoverChaos from './failover-chaos.js';
import * as hanet from './hanet.js';
import * as httpProxy from './http-proxy.js';
import * as overload from './overload.js';
import * as udpRelay from './udp-relay.js';
import * as replication from './replication.js';
import * as replicationCost from './replication-cost.js';
import * as scaleOut from './scale-out.js';
import * as sessionTable from './session-table.js';
import * as sip from './sip.js';
import * as sipMedia from './sip-media.js';
import * as hardening from './hardening.js';
import { faultOptionsFromEnv, runFaults } from './hardening-faults.js';
import { run as runFuzz } from '../fuzz/run.js';
import * as tlsBench from './tls.js';
import * as http2Bench from './http2.js';
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
    name: 'tls',
    title: 'TLS 1.3 termination: holdfast vs HAProxy (keep-alive 1 KiB / 64 KiB, a handshake per request), and the chaos run over TLS',
    run: async () => tlsBench.formatTable(await tlsBench.run(tlsBench.optionsFromEnv())),
  },
  {
    name: 'http2',
    title: 'HTTP/2 to clients: holdfast vs HAProxy terminating h2 (h2load, 1 KiB / 64 KiB), and the chaos run over HTTP/2',
    run: async () => http2Bench.formatTable(await http2Bench.run(http2Bench.optionsFromEnv())),
  },
  {
    name: 'hardening',
    title: 'An idle-connection flood (10 000 from ten source addresses): memory per connection, normal clients served; then dispatcher faults (partition and heal, SIGSTOP of the master, 5 % advert loss)',
    run: async () => {
      const fuzz = runFuzz({ inputs: hardening.fuzzInputsFromEnv(), seed: 1 });
      return hardening.formatAll(await hardening.run(hardening.optionsFromEnv()), await runFaults(faultOptionsFromEnv()), fuzz);
    },
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
    name: 'election',
    title: 'Dispatcher failover: SIGKILL of the master → the backup becomes master and answers on the VIP, at 20, 10 and 5 ms adverts',
    run: async () => election.formatTable(await election.run(election.optionsFromEnv())),
  },
  {
    name: 'dispatcher-failover',
    title: 'Replicated dispatchers: SIGKILL of the master → first datagram forwarded through the VIP by the new master (loopback and Linux takeover); the SIP ALG paper’s call-loss ratio at 50/100/200 calls/s, no standby vs standby without and with state replication',
    run: async () => dispatcherFailover.formatTable(await dispatcherFailover.run(dispatcherFailover.optionsFromEnv())),
  },
  {
    name: 'scale-out',
    title: 'Scale-out: 1/2/3 active dispatchers on etcd behind an L4 spreader, Maglev: CPU per call and spread, keys moved when a backend joins, calls lost when one of three is SIGKILLed',
    run: async () => scaleOut.run(),
  },
  {
    name: 'udp-relay',
    title: 'UDP relay: one connected upstream socket per flow vs a shared socket pool with a flow map, against direct',
    run: async () => udpRelay.formatTable(await udpRelay.run(udpRelay.optionsFromEnv())),
  },
  {
    name: 'wire-decode',
    title: 'Wire receive path: open() + decode per second (one thread)',
    run: async () => wireDecode.formatTable(wireDecode.run(wireDecode.optionsFromEnv())),
  },
  {
    name: 'session-table',
    title: 'Flow table: bytes per flow and lookups/s at a million flows (one thread), against a Map<string, object>',
    run: async () => sessionTable.formatTable(sessionTable.run(sessionTable.optionsFromEnv(), (line) => process.stderr.write(`${line}\n`))),
  },
  {
    name: 'sip',
    title: 'SIP interop: sipp uac through holdfast to three sipp uas at rising call rates, against sipp direct; loss ratio when a uas is SIGKILLed',
    run: async () => sip.formatTable(await sip.run(sip.optionsFromEnv())),
  },
  {
    name: 'sip-media',
    title: 'Media relay: pps and added RTT for 160-byte RTP against direct; sipp calls with RTP through holdfast to three uas against sipp direct',
    run: async () => sipMedia.formatTable(await sipMedia.run(sipMedia.optionsFromEnv())),
  },
  {
    name: 'replication',
    title: 'Session-state replication: reintegration (snapshot of 10k sessions + 10k flows over TCP) and ns per change on the data path',
    run: async () => replication.formatTable(await replication.run(replication.optionsFromEnv(), (line) => process.stderr.write(`${line}\n`))),
  },
  {
    name: 'replication-cost',
    title: 'Replication cost on the data path: HTTP req/s and SIP zero-failure call rate through the VIP, master with a replicating backup vs replication off',
    run: async () => replicationCost.formatTable(await replicationCost.run(replicationCost.optionsFromEnv())),
  },
  {
    name: 'overload',
    title: 'Overload: 5-step HTTP sessions at 0.5x-3x capacity; SA2C vs plain shell balancing vs a session-oblivious random drop',
    run: async () => overload.formatTable(await overload.run(overload.optionsFromEnv())),
  },
  {
    name: 'hanet',
    title: 'HANet: server 1\'s public link cut (link down, nftables drop) → first packet through the sibling per monitor kind; failed requests, intact downloads, overhead through the sibling',
    run: async () => hanet.formatTable(await hanet.run(hanet.optionsFromEnv())),
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
