/**
 * @module Micro benchmark of the receive path every heartbeat takes (src/wire): open() (HMAC-SHA256
 * over the message, constant-time tag check) plus the body decoder, on pre-sealed messages, in one
 * thread. Also the reject paths (a forged tag, a truncated datagram) and the full path with the
 * replay guard. Prints a markdown table; `node dist/bench/wire-decode.js`.
 *
 * Knobs: BENCH_WIRE_SECONDS (measured seconds per case per round, default 0.5), BENCH_ROUNDS
 * (rounds, default 3; each figure is the median over rounds).
 */
import { runIfMain } from './lib/main.js';
import { decodeAvailability, encodeAvailability } from '../src/wire/availability.js';
import { MessageType, open, seal } from '../src/wire/envelope.js';
import { decodeLoadVector, encodeLoadVector } from '../src/wire/load-vector.js';
import { ReplayGuard } from '../src/wire/replay-guard.js';
import { unwrapTimestamp, wireTimestamp } from '../src/wire/timestamp.js';

export interface WireDecodeOptions {
  readonly seconds: number;
  readonly rounds: number;
}

export interface WireDecodeResult {
  readonly name: string;
  /** Median over rounds. */
  readonly opsPerSecond: number;
  readonly rounds: readonly number[];
}

/** Distinct messages cycled through, so no branch predictor or cache sees one message only. */
const MESSAGES = 1024;
/** Operations between two clock readings. */
const BATCH = 256;

export function optionsFromEnv(env: NodeJS.ProcessEnv = process.env): WireDecodeOptions {
  const seconds = Number(env['BENCH_WIRE_SECONDS'] ?? 0.5);
  const rounds = Number(env['BENCH_ROUNDS'] ?? 3);
  if (!(seconds > 0)) throw new RangeError(`BENCH_WIRE_SECONDS: expected a number > 0, received ${env['BENCH_WIRE_SECONDS']}`);
  if (!Number.isInteger(rounds) || rounds < 1) throw new RangeError(`BENCH_ROUNDS: expected an integer >= 1, received ${env['BENCH_ROUNDS']}`);
  return { seconds, rounds };
}

interface Case {
  readonly name: string;
  /** Handles message i; returns a number so the work cannot be optimised away. */
  readonly step: (i: number) => number;
}

function cases(): Case[] {
  const key = Buffer.alloc(32, 0x5a);
  const wall = Date.now();
  const availability: Buffer[] = [];
  const loadVectors: Buffer[] = [];
  const forged: Buffer[] = [];
  for (let i = 0; i < MESSAGES; i++) {
    const timestamp = wireTimestamp(wall);
    const body = encodeAvailability({ host: i & 0xff, seq: i, flag: 'available', timestamp });
    availability.push(seal(MessageType.Availability, body, key));
    const lv = { host: i & 0xff, seq: i, timestamp, cpu: 0.3, memory: 0.5, network: 0.1, io: 0.05, backlog: 0.2, load: 0.27 };
    loadVectors.push(seal(MessageType.LoadVector, encodeLoadVector(lv), key));
    const bad = Buffer.from(availability[i]!);
    bad[bad.length - 1]! ^= 1;
    forged.push(bad);
  }
  const truncated = availability.map((m) => m.subarray(0, 12));
  const mask = MESSAGES - 1;
  // The guard sees every (host, seq) once per lap; later laps are replays, still a full check.
  const guard = new ReplayGuard();
  return [
    {
      name: 'availability: open + decode',
      step: (i) => {
        const r = open(availability[i & mask]!, key);
        return r.ok ? (decodeAvailability(r.body)?.seq ?? -1) : -1;
      },
    },
    {
      name: 'load vector: open + decode',
      step: (i) => {
        const r = open(loadVectors[i & mask]!, key);
        return r.ok ? (decodeLoadVector(r.body)?.load ?? -1) : -1;
      },
    },
    {
      name: 'availability: open + decode + unwrap + replay guard',
      step: (i) => {
        const r = open(availability[i & mask]!, key);
        if (!r.ok) return -1;
        const a = decodeAvailability(r.body);
        if (a === null) return -1;
        const ts = unwrapTimestamp(a.timestamp, wall);
        return guard.check(a.host, MessageType.Availability, a.seq, ts, wall) === 'ok' ? 1 : 0;
      },
    },
    {
      name: 'reject: forged tag (bad-mac)',
      step: (i) => (open(forged[i & mask]!, key).ok ? 1 : 0),
    },
    {
      name: 'reject: truncated (12 bytes)',
      step: (i) => (open(truncated[i & mask]!, key).ok ? 1 : 0),
    },
  ];
}

/** Runs `c` for `seconds` and returns operations per second. */
function measure(c: Case, seconds: number): { ops: number; sink: number } {
  const budgetMs = seconds * 1000;
  let sink = 0;
  let n = 0;
  const t0 = performance.now();
  let elapsed = 0;
  do {
    for (let j = 0; j < BATCH; j++) sink += c.step(n + j);
    n += BATCH;
    elapsed = performance.now() - t0;
  } while (elapsed < budgetMs);
  return { ops: (n / elapsed) * 1000, sink };
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export function run(opts: WireDecodeOptions): WireDecodeResult[] {
  const all = cases();
  // Warm-up: let the JIT settle on every case before anything counts.
  for (const c of all) measure(c, Math.min(0.2, opts.seconds));
  const perCase = all.map(() => [] as number[]);
  let sink = 0;
  for (let round = 0; round < opts.rounds; round++) {
    all.forEach((c, k) => {
      const m = measure(c, opts.seconds);
      perCase[k]!.push(m.ops);
      sink += m.sink;
    });
  }
  if (Number.isNaN(sink)) process.stderr.write('(sink is NaN)\n');
  return all.map((c, k) => ({ name: c.name, opsPerSecond: median(perCase[k]!), rounds: perCase[k]! }));
}

export function formatTable(results: readonly WireDecodeResult[]): string {
  const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');
  const rows = results.map((r) => `| ${r.name} | ${fmt(r.opsPerSecond)} | ${(1e9 / r.opsPerSecond).toFixed(0)} |`);
  return ['| case (one thread) | messages/s (median) | ns/message |', '|---|---:|---:|', ...rows].join('\n');
}

async function main(): Promise<void> {
  const opts = optionsFromEnv();
  process.stderr.write(`wire-decode: ${opts.rounds} rounds x ${opts.seconds} s per case, node ${process.version}\n`);
  process.stdout.write(`${formatTable(run(opts))}\n`);
}

runIfMain(import.meta.url, main);
