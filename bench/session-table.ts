/**
 * @module Micro benchmark of the flow table (src/sessions/flow-table.ts, issue 5: a million flows in
 * under 200 bytes each, over 2 M lookups/s on one core) against the plain `Map<string, object>` it
 * replaced, in the same process: insert N flows with seeded random keys, then look up N keys —
 * all hits, all misses, half and half, and hits starting from the address string as a datagram gives
 * it — over several rounds. Memory per flow two ways: the table's typed-array bytes / flows, and the
 * process's heapUsed + arrayBuffers growth across the build, after a full GC. Prints a markdown
 * table; `node dist/bench/session-table.js`.
 *
 * Knobs: BENCH_SESSION_FLOWS (flows inserted, and the table's maxFlows; default 1 000 000),
 * BENCH_SESSION_LOOKUPS (lookups per measured pass, default 1 000 000), BENCH_ROUNDS (default 3;
 * each rate is the median over rounds).
 */
import { loadavg } from 'node:os';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import { runIfMain } from './lib/main.js';
import { prng } from './lib/prng.js';
import { realClock } from '../src/core/clock.js';
import { FlowTable, NO_FLOW, PROTO_TCP, PROTO_UDP, addressKey, type FlowProto } from '../src/sessions/flow-table.js';
import { NO_SESSION } from '../src/sessions/session-table.js';

export interface SessionTableBenchOptions {
  readonly flows: number;
  readonly lookups: number;
  readonly rounds: number;
}

export interface StructureResult {
  readonly name: string;
  /** Typed-array bytes / flows (null for the Map: it has none). */
  readonly arrayBytesPerFlow: number | null;
  /** (heapUsed + arrayBuffers) growth across the build / flows. */
  readonly processBytesPerFlow: number;
  /** Rates are per CPU-second of the process (see rate()). */
  readonly insertsPerSecond: number;
  /** Medians over rounds. */
  readonly hitsPerSecond: number;
  readonly missesPerSecond: number;
  readonly mixedPerSecond: number;
  readonly fromStringPerSecond: number;
}

export interface SessionTableBenchResult {
  readonly flows: number;
  readonly lookups: number;
  readonly rounds: number;
  /** How the memory figures were taken: which GC was available. */
  readonly gc: string;
  /** The machine's 1-minute load average when the run started (other programs compete for the core). */
  readonly loadAverage: number;
  /** Lookups of the hit set that found their flow, of the miss set that found none (both structures agree). */
  readonly hitsFound: number;
  readonly missesFound: number;
  readonly table: StructureResult;
  readonly map: StructureResult;
}

export function optionsFromEnv(env: NodeJS.ProcessEnv = process.env): SessionTableBenchOptions {
  const flows = Number(env['BENCH_SESSION_FLOWS'] ?? 1_000_000);
  const lookups = Number(env['BENCH_SESSION_LOOKUPS'] ?? 1_000_000);
  const rounds = Number(env['BENCH_ROUNDS'] ?? 3);
  if (!Number.isInteger(flows) || flows < 16 || flows > 16 * 1024 * 1024) {
    throw new RangeError(`BENCH_SESSION_FLOWS: expected an integer in [16, 2^24], received ${env['BENCH_SESSION_FLOWS']}`);
  }
  if (!Number.isInteger(lookups) || lookups < 2) throw new RangeError(`BENCH_SESSION_LOOKUPS: expected an integer >= 2, received ${env['BENCH_SESSION_LOOKUPS']}`);
  if (!Number.isInteger(rounds) || rounds < 1) throw new RangeError(`BENCH_ROUNDS: expected an integer >= 1, received ${env['BENCH_ROUNDS']}`);
  return { flows, lookups, rounds };
}

/** A full GC, and which mechanism gave it. */
function findGc(): { gc: (() => void) | null; how: string } {
  const exposed = (globalThis as { gc?: () => void }).gc;
  if (typeof exposed === 'function') return { gc: exposed, how: 'global.gc (node --expose-gc)' };
  try {
    v8.setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as unknown;
    if (typeof gc === 'function') return { gc: gc as () => void, how: "gc via v8.setFlagsFromString('--expose-gc')" };
  } catch {
    // fall through
  }
  return { gc: null, how: 'no GC available: memory figures include garbage' };
}

/** Keys as a datagram gives them to the table: u32 source address, ports, protocol, plus the source as text. */
interface Keys {
  readonly n: number;
  readonly srcIp: Uint32Array;
  readonly srcPort: Uint16Array;
  readonly dstIp: Uint32Array;
  readonly dstPort: Uint16Array;
  readonly proto: Uint8Array;
  readonly srcText: string[];
}

function dotted(v: number): string {
  return `${v >>> 24}.${(v >>> 16) & 0xff}.${(v >>> 8) & 0xff}.${v & 0xff}`;
}

/** `n` random flows: sources anywhere below 240.0.0.0, one of 4 service addresses and 8 ports, UDP or TCP. */
function makeKeys(n: number, seed: number): Keys {
  const rand = prng(seed);
  const k: Keys = {
    n,
    srcIp: new Uint32Array(n),
    srcPort: new Uint16Array(n),
    dstIp: new Uint32Array(n),
    dstPort: new Uint16Array(n),
    proto: new Uint8Array(n),
    srcText: new Array<string>(n),
  };
  for (let i = 0; i < n; i++) {
    k.srcIp[i] = Math.floor(rand() * 0xf0000000);
    k.srcPort[i] = 1024 + Math.floor(rand() * 64512);
    k.dstIp[i] = 0x0a000001 + Math.floor(rand() * 4);
    k.dstPort[i] = 5060 + Math.floor(rand() * 8);
    k.proto[i] = rand() < 0.75 ? PROTO_UDP : PROTO_TCP;
    k.srcText[i] = dotted(k.srcIp[i]!);
  }
  return k;
}

/** A lookup set: `count` random picks, from each of `from` in turn. */
function pick(from: readonly Keys[], count: number, seed: number): Keys {
  const rand = prng(seed);
  const k: Keys = {
    n: count,
    srcIp: new Uint32Array(count),
    srcPort: new Uint16Array(count),
    dstIp: new Uint32Array(count),
    dstPort: new Uint16Array(count),
    proto: new Uint8Array(count),
    srcText: new Array<string>(count),
  };
  for (let j = 0; j < count; j++) {
    const src = from[j % from.length]!;
    const i = Math.floor(rand() * src.n);
    k.srcIp[j] = src.srcIp[i]!;
    k.srcPort[j] = src.srcPort[i]!;
    k.dstIp[j] = src.dstIp[i]!;
    k.dstPort[j] = src.dstPort[i]!;
    k.proto[j] = src.proto[i]!;
    k.srcText[j] = src.srcText[i]!;
  }
  return k;
}

/** The Map-based table the typed arrays replaced: one string key and one object per flow. */
interface MapFlow {
  srcIp: number;
  srcPort: number;
  dstIp: number;
  dstPort: number;
  proto: number;
  status: string;
  role: string;
  session: number;
  timeoutMs: number;
  lastSeen: number;
}

const mapKey = (srcIp: number, srcPort: number, dstIp: number, dstPort: number, proto: number): string =>
  `${srcIp}:${srcPort}:${dstIp}:${dstPort}:${proto}`;

interface Subject {
  build(keys: Keys): void;
  /** Lookups of `keys`; returns how many found a flow. */
  lookup(keys: Keys): number;
  /** The same from the source address text, through addressKey() as a forwarder does. */
  lookupText(keys: Keys): number;
  size(): number;
  arrayBytes(): number | null;
  drop(): void;
}

function tableSubject(maxFlows: number): Subject {
  let table: FlowTable | null = null;
  return {
    build(keys) {
      table = new FlowTable({ service: 'bench', maxFlows, timeoutMs: 30_000, clock: realClock, hashSeed: 0x5eed });
      for (let i = 0; i < keys.n; i++) {
        table.insert(keys.srcIp[i]!, keys.srcPort[i]!, keys.dstIp[i]!, keys.dstPort[i]!, keys.proto[i] as FlowProto, 'signalling', NO_SESSION);
      }
    },
    lookup(keys) {
      const t = table!;
      let found = 0;
      for (let i = 0; i < keys.n; i++) {
        if (t.lookup(keys.srcIp[i]!, keys.srcPort[i]!, keys.dstIp[i]!, keys.dstPort[i]!, keys.proto[i] as FlowProto) !== NO_FLOW) found++;
      }
      return found;
    },
    lookupText(keys) {
      const t = table!;
      let found = 0;
      for (let i = 0; i < keys.n; i++) {
        if (t.lookup(addressKey(keys.srcText[i]!), keys.srcPort[i]!, keys.dstIp[i]!, keys.dstPort[i]!, keys.proto[i] as FlowProto) !== NO_FLOW) found++;
      }
      return found;
    },
    size: () => table!.size,
    arrayBytes: () => table!.bytes(),
    drop() {
      table = null;
    },
  };
}

function mapSubject(): Subject {
  let map: Map<string, MapFlow> | null = null;
  return {
    build(keys) {
      map = new Map();
      const now = realClock.now();
      for (let i = 0; i < keys.n; i++) {
        const key = mapKey(keys.srcIp[i]!, keys.srcPort[i]!, keys.dstIp[i]!, keys.dstPort[i]!, keys.proto[i]!);
        if (map.has(key)) continue;
        map.set(key, {
          srcIp: keys.srcIp[i]!,
          srcPort: keys.srcPort[i]!,
          dstIp: keys.dstIp[i]!,
          dstPort: keys.dstPort[i]!,
          proto: keys.proto[i]!,
          status: 'new',
          role: 'signalling',
          session: NO_SESSION,
          timeoutMs: 30_000,
          lastSeen: now,
        });
      }
    },
    lookup(keys) {
      const m = map!;
      let found = 0;
      for (let i = 0; i < keys.n; i++) {
        if (m.get(mapKey(keys.srcIp[i]!, keys.srcPort[i]!, keys.dstIp[i]!, keys.dstPort[i]!, keys.proto[i]!)) !== undefined) found++;
      }
      return found;
    },
    lookupText(keys) {
      const m = map!;
      let found = 0;
      for (let i = 0; i < keys.n; i++) {
        if (m.get(mapKey(addressKey(keys.srcText[i]!), keys.srcPort[i]!, keys.dstIp[i]!, keys.dstPort[i]!, keys.proto[i]!)) !== undefined) found++;
      }
      return found;
    },
    size: () => map!.size,
    arrayBytes: () => null,
    drop() {
      map = null;
    },
  };
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

function processBytes(): number {
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

/**
 * One timed call doing `ops` operations: ops per CPU-second of the process (user + system, every
 * thread: the Map's GC helpers count) — the rate on one core, which a shared machine barely moves —
 * and per wall-clock second, which it does.
 */
function rate(ops: number, fn: () => unknown): { perSecond: number; perWallSecond: number; value: unknown } {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const value = fn();
  const wallMs = performance.now() - t0;
  const c = process.cpuUsage(c0);
  return { perSecond: ops / ((c.user + c.system) / 1e6), perWallSecond: (ops / wallMs) * 1000, value };
}

export function run(opts: SessionTableBenchOptions, log: (line: string) => void = () => {}): SessionTableBenchResult {
  const loadAverage = loadavg()[0]!;
  const { gc, how } = findGc();
  const collect = (): void => {
    gc?.();
    gc?.();
  };
  const flows = makeKeys(opts.flows, 1);
  const absent = makeKeys(Math.max(1, opts.lookups), 2);
  const hits = pick([flows], opts.lookups, 3);
  const misses = pick([absent], opts.lookups, 4);
  const mixed = pick([flows, absent], opts.lookups, 5);

  interface Leg {
    readonly name: string;
    readonly subject: Subject;
    readonly size: number;
    readonly insertsPerSecond: number;
    readonly processBytesPerFlow: number;
    readonly arrayBytes: number | null;
    readonly rounds: { hits: number[]; misses: number[]; mixed: number[]; text: number[] };
    hitsFound: number;
    missesFound: number;
  }
  // Both structures are built first (memory measured across each build), then the rounds
  // alternate between them, so a change of load on the machine hits both alike.
  const build = (name: string, subject: Subject): Leg => {
    collect();
    const before = processBytes();
    const insert = rate(opts.flows, () => subject.build(flows));
    collect();
    const size = subject.size();
    const processBytesPerFlow = (processBytes() - before) / size;
    log(`${name}: ${size} flows built, ${Math.round(insert.perSecond)} inserts per CPU-s (${Math.round(insert.perWallSecond)}/s wall), ${processBytesPerFlow.toFixed(1)} B/flow (process)`);
    // One unmeasured pass of each kind warms the JIT.
    subject.lookup(hits);
    subject.lookup(misses);
    subject.lookupText(hits);
    return {
      name,
      subject,
      size,
      insertsPerSecond: insert.perSecond,
      processBytesPerFlow,
      arrayBytes: subject.arrayBytes(),
      rounds: { hits: [], misses: [], mixed: [], text: [] },
      hitsFound: 0,
      missesFound: 0,
    };
  };
  const legs = [build('FlowTable', tableSubject(opts.flows)), build('Map<string, object>', mapSubject())];
  for (let round = 0; round < opts.rounds; round++) {
    for (const leg of legs) {
      const h = rate(opts.lookups, () => leg.subject.lookup(hits));
      const m = rate(opts.lookups, () => leg.subject.lookup(misses));
      const x = rate(opts.lookups, () => leg.subject.lookup(mixed));
      const t = rate(opts.lookups, () => leg.subject.lookupText(hits));
      leg.hitsFound = h.value as number;
      leg.missesFound = m.value as number;
      if (t.value !== leg.hitsFound) throw new Error(`${leg.name}: ${String(t.value)} hits from address text, ${leg.hitsFound} from keys`);
      leg.rounds.hits.push(h.perSecond);
      leg.rounds.misses.push(m.perSecond);
      leg.rounds.mixed.push(x.perSecond);
      leg.rounds.text.push(t.perSecond);
      const both = (r: { perSecond: number; perWallSecond: number }): string => `${Math.round(r.perSecond)} (${Math.round(r.perWallSecond)} wall)`;
      log(`${leg.name} round ${round + 1} per CPU-s: hits ${both(h)}, misses ${both(m)}, 50 % hits ${both(x)}, hits from text ${both(t)}`);
    }
  }
  for (const leg of legs) leg.subject.drop();
  const [table, map] = legs as [Leg, Leg];
  if (table.size !== map.size || table.hitsFound !== map.hitsFound || table.missesFound !== map.missesFound) {
    throw new Error(`FlowTable and Map disagree: sizes ${table.size}/${map.size}, hits ${table.hitsFound}/${map.hitsFound}, misses ${table.missesFound}/${map.missesFound}`);
  }
  const result = (leg: Leg): StructureResult => ({
    name: leg.name,
    arrayBytesPerFlow: leg.arrayBytes === null ? null : leg.arrayBytes / leg.size,
    processBytesPerFlow: leg.processBytesPerFlow,
    insertsPerSecond: leg.insertsPerSecond,
    hitsPerSecond: median(leg.rounds.hits),
    missesPerSecond: median(leg.rounds.misses),
    mixedPerSecond: median(leg.rounds.mixed),
    fromStringPerSecond: median(leg.rounds.text),
  });
  return {
    flows: table.size,
    lookups: opts.lookups,
    rounds: opts.rounds,
    gc: how,
    loadAverage,
    hitsFound: table.hitsFound,
    missesFound: table.missesFound,
    table: result(table),
    map: result(map),
  };
}

export function formatTable(r: SessionTableBenchResult): string {
  const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');
  const bytes = (n: number | null): string => (n === null ? '–' : n.toFixed(1));
  const row = (s: StructureResult): string =>
    `| ${s.name} | ${bytes(s.arrayBytesPerFlow)} | ${bytes(s.processBytesPerFlow)} | ${fmt(s.insertsPerSecond)} | ${fmt(s.hitsPerSecond)} | ${fmt(s.missesPerSecond)} | ${fmt(s.mixedPerSecond)} | ${fmt(s.fromStringPerSecond)} |`;
  const ratio = (a: number, b: number): string => `${(a / b).toFixed(2)}×`;
  const t = r.table;
  const m = r.map;
  return [
    `${fmt(r.flows)} flows, ${fmt(r.lookups)} lookups per pass, median of ${r.rounds} rounds, rates per CPU-second of the process (one core; wall-clock rates in the progress lines), load average ${r.loadAverage.toFixed(2)} at start; memory: ${r.gc}.`,
    `Lookups found: ${fmt(r.hitsFound)} of ${fmt(r.lookups)} hits, ${fmt(r.missesFound)} of ${fmt(r.lookups)} misses (both structures agree).`,
    '',
    '| structure | B/flow (typed arrays) | B/flow (process) | inserts/s | lookups/s: hits | misses | 50 % hits | hits from address text |',
    '|---|---:|---:|---:|---:|---:|---:|---:|',
    row(t),
    row(m),
    `| FlowTable / Map | – | ${ratio(t.processBytesPerFlow, m.processBytesPerFlow)} | ${ratio(t.insertsPerSecond, m.insertsPerSecond)} | ${ratio(t.hitsPerSecond, m.hitsPerSecond)} | ${ratio(t.missesPerSecond, m.missesPerSecond)} | ${ratio(t.mixedPerSecond, m.mixedPerSecond)} | ${ratio(t.fromStringPerSecond, m.fromStringPerSecond)} |`,
  ].join('\n');
}

async function main(): Promise<void> {
  const opts = optionsFromEnv();
  process.stderr.write(`session-table: ${opts.flows} flows, ${opts.lookups} lookups x ${opts.rounds} rounds, node ${process.version}\n`);
  process.stdout.write(`${formatTable(run(opts, (line) => process.stderr.write(`${line}\n`)))}\n`);
}

runIfMain(import.meta.url, main);
