/**
 * @module Child processes and temp dirs for benchmarks and e2e tests: start a program, wait until it
 * is ready (a stdout/stderr line or an accepting port), stop it, and make sure nothing outlives the
 * harness — on normal exit, on an uncaught error and on SIGINT/SIGTERM.
 *
 * Children are not detached: they stay in the harness's process group, so a Ctrl-C in a terminal
 * reaches them too, and the exit hook below kills whatever is left if the harness dies another way.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants as fsConstants, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

/** How long a started program may take to become ready. */
export const READY_TIMEOUT_MS = 10_000;
/** How long stop() waits after SIGTERM before SIGKILL. */
export const STOP_GRACE_MS = 2_000;
/** Output kept per process for error messages. */
const OUTPUT_KEEP_BYTES = 16 * 1024;
/** Pause between connect attempts while waiting for a port. */
const PORT_POLL_MS = 25;

/**
 * A peer program the harness drives (haproxy, wrk...) is not installed. Local to bench/: the product's
 * error catalogue (src/core/errors.ts) covers what holdfast itself raises, not its test rigs.
 */
export class MissingPeerError extends Error {
  readonly code = 'BENCH_ERR_MISSING_PEER';
  constructor(readonly packages: readonly string[]) {
    super(`missing Debian packages: ${packages.join(' ')} (install: apt-get install ${packages.join(' ')})`);
    this.name = 'MissingPeerError';
  }
}

export interface StartOptions {
  /** Shown in errors: "haproxy", "origin-1024"... */
  readonly name: string;
  readonly command: string;
  readonly args: readonly string[];
  readonly cwd?: string;
  readonly env?: NodeJS.ProcessEnv;
  /** Ready once a line of stdout or stderr matches. */
  readonly readyLine?: RegExp;
  /** Ready once this port accepts a TCP connection (checked after readyLine, if both are given). */
  readonly readyPort?: { readonly host: string; readonly port: number };
  readonly readyTimeoutMs?: number;
}

export interface Exit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export interface Proc {
  readonly name: string;
  readonly pid: number;
  readonly child: ChildProcess;
  /** The readyLine match, or null when readiness was a port only. */
  readonly readyMatch: RegExpMatchArray | null;
  /** Resolves when the process has exited, for any reason. */
  readonly exited: Promise<Exit>;
  /** The last OUTPUT_KEEP_BYTES of stdout and stderr, interleaved as they came. */
  output(): string;
  /** SIGTERM, then SIGKILL after STOP_GRACE_MS; resolves when the process is gone. */
  stop(): Promise<void>;
}

const live = new Set<ChildProcess>();
const tempDirs = new Set<string>();
let hooksInstalled = false;

function killAllNow(): void {
  for (const child of live) {
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
  live.clear();
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  tempDirs.clear();
}

/** Installed on first use, so importing this module has no side effects. */
function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', killAllNow);
  for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
    process.once(signal, () => {
      killAllNow();
      process.exit(code);
    });
  }
}

function track(child: ChildProcess): void {
  installHooks();
  live.add(child);
  child.once('exit', () => live.delete(child));
}

class OutputTail {
  private text = '';
  add(s: string): void {
    this.text += s;
    if (this.text.length > OUTPUT_KEEP_BYTES * 2) this.text = this.text.slice(-OUTPUT_KEEP_BYTES);
  }
  toString(): string {
    return this.text.slice(-OUTPUT_KEEP_BYTES);
  }
}

/** Starts a program and resolves once it is ready; rejects (and kills it) if it exits or times out first. */
export async function startProcess(opts: StartOptions): Promise<Proc> {
  const child = spawn(opts.command, [...opts.args], {
    cwd: opts.cwd,
    env: opts.env ?? process.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  track(child);
  const tail = new OutputTail();
  const exited = new Promise<Exit>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  // A spawn failure (ENOENT) emits 'error' and never 'exit'.
  const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));

  let onLine: ((line: string) => void) | null = null;
  for (const stream of [child.stdout!, child.stderr!]) {
    stream.setEncoding('utf8');
    let partial = '';
    stream.on('data', (s: string) => {
      tail.add(s);
      if (onLine === null) return;
      partial += s;
      let nl: number;
      while ((nl = partial.indexOf('\n')) >= 0) {
        const line = partial.slice(0, nl);
        partial = partial.slice(nl + 1);
        onLine?.(line);
      }
    });
  }

  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
    await exited;
    clearTimeout(timer);
  };

  const fail = (why: string): Error =>
    new Error(`${opts.name} (${opts.command} ${opts.args.join(' ')}): ${why}\n--- output ---\n${tail.toString()}`);

  const timeoutMs = opts.readyTimeoutMs ?? READY_TIMEOUT_MS;
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), timeoutMs);
  });

  const giveUp = new AbortController();
  const becameReady = (async (): Promise<RegExpMatchArray | null> => {
    let match: RegExpMatchArray | null = null;
    if (opts.readyLine) {
      const re = opts.readyLine;
      match = await new Promise<RegExpMatchArray>((resolve) => {
        onLine = (line) => {
          const m = re.exec(line);
          if (m) {
            onLine = null;
            resolve(m);
          }
        };
      });
    }
    if (opts.readyPort) await waitForPort(opts.readyPort.host, opts.readyPort.port, timeoutMs, giveUp.signal);
    return match;
  })();
  const outcome = await Promise.race([
    becameReady.then(
      (m) => ({ kind: 'ready' as const, m }),
      (err: Error) => ({ kind: 'unready' as const, err }),
    ),
    exited.then((e) => ({ kind: 'exited' as const, e })),
    spawnError.then((err) => ({ kind: 'error' as const, err })),
    timedOut.then(() => ({ kind: 'timeout' as const })),
  ]);
  clearTimeout(timer);
  // Stops a port poll that lost the race, so it does not hold the event loop for its whole timeout.
  giveUp.abort();
  onLine = null;
  switch (outcome.kind) {
    case 'ready':
      return {
        name: opts.name,
        pid: child.pid!,
        child,
        readyMatch: outcome.m,
        exited,
        output: () => tail.toString(),
        stop,
      };
    case 'exited':
      throw fail(`exited before it was ready (code ${outcome.e.code}, signal ${outcome.e.signal})`);
    case 'error':
      live.delete(child);
      throw fail(`could not start: ${outcome.err.message}`);
    case 'timeout':
      await stop();
      throw fail(`not ready after ${timeoutMs} ms`);
    case 'unready':
      await stop();
      throw fail(outcome.err.message);
  }
}

export interface RunResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a program to completion and collects its output; kills it after `timeoutMs`. */
export function runProcess(command: string, args: readonly string[], timeoutMs: number): Promise<RunResult> {
  return new Promise<RunResult>((resolve, reject) => {
    const child = spawn(command, [...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    track(child);
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${command} ${args.join(' ')}: still running after ${timeoutMs} ms, killed`));
    }, timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      live.delete(child);
      reject(err);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** Resolves once `host:port` accepts a TCP connection; rejects after `timeoutMs` or when `signal` aborts. */
export async function waitForPort(
  host: string,
  port: number,
  timeoutMs: number = READY_TIMEOUT_MS,
  signal?: AbortSignal,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    signal?.throwIfAborted();
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host, port });
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() >= deadline) throw new Error(`${host}:${port} did not accept connections within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, PORT_POLL_MS));
  }
}

/**
 * A port that was free a moment ago. For peers that cannot report the port they bound (HAProxy);
 * the small race with other processes is acceptable for a benchmark on a quiet machine.
 */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen({ host, port: 0 }, () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** A fresh directory under the OS temp dir, removed when the harness exits (or earlier via removeTempDir). */
export function makeTempDir(prefix: string): string {
  installHooks();
  const dir = mkdtempSync(path.join(os.tmpdir(), `${prefix}-`));
  tempDirs.add(dir);
  return dir;
}

export function removeTempDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  tempDirs.delete(dir);
}

/** The full path of `command` on PATH, or null. */
export function which(command: string): string | null {
  if (command.includes('/')) return isExecutable(command) ? command : null;
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const full = path.join(dir, command);
    if (isExecutable(full)) return full;
  }
  // Debian puts haproxy in /usr/sbin, which a non-root PATH may lack.
  for (const dir of ['/usr/sbin', '/sbin']) {
    const full = path.join(dir, command);
    if (isExecutable(full)) return full;
  }
  return null;
}

function isExecutable(file: string): boolean {
  try {
    accessSync(file, fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Resolves each peer program to its path, or throws MissingPeerError naming the Debian packages to
 * install. `peers` maps command name to package name, e.g. `{ haproxy: 'haproxy', wrk: 'wrk' }`.
 */
export function requirePeers<K extends string>(peers: Record<K, string>): Record<K, string> {
  const found = {} as Record<K, string>;
  const missing: string[] = [];
  for (const [command, pkg] of Object.entries(peers) as [K, string][]) {
    const full = which(command);
    if (full === null) missing.push(pkg);
    else found[command] = full;
  }
  if (missing.length > 0) throw new MissingPeerError(missing);
  return found;
}

/** Stops every process started through this module (the harness's finally-block). */
export async function stopAll(): Promise<void> {
  await Promise.all(
    [...live].map(
      (child) =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve();
          child.once('exit', () => resolve());
          child.kill('SIGTERM');
          setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS).unref();
        }),
    ),
  );
}
