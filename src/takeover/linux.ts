/**
 * @module Linux identity takeover (issue 7; survey, seed 000, Fig. 17: ARP-spoofing takeover): the
 * new master adds the VIP to a configured interface (`ip addr add <vip>/<prefix> dev <if>`) and
 * announces it with gratuitous ARP so that neighbours repoint their ARP caches at once, instead of
 * when their entries expire; the old master removes it (`ip addr del`). As keepalived does
 * (vrrp_garp_master_repeat 5, vrrp_garp_master_delay 5 s), one burst of `garpCount` gratuitous ARPs
 * goes out on promotion and a second one `garpDelayMs` later, for neighbours that missed the first.
 *
 * The gratuitous ARPs go out through a raw packet socket (AF_PACKET) opened once, when the takeover
 * is set up, by a small native addon (garp-socket.c, built from source in `npm ci`): at takeover a
 * prebuilt 60-byte frame is written, where starting `arping` cost tens of milliseconds (issue 17
 * item 4). With it, a netlink socket opened at the same time adds and removes the VIP
 * (RTM_NEWADDR/RTM_DELADDR, what `ip addr` sends), so a takeover starts no process at all; `ip`
 * does it when that socket is missing or the kernel refuses (its message then says why). When the addon is not built or the socket cannot be opened (no CAP_NET_RAW, no such
 * interface yet) or a send fails, arping does it as before; `announcer` says which and why.
 *
 * Needs root (CAP_NET_ADMIN, CAP_NET_RAW) and the `ip` (iproute2) and `arping` programs. Two arping
 * implementations are in the field with different flags: iputils (`arping -U -c N -I <if> <vip>`,
 * the sender address is the VIP) and Thomas Habets' (`-i <if>`, and the sender address must be
 * given: `-S <vip>`); the installed one is recognised from its help text. Every command runs
 * through `execFile` (no shell), and a failure rejects with TakeoverError naming the command, its
 * exit status and what it printed.
 */
import { execFile, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import net from 'node:net';
import type { Clock, TimerHandle } from '../core/clock.js';
import { TakeoverError } from '../core/errors.js';
import { Serial, type IdentityTakeover } from './identity-takeover.js';

/** keepalived's vrrp_garp_master_repeat: gratuitous ARPs per burst. */
export const GARP_COUNT = 5;
/** keepalived's vrrp_garp_master_delay: the second burst after this. */
export const GARP_DELAY_MS = 5000;
/** Between the gratuitous ARPs of a burst (Habets arping; iputils arping has a fixed 1 s). */
export const GARP_INTERVAL_MS = 10;
/** `ip` answers in milliseconds; beyond this it is hung. */
const IP_TIMEOUT_MS = 5000;
/** What `ip addr add` says when the address is already there (iproute2 6.x; older: RTNETLINK's EEXIST). */
const ALREADY_ADDED = /Address already assigned|File exists/i;
/** What `ip addr del` says when the address is not there (iproute2 6.x; older: EADDRNOTAVAIL). */
const ALREADY_REMOVED = /Address not found|Cannot assign requested address/i;

export type ArpingFlavour = 'iputils' | 'habets';

/** How gratuitous ARPs are sent: `auto` tries the packet socket first, `arping` always starts arping. */
export type GarpMode = 'auto' | 'arping';

/** Which sender announces the VIP, and why arping when it is arping. */
export type Announcer = { readonly via: 'packet-socket' } | { readonly via: 'arping'; readonly reason: string };

/** What garp-socket.c exports. */
interface GarpAddon {
  open(ifname: string, netnsPath?: string): { fd: number; ifindex: number; mac: Buffer };
  send(fd: number, ifindex: number, frame: Buffer): number;
  close(fd: number): void;
  netlink(netnsPath?: string): number;
  /** 0, or the kernel's errno. */
  addr(fd: number, add: boolean, ifindex: number, ipv4: number, prefix: number): number;
}

/** Linux errno values `addr` answers for an address already there / not there. */
const EEXIST = 17;
const EADDRNOTAVAIL = 99;

/** Where scripts/build-native.mjs puts the addon, from dist/src/takeover/ (or src/takeover/ under a TS loader). */
const ADDON_PATHS = ['../../../build/native/garp-socket.node', '../../build/native/garp-socket.node'];

let addon: GarpAddon | Error | null = null;

/** The garp-socket addon, or why it cannot be loaded (loaded once per process). */
export function loadGarpAddon(): GarpAddon | Error {
  addon ??= loadAddonFrom(ADDON_PATHS);
  return addon;
}

/** The addon from the first of `paths` (relative to this module) that loads, or why none did. */
export function loadAddonFrom(paths: readonly string[]): GarpAddon | Error {
  const require = createRequire(import.meta.url);
  let last: Error | null = null;
  for (const p of paths) {
    try {
      return require(p) as GarpAddon;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'MODULE_NOT_FOUND') last = err as Error;
    }
  }
  return new Error(last === null ? 'garp-socket addon not built (npm run build compiles it)' : `garp-socket addon not loadable: ${last.message}`);
}

/** Ethernet broadcast, the destination of a gratuitous ARP. */
const BROADCAST = Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
/** The shortest Ethernet frame without its FCS: an ARP frame is padded to it. */
export const GARP_FRAME_BYTES = 60;

/**
 * A gratuitous ARP request (RFC 5227 §3 "ARP Announcement", as arping -U and keepalived send it):
 * Ethernet broadcast from `mac`, type 0x0806; ARP htype 1 (Ethernet), ptype 0x0800, hlen 6, plen 4,
 * op 1 (request); sender = (`mac`, `vip`), target = (zero MAC, `vip`); zero-padded to 60 bytes.
 */
export function garpFrame(mac: Buffer, vip: string): Buffer {
  if (mac.length !== 6) throw new RangeError(`mac: expected 6 bytes, received ${mac.length}`);
  if (!net.isIPv4(vip)) throw new RangeError(`vip: expected an IPv4 address, received ${JSON.stringify(vip)}`);
  const ip = Buffer.from(vip.split('.').map(Number));
  const f = Buffer.alloc(GARP_FRAME_BYTES);
  BROADCAST.copy(f, 0);
  mac.copy(f, 6);
  f.writeUInt16BE(0x0806, 12);
  f.writeUInt16BE(1, 14);
  f.writeUInt16BE(0x0800, 16);
  f[18] = 6;
  f[19] = 4;
  f.writeUInt16BE(1, 20);
  mac.copy(f, 22);
  ip.copy(f, 28);
  ip.copy(f, 38);
  return f;
}

export interface LinuxTakeoverOptions {
  /** IPv4 address of the VIP. */
  readonly vip: string;
  /** Prefix length of the VIP's subnet on the interface (e.g. 24). */
  readonly prefix: number;
  /** The interface the VIP is added to (e.g. eth0). */
  readonly interface: string;
  /** Gratuitous ARPs per burst (default GARP_COUNT). */
  readonly garpCount?: number;
  /** Delay of the second burst; 0: no second burst (default GARP_DELAY_MS). */
  readonly garpDelayMs?: number;
  readonly clock: Clock;
  /** Run every command in this network namespace (`ip -n`, `ip netns exec`): for tests. */
  readonly netns?: string;
  /** Which arping is installed; detected from its help text when not given. */
  readonly arping?: ArpingFlavour;
  /** `auto` (default): the packet socket, arping when it cannot be had; `arping`: always arping. */
  readonly garp?: GarpMode;
  /** A gratuitous ARP burst that failed after acquire() had resolved (the VIP is up regardless). */
  readonly onError?: (err: TakeoverError) => void;
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  error: NodeJS.ErrnoException | null;
}

function run(command: string, args: readonly string[], timeoutMs: number, started?: (child: ChildProcess) => void): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(command, [...args], { timeout: timeoutMs }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : null) : 0;
      const error = err && typeof err.code !== 'number' ? (err as NodeJS.ErrnoException) : null;
      resolve({ code, stdout: String(stdout), stderr: String(stderr), error });
    });
    started?.(child);
  });
}

function commandLine(command: string, args: readonly string[]): string {
  return [command, ...args].join(' ');
}

function failure(command: string, args: readonly string[], r: Run): TakeoverError {
  const what =
    r.error !== null
      ? `${r.error.code === 'ENOENT' ? 'not installed' : r.error.message}`
      : `exit ${r.code ?? 'by signal'}${r.stderr.trim() ? `: ${r.stderr.trim()}` : ''}`;
  return new TakeoverError(commandLine(command, args), what, r.error ? { cause: r.error } : undefined);
}

let detected: Promise<ArpingFlavour> | null = null;

/** Which arping `PATH` holds: Habets' prints its name in its usage text, iputils' its package name. */
export function detectArping(): Promise<ArpingFlavour> {
  detected ??= run('arping', ['-h'], IP_TIMEOUT_MS).then((r) => (/habets/i.test(r.stdout + r.stderr) ? 'habets' : 'iputils'));
  return detected;
}

/** The arping argv for one burst of `count` gratuitous ARPs announcing `vip` on `iface`. */
export function arpingArgs(flavour: ArpingFlavour, iface: string, vip: string, count: number): string[] {
  return flavour === 'habets'
    ? ['-q', '-U', '-S', vip, '-c', String(count), '-W', String(GARP_INTERVAL_MS / 1000), '-i', iface, vip]
    : ['-q', '-U', '-c', String(count), '-I', iface, vip];
}

/** Adds the VIP to an interface and announces it (see the module comment). */
export class LinuxTakeover implements IdentityTakeover {
  readonly #o: LinuxTakeoverOptions;
  readonly #count: number;
  readonly #delayMs: number;
  readonly #serial = new Serial();
  #held = false;
  #second: TimerHandle | null = null;
  readonly #arpings = new Set<ChildProcess>();
  /** The open packet socket and the frame it sends, or null: arping. */
  #socket: { readonly addon: GarpAddon; readonly fd: number; readonly ifindex: number; readonly frame: Buffer; readonly netlink: number } | null = null;
  readonly #vipU32: number;
  #announcer: Announcer;
  /** The packet-socket burst's pending sends. */
  readonly #sends = new Set<TimerHandle>();

  constructor(o: LinuxTakeoverOptions) {
    if (!net.isIPv4(o.vip)) throw new RangeError(`vip: expected an IPv4 address, received ${JSON.stringify(o.vip)}`);
    if (!Number.isInteger(o.prefix) || o.prefix < 0 || o.prefix > 32) throw new RangeError(`prefix: expected 0-32, received ${o.prefix}`);
    if (!/^[A-Za-z0-9_.:@-]{1,15}$/.test(o.interface)) throw new RangeError(`interface: expected an interface name, received ${JSON.stringify(o.interface)}`);
    this.#o = o;
    this.#count = o.garpCount ?? GARP_COUNT;
    this.#delayMs = o.garpDelayMs ?? GARP_DELAY_MS;
    if (!Number.isInteger(this.#count) || this.#count < 1) throw new RangeError(`garpCount: expected an integer >= 1, received ${this.#count}`);
    this.#vipU32 = o.vip.split('.').reduce((a, x) => a * 256 + Number(x), 0);
    this.#announcer = this.#openSocket(o.garp ?? 'auto');
  }

  /** Which sender announces the VIP (the packet socket, or arping and why). */
  get announcer(): Announcer {
    return this.#announcer;
  }

  #openSocket(mode: GarpMode): Announcer {
    if (mode === 'arping') return { via: 'arping', reason: 'configured (garp: arping)' };
    const a = loadGarpAddon();
    if (a instanceof Error) return { via: 'arping', reason: a.message };
    try {
      const ns = this.#o.netns === undefined ? undefined : `/run/netns/${this.#o.netns}`;
      const s = a.open(this.#o.interface, ns);
      let netlink = -1;
      try {
        netlink = a.netlink(ns);
      } catch {
        // `ip` adds and removes the address then.
      }
      this.#socket = { addon: a, fd: s.fd, ifindex: s.ifindex, frame: garpFrame(s.mac, this.#o.vip), netlink };
      return { via: 'packet-socket' };
    } catch (err) {
      return { via: 'arping', reason: `packet socket on ${this.#o.interface}: ${(err as Error).message}` };
    }
  }

  /**
   * Closes the packet socket (after release(): a takeover without it would use arping). Idempotent.
   */
  close(): void {
    const s = this.#socket;
    if (s === null) return;
    this.#socket = null;
    this.#announcer = { via: 'arping', reason: 'closed' };
    s.addon.close(s.fd);
    if (s.netlink >= 0) s.addon.close(s.netlink);
  }

  get acquired(): boolean {
    return this.#held;
  }

  /**
   * `ip addr add` (an address already there, left by a crash, counts as added), then the first
   * gratuitous ARP burst; resolves once arping has started, rejects with TakeoverError when the
   * address cannot be added or arping cannot be started (the address is removed again then). The burst's own failure, and the second
   * burst's, go to `onError`.
   */
  acquire(): Promise<void> {
    return this.#serial.run(async () => {
      if (this.#held) return;
      if (!this.#netlinkAddr(true)) {
        const args = this.#ipArgs('add');
        const r = await run('ip', args, IP_TIMEOUT_MS);
        if (r.code !== 0 && !ALREADY_ADDED.test(r.stderr)) throw failure('ip', args, r);
      }
      this.#held = true;
      try {
        await this.#burst(true);
      } catch (err) {
        // Not announced: the address comes off again, or a failed takeover would leave it here.
        this.#held = false;
        if (!this.#netlinkAddr(false)) await run('ip', this.#ipArgs('del'), IP_TIMEOUT_MS);
        throw err;
      }
      if (this.#delayMs > 0 && this.#held) {
        this.#second = this.#o.clock.setTimeout(() => {
          this.#second = null;
          if (this.#held) void this.#burst(false);
        }, this.#delayMs);
      }
    });
  }

  /** Cancels pending announcements and removes the VIP (an address already gone counts as removed). */
  release(): Promise<void> {
    return this.#serial.run(async () => {
      this.#second?.cancel();
      this.#second = null;
      for (const t of this.#sends) t.cancel();
      this.#sends.clear();
      for (const child of this.#arpings) child.kill('SIGTERM');
      this.#arpings.clear();
      if (!this.#held) return;
      this.#held = false;
      if (this.#netlinkAddr(false)) return;
      const args = this.#ipArgs('del');
      const r = await run('ip', args, IP_TIMEOUT_MS);
      if (r.code !== 0 && !ALREADY_REMOVED.test(r.stderr)) throw failure('ip', args, r);
    });
  }

  /**
   * `ip addr add|del` as one netlink request on the socket opened with the packet socket (no process
   * started). True when done (an address already there, or already gone, counts); false when there
   * is no such socket or the kernel refused: the caller runs `ip`, whose error message says why.
   */
  #netlinkAddr(add: boolean): boolean {
    const s = this.#socket;
    if (s === null || s.netlink < 0) return false;
    try {
      const errno = s.addon.addr(s.netlink, add, s.ifindex, this.#vipU32, this.#o.prefix);
      return errno === 0 || errno === (add ? EEXIST : EADDRNOTAVAIL);
    } catch {
      return false;
    }
  }

  #ipArgs(op: 'add' | 'del'): string[] {
    const ns = this.#o.netns === undefined ? [] : ['-n', this.#o.netns];
    return [...ns, 'addr', op, `${this.#o.vip}/${this.#o.prefix}`, 'dev', this.#o.interface];
  }

  /**
   * Sends gratuitous ARP number `i` of a burst through the packet socket now and schedules the next
   * GARP_INTERVAL_MS later. False when the send failed: the socket is closed, the failure reported,
   * and the caller falls back to arping (for this burst and every later one).
   */
  #sendFrames(i: number): boolean {
    const s = this.#socket!;
    try {
      s.addon.send(s.fd, s.ifindex, s.frame);
    } catch (err) {
      this.close();
      this.#announcer = { via: 'arping', reason: `packet socket send failed: ${(err as Error).message}` };
      this.#o.onError?.(new TakeoverError(`gratuitous ARP on ${this.#o.interface} (packet socket)`, `${(err as Error).message}; arping from now on`, { cause: err }));
      if (i === 0) return false;
      if (this.#held) void this.#burst(false);
      return true;
    }
    if (i + 1 < this.#count) {
      const t = this.#o.clock.setTimeout(() => {
        this.#sends.delete(t);
        if (this.#held && this.#socket === s) this.#sendFrames(i + 1);
      }, GARP_INTERVAL_MS);
      this.#sends.add(t);
    }
    return true;
  }

  /**
   * Starts one arping burst. `awaitSpawn`: resolve once it runs, reject when it cannot start
   * (the first burst, inside acquire); otherwise every failure goes to onError.
   */
  async #burst(awaitSpawn: boolean): Promise<void> {
    if (this.#socket !== null && this.#sendFrames(0)) return;
    const flavour = this.#o.arping ?? (await detectArping());
    const argv = arpingArgs(flavour, this.#o.interface, this.#o.vip, this.#count);
    const [command, args] = this.#o.netns === undefined ? ['arping', argv] : ['ip', ['netns', 'exec', this.#o.netns, 'arping', ...argv]];
    // Habets' arping exits 1 when nobody answered, which is the point of an unsolicited ARP.
    const ok = (r: Run): boolean => r.error === null && (r.code === 0 || (r.code === 1 && r.stderr.trim() === ''));
    const burstMs = this.#count * (flavour === 'habets' ? GARP_INTERVAL_MS : 1000) + IP_TIMEOUT_MS;
    let child: ChildProcess | null = null;
    const finished = run(command, args, burstMs, (c) => {
      child = c;
      this.#arpings.add(c);
    });
    const report = finished.then((r) => {
      if (child) this.#arpings.delete(child);
      if (ok(r) || (child as ChildProcess | null)?.killed) return null;
      return failure(command, args, r);
    });
    if (!awaitSpawn) {
      void report.then((err) => err && this.#o.onError?.(err));
      return;
    }
    const spawned = await new Promise<Error | null>((resolve) => {
      const c = child as ChildProcess | null;
      if (c === null) return resolve(new Error('not started'));
      c.once('spawn', () => resolve(null));
      c.once('error', (err) => resolve(err));
    });
    if (spawned !== null) {
      const err = await report;
      throw err ?? new TakeoverError(commandLine(command, args), spawned.message, { cause: spawned });
    }
    void report.then((err) => err && this.#o.onError?.(err));
  }
}
