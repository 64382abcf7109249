/**
 * @module Every contact HANet has with the host's network stack, behind one interface so that the
 * interface manager and the transmission agent are tested without root: `ip` (iproute2) in batch
 * mode, sysctl (read and written through /proc/sys, as sysctl(8) does), `arping` for gratuitous ARP
 * and the ARP monitor, `ping` for the host ping monitor, and /sys/class/net for the carrier monitor.
 * Commands run through execFile (no shell). Each failure rejects with HanetCommandError naming the
 * command and what it printed.
 */
import { execFile, spawn, type ChildProcessByStdio } from 'node:child_process';
import type { Readable } from 'node:stream';
import readline from 'node:readline';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { HanetCommandError } from '../core/errors.js';
import { detectArping, type ArpingFlavour } from '../takeover/linux.js';

/** `ip` answers in milliseconds; beyond this it is hung. */
const IP_TIMEOUT_MS = 5000;
/**
 * setpriv (util-linux, Essential on Debian) with --pdeathsig: the kernel sends the child SIGKILL
 * when this process dies, however it dies. Found once; without it the command runs untied.
 */
let setprivPath: string | null | undefined;
function findSetpriv(): string | null {
  if (setprivPath !== undefined) return setprivPath;
  setprivPath = null;
  for (const dir of (process.env['PATH'] ?? '/usr/bin:/bin').split(':')) {
    if (dir !== '' && existsSync(`${dir}/setpriv`)) {
      setprivPath = `${dir}/setpriv`;
      break;
    }
  }
  return setprivPath;
}

/** A long-lived child reading nothing, its stdout piped, killed by the kernel when this process dies. */
export function spawnTied(command: string, args: readonly string[]): ChildProcessByStdio<null, Readable, null> {
  const setpriv = findSetpriv();
  const argv = setpriv === null ? [command, ...args] : [setpriv, '--pdeathsig', 'KILL', '--', command, ...args];
  return spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'ignore'] });
}

/** Between the gratuitous ARPs of one announcement (Habets arping; iputils has a fixed 1 s). */
const GARP_INTERVAL_MS = 10;

export interface LinkState {
  /** /sys/class/net/IF/carrier is 1 (reading it fails while the interface is administratively down). */
  carrier: boolean;
  /** /sys/class/net/IF/operstate (RFC 2863: up, down, lowerlayerdown, dormant, unknown...). */
  operstate: string;
}

export interface HostSystem {
  /** Whether the interface exists (/sys/class/net/IF). */
  interfaceExists(name: string): boolean;
  /** The carrier monitor's reading; never throws (a missing interface has no carrier). */
  linkState(name: string): LinkState;
  /**
   * Runs `ip -force -batch -` with one command per line (argv without the leading `ip`). Errors
   * whose text matches `tolerate` are ignored (an address already there, a route already gone);
   * any other rejects with HanetCommandError.
   */
  ip(lines: readonly (readonly string[])[], tolerate?: RegExp): Promise<void>;
  /** `ip` with one command, its standard output. */
  ipQuery(args: readonly string[]): Promise<string>;
  /** The value of a sysctl (`net.ipv4.ip_forward`), trimmed. */
  sysctlRead(key: string): string;
  sysctlWrite(key: string, value: string): void;
  /** `count` gratuitous ARPs announcing `address` on `iface`; resolves once arping has finished. */
  garp(iface: string, address: string, count: number): Promise<void>;
  /** One ARP request to `target` out of `iface`: true when a reply came within `timeoutMs`. */
  arpProbe(iface: string, target: string, timeoutMs: number): Promise<boolean>;
  /** One ICMP echo to `host` through `iface`: true when a reply came within `timeoutMs`. */
  pingProbe(iface: string, host: string, timeoutMs: number): Promise<boolean>;
  /**
   * Calls `onEvent` with the interface's name whenever the kernel reports a link change (netlink,
   * `ip monitor link`), so the carrier monitor can look at once instead of at its next period.
   * Returns the function that stops watching. Optional: without it the carrier monitor polls only.
   */
  watchLinks?(onEvent: (iface: string) => void): () => void;
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  error: NodeJS.ErrnoException | null;
}

function run(command: string, args: readonly string[], timeoutMs: number, input?: string): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(command, [...args], { timeout: timeoutMs, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : null) : 0;
      const error = err && typeof err.code !== 'number' && !err.killed ? (err as NodeJS.ErrnoException) : null;
      resolve({ code, stdout: String(stdout), stderr: String(stderr), error });
    });
    if (input !== undefined) child.stdin?.end(input);
  });
}

function sysctlPath(key: string): string {
  if (!/^[A-Za-z0-9_.-]+$/.test(key)) throw new RangeError(`sysctl key: expected letters, digits, _ . -, received ${JSON.stringify(key)}`);
  // Interface names may contain dots; sysctl(8) takes them with '/' then. Ours never do (checked by the schema's callers).
  return `/proc/sys/${key.replaceAll('.', '/')}`;
}

/** The real host (Linux, root). */
export class LinuxHostSystem implements HostSystem {
  #arping: Promise<ArpingFlavour> | null = null;

  interfaceExists(name: string): boolean {
    return existsSync(`/sys/class/net/${name}`);
  }

  linkState(name: string): LinkState {
    let carrier = false;
    let operstate = 'missing';
    try {
      operstate = readFileSync(`/sys/class/net/${name}/operstate`, 'utf8').trim();
      carrier = readFileSync(`/sys/class/net/${name}/carrier`, 'utf8').trim() === '1';
    } catch {
      // EINVAL on carrier while the interface is down; ENOENT when it is gone.
    }
    return { carrier, operstate };
  }

  async ip(lines: readonly (readonly string[])[], tolerate?: RegExp): Promise<void> {
    if (lines.length === 0) return;
    const script = lines.map((l) => l.join(' ')).join('\n') + '\n';
    const r = await run('ip', ['-force', '-batch', '-'], IP_TIMEOUT_MS, script);
    if (r.error) throw new HanetCommandError(`ip -batch (${lines.map((l) => l.join(' ')).join('; ')})`, r.error.code === 'ENOENT' ? 'not installed' : r.error.message, { cause: r.error });
    if (r.code === 0) return;
    // -force runs every line; the failed ones are reported on stderr, each reason on its own line.
    const reasons = r.stderr
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '' && !/^Command failed/.test(l));
    const bad = tolerate ? reasons.filter((l) => !tolerate.test(l)) : reasons;
    if (bad.length > 0 || reasons.length === 0) {
      throw new HanetCommandError(`ip -batch (${lines.map((l) => l.join(' ')).join('; ')})`, `exit ${r.code ?? 'by signal'}: ${r.stderr.trim()}`);
    }
  }

  async ipQuery(args: readonly string[]): Promise<string> {
    const r = await run('ip', args, IP_TIMEOUT_MS);
    if (r.code !== 0) throw new HanetCommandError(`ip ${args.join(' ')}`, r.error?.message ?? `exit ${r.code ?? 'by signal'}: ${r.stderr.trim()}`);
    return r.stdout;
  }

  sysctlRead(key: string): string {
    try {
      return readFileSync(sysctlPath(key), 'utf8').trim();
    } catch (err) {
      throw new HanetCommandError(`sysctl ${key}`, String((err as NodeJS.ErrnoException).code ?? err), { cause: err });
    }
  }

  sysctlWrite(key: string, value: string): void {
    try {
      writeFileSync(sysctlPath(key), value);
    } catch (err) {
      throw new HanetCommandError(`sysctl -w ${key}=${value}`, String((err as NodeJS.ErrnoException).code ?? err), { cause: err });
    }
  }

  async garp(iface: string, address: string, count: number): Promise<void> {
    const flavour = await (this.#arping ??= detectArping());
    const args =
      flavour === 'habets'
        ? ['-q', '-U', '-S', address, '-c', String(count), '-W', String(GARP_INTERVAL_MS / 1000), '-i', iface, address]
        : ['-q', '-U', '-c', String(count), '-I', iface, address];
    const r = await run('arping', args, count * (flavour === 'habets' ? GARP_INTERVAL_MS : 1000) + IP_TIMEOUT_MS);
    // Habets' arping exits 1 when nobody answered, which is the point of an unsolicited ARP.
    if (r.error === null && (r.code === 0 || (r.code === 1 && r.stderr.trim() === ''))) return;
    throw new HanetCommandError(`arping ${args.join(' ')}`, r.error ? r.error.message : `exit ${r.code ?? 'by signal'}: ${r.stderr.trim()}`);
  }

  async arpProbe(iface: string, target: string, timeoutMs: number): Promise<boolean> {
    const flavour = await (this.#arping ??= detectArping());
    const seconds = (timeoutMs / 1000).toFixed(3);
    const args = flavour === 'habets' ? ['-q', '-c', '1', '-C', '1', '-w', seconds, '-i', iface, target] : ['-q', '-c', '1', '-w', '1', '-I', iface, target];
    // arping's own deadline decides; the kill is only for one that hangs (its start-up alone takes tens of ms).
    const r = await run('arping', args, 2 * timeoutMs + 50);
    return r.code === 0;
  }

  watchLinks(onEvent: (iface: string) => void): () => void {
    // Tied to this process's life: a SIGKILLed agent cannot kill its child, and `ip monitor` would
    // live on until it next wrote to the closed pipe (the next link event on the host).
    const child = spawnTied('ip', ['-o', 'monitor', 'link']);
    child.on('error', () => {}); // no ip: polling alone
    readline.createInterface({ input: child.stdout }).on('line', (line) => {
      // "5: eth0: <BROADCAST,...> ..." or "Deleted 5: eth0@if4: ..."
      const m = /(?:^|\s)\d+:\s+([^:@\s]+)[@:]/.exec(line);
      if (m) onEvent(m[1]!);
    });
    return () => {
      child.kill('SIGTERM');
    };
  }

  async pingProbe(iface: string, host: string, timeoutMs: number): Promise<boolean> {
    const seconds = Math.max(0.001, timeoutMs / 1000).toFixed(3);
    const r = await run('ping', ['-n', '-q', '-c', '1', '-W', seconds, '-I', iface, host], 2 * timeoutMs + 50);
    return r.code === 0;
  }
}
