/**
 * @module `npm run fuzz`: the seeded mutational fuzzer over every target (fuzz/targets.ts). Each
 * input is a stack of mutations of a corpus message; a failure (an exception, a broken property, an
 * input slower than SLOW_INPUT_MS) is printed with the seed and the input in hex, and kept in
 * fuzz/crashes/ to become a regression test. Prints inputs and inputs/s per target and the verdict
 * lines of issue 18.
 *
 *   FUZZ_INPUTS=1000000 FUZZ_SEED=1 node dist/fuzz/run.js [target...]     BENCH_QUICK=1: 100 000 each
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { runIfMain } from '../bench/lib/main.js';
import { mutant, prng } from './lib/mutate.js';
import { SLOW_INPUT_MS, TARGETS, type FuzzTarget } from './targets.js';

/** Times a slow input is run again before it counts as a hang. */
const SLOW_RETRIES = 3;
const CRASH_DIR = fileURLToPath(new URL('../../fuzz/crashes/', import.meta.url));

export interface FuzzFailure {
  readonly target: string;
  readonly seed: number;
  readonly index: number;
  readonly what: string;
  readonly inputHex: string;
}

export interface FuzzResult {
  readonly target: string;
  readonly inputs: number;
  readonly perSecond: number;
  readonly failures: readonly FuzzFailure[];
  readonly slowestMs: number;
  /** RSS growth over the run (bytes): memory must not grow with the input count. */
  readonly rssGrowth: number;
}

/** Runs `inputs` mutants of `t`'s corpus from `seed`; the corpus itself first. At most 20 failures kept. */
export function fuzzTarget(t: FuzzTarget, inputs: number, seed: number): FuzzResult {
  const rand = prng(seed);
  const failures: FuzzFailure[] = [];
  let slowestMs = 0;
  const rss0 = process.memoryUsage().rss;
  const t0 = performance.now();
  for (let i = 0; i < inputs; i++) {
    const input = i < t.corpus.length ? t.corpus[i]! : mutant(rand, t.corpus);
    const s = performance.now();
    let what: string | null;
    try {
      what = t.check(input);
    } catch (err) {
      what = `exception: ${(err as Error).stack ?? String(err)}`;
    }
    let ms = performance.now() - s;
    // A garbage collection or another process can stall any one input: slow means slow each time.
    for (let again = 0; again < SLOW_RETRIES && what === null && ms > SLOW_INPUT_MS; again++) {
      const s2 = performance.now();
      t.check(input);
      ms = Math.min(ms, performance.now() - s2);
    }
    if (ms > slowestMs) slowestMs = ms;
    if (what === null && ms > SLOW_INPUT_MS) what = `slow input: ${ms.toFixed(1)} ms every time`;
    if (what !== null && failures.length < 20) failures.push({ target: t.name, seed, index: i, what, inputHex: input.toString('hex') });
  }
  const seconds = (performance.now() - t0) / 1000;
  return { target: t.name, inputs, perSecond: inputs / seconds, failures, slowestMs, rssGrowth: process.memoryUsage().rss - rss0 };
}

export function formatTable(results: readonly FuzzResult[]): string {
  const lines = [
    '| target | inputs | inputs/s | failures | slowest input ms (best of retries) | RSS growth MiB |',
    '|---|---:|---:|---:|---:|---:|',
    ...results.map((r) => `| ${r.target} | ${r.inputs} | ${Math.round(r.perSecond)} | ${r.failures.length} | ${r.slowestMs.toFixed(1)} | ${(r.rssGrowth / 1048576).toFixed(1)} |`),
    '',
  ];
  for (const r of results) for (const f of r.failures) lines.push(`FAIL ${f.target} seed ${f.seed} input #${f.index}: ${f.what.split('\n')[0]}\n  ${f.inputHex}`);
  const noCrash = results.filter((r) => r.target !== 'http-request-differential');
  const crashes = noCrash.reduce((n, r) => n + r.failures.length, 0);
  const total = noCrash.reduce((n, r) => n + r.inputs, 0);
  const diff = results.find((r) => r.target === 'http-request-differential');
  lines.push(`TARGET fuzz-no-crash: ${crashes === 0 ? 'met' : 'not met'} — ${crashes} failures in ${total} inputs over ${noCrash.length} parsers`);
  if (diff) lines.push(`TARGET differential-framing: ${diff.failures.length === 0 ? 'met' : 'not met'} — ${diff.failures.length} framing disagreements with llhttp in ${diff.inputs} inputs`);
  // idle-flood and partition-heal are bench/hardening's verdicts (it prints these two as well).
  return lines.join('\n');
}

export function run(opts: { inputs: number; seed: number; only?: readonly string[] }): FuzzResult[] {
  const targets = opts.only && opts.only.length > 0 ? TARGETS.filter((t) => opts.only!.includes(t.name)) : TARGETS;
  const results: FuzzResult[] = [];
  for (const t of targets) {
    const r = fuzzTarget(t, opts.inputs, opts.seed);
    process.stderr.write(`${t.name}: ${r.inputs} inputs, ${Math.round(r.perSecond)}/s, ${r.failures.length} failures\n`);
    if (r.failures.length > 0) {
      mkdirSync(CRASH_DIR, { recursive: true });
      for (const f of r.failures) writeFileSync(`${CRASH_DIR}${f.target}-${f.seed}-${f.index}.hex`, `${f.what}\n${f.inputHex}\n`);
    }
    results.push(r);
  }
  return results;
}

function main(): void {
  const quick = process.env['BENCH_QUICK'] === '1';
  const inputs = Number(process.env['FUZZ_INPUTS'] ?? (quick ? 100_000 : 1_000_000));
  const seed = Number(process.env['FUZZ_SEED'] ?? 1);
  const results = run({ inputs, seed, only: process.argv.slice(2) });
  process.stdout.write(`${formatTable(results)}\n`);
  if (results.some((r) => r.failures.length > 0)) process.exitCode = 1;
}

runIfMain(import.meta.url, main);
