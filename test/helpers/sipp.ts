/**
 * @module Drives SIPp (Debian `sip-tester`, v3.6.1 here) from tests and benchmarks: `startUas` runs a
 * callee on a free loopback port, `runUac`/`startUac` places calls and returns what sipp's own
 * statistics file says (`-trace_stat -stf`, one row every `-fd`), never the screen. Every sipp runs
 * with `-nostdin` (no terminal), `-trace_err -error_file`, its control socket on loopback
 * (`-ci 127.0.0.1 -cp <free port>`; the default is 0.0.0.0:8888, then 8889...) and its files in a
 * temp dir of its own. Children start through bench/lib/procs.ts, whose exit hook kills whatever
 * is left when the harness dies; with `t`, the test's `t.after` stops them and removes the files.
 *
 * What sipp does, found by running it (v3.6.1; test/e2e/sipp-tooling.test.ts checks the answer
 * address, `[last_Via:]`, the uas's BYE, the unknown-BYE answers and exit codes 254/255 against the
 * real binary):
 * - A uas (`-t u1`) answers every request to the address the request came FROM (source IP and
 *   port), not to its top Via; in-dialog requests it sends itself (uas-bye.xml's BYE) also go to
 *   the source address of the call's first message, whatever the Request-URI and Route say. Over
 *   TCP everything goes back on the connection the INVITE came in on.
 * - `[last_Via:]` copies EVERY Via of the last received message, folded into one line
 *   ("Via: a, b", order kept), so a uas behind a proxy that added its own Via answers with both.
 *   `[last_Xxx:]` of a header the message lacks yields nothing and sipp drops the empty line
 *   (the fixtures copy `[last_Record-Route:]` into 2xx responses that way).
 * - The built-in uac sends INVITE, ACK and BYE all to the remote host of its command line, with
 *   that host in the Request-URI too: it ignores the callee's Contact and any Record-Route. Both
 *   built-ins carry SDP: in the INVITE and in the 200 (`m=audio [media_port] RTP/AVP 0`, PCMU);
 *   the built-in uas does NOT copy Record-Route and waits 4 s (timewait) after the BYE before a
 *   call counts as done. It answers a BYE of a call it never saw 200 OK (sipp's default behaviour
 *   for an unexpected BYE; `-default_behaviors all,-abortunexp` ignores it instead): a uac whose
 *   BYE lands on the wrong backend still "succeeds". uas-481.xml answers 481 there (RFC 3261
 *   12.2.2). Out-of-call scenarios (`-oocsf`) are refused in server mode.
 * - `-t t1`: one TCP connection (and for a uac one local socket) for all calls; `-t tn`: a new
 *   TCP connection per call, closed at its end (needs `-max_socket` below the fd limit or sipp
 *   refuses to start). A uac in TCP mode also listens on its `-p` port. `-t u1` is one UDP socket.
 * - With no `-p`, a uac binds 5060 (then 5061...): parallel runs would share it, so we always pick.
 *   A uas binds its media ports (`-mp`, default 6000 and +2, then 6004... when taken) even
 *   without `-rtp_echo`.
 * - Exit codes: 0 every call succeeded; 1 at least one call failed; 97 exit on an internal
 *   command; 99 normal exit without any call processed; 255 (-1) fatal error — including the
 *   `-timeout` of `-timeout_error` running out; 254 (-2) a socket could not be bound. Without
 *   `-timeout_error`, `-timeout` does not stop a uac whose calls are still retransmitting (it ran
 *   to the INVITE's 32 s timer B here). Calls still open when the timeout ends sipp are in
 *   `CurrentCall`, in neither SuccessfulCall nor FailedCall: `SippResult.unfinished`.
 * - Over TCP a uas counts the calls still in their timewait as failed (FailedTcpClosed) when the
 *   uac closes its connection at exit: judge calls by the uac's figures.
 * - SIGTERM: sipp writes its last statistics row and exits; SIGUSR1 stops placing calls and exits
 *   when the open ones end; SIGKILL writes nothing more.
 * - RTP (for issue 6): this build is "SCTP-PCAP-RTPSTREAM". `-rtp_echo` echoes whatever reaches
 *   `-mp` (and `-mp`+2) back to its sender; `<exec play_pcap_audio="/usr/share/sip-tester/g711a.pcap"/>`
 *   plays a capture (raw socket: root or CAP_NET_RAW) to the address and port of the peer's SDP,
 *   with `[auto_media_port]` in the offer; `<exec rtp_stream="file.pcma,loops,8"/>` streams a raw
 *   8 kHz file from `-mp`. No TLS (no `-t l1`).
 */
import dgram from 'node:dgram';
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { makeTempDir, removeTempDir, requirePeers, startProcess, type Exit, type Proc } from '../../bench/lib/procs.js';

export type SippTransport = 'udp' | 'tcp';

/** The scenario files, read from the source tree (tsc does not copy them to dist/). */
export const SIPP_FIXTURES = fileURLToPath(new URL('../../../test/fixtures/sipp/', import.meta.url));

/** Absolute path of a scenario in test/fixtures/sipp, e.g. `fixture('uac-cancel.xml')`. */
export function fixture(name: string): string {
  return path.join(SIPP_FIXTURES, name);
}

/** How often a uas writes a statistics row: how stale `stats()`/`calls()` can be. */
export const UAS_STAT_PERIOD_MS = 100;
/** A started sipp must have bound its port within this. */
const BIND_TIMEOUT_MS = 5_000;
const BIND_POLL_MS = 10;
/** Attempts at a free port when sipp loses the race for the one we picked (exit 254). */
const PORT_ATTEMPTS = 5;
/** After `timeoutS`, sipp gets this long to exit by itself before it is killed. */
const UAC_KILL_GRACE_MS = 10_000;
/** Characters of the error file kept in results. */
const ERROR_TAIL_CHARS = 4_000;
/** sipp refuses `-t tn` when -max_socket (default 50000) is not below the fd limit. */
const DEFAULT_MAX_SOCKET = 1_000;

/** sipp exit codes (`sipp -h`, "Exit codes"), as the process reports them (-1 → 255, -2 → 254). */
export const SIPP_EXIT = {
  allCallsOk: 0,
  someCallFailed: 1,
  internalCommand: 97,
  noCallProcessed: 99,
  fatal: 255,
  bindFailed: 254,
} as const;

let sippPath: string | null = null;
function sipp(): string {
  sippPath ??= requirePeers({ sipp: 'sip-tester' }).sipp;
  return sippPath;
}

// ---------------------------------------------------------------- statistics file

/** One row of sipp's `-trace_stat` file, the counters tests and benchmarks use. */
export interface SippStats {
  /** Wall-clock ms (epoch) the row was written at. */
  readonly atMs: number;
  /** Wall-clock ms (epoch) sipp started at. */
  readonly startMs: number;
  readonly totalCallCreated: number;
  readonly incomingCalls: number;
  readonly outgoingCalls: number;
  /** Calls open at this row. */
  readonly currentCalls: number;
  readonly successful: number;
  readonly failed: number;
  readonly retransmissions: number;
  readonly outOfCallMsgs: number;
  readonly deadCallMsgs: number;
  /** Mean of the scenario's first rtd="true" timer (built-in uac: INVITE → 200), ms; null before any. */
  readonly responseTimeMs: number | null;
  /** Failed calls by sipp's reason, cumulative (only the non-zero ones). */
  readonly failedBy: Readonly<Record<string, number>>;
  /** Every column of the row, as sipp named it ("SuccessfulCall(C)"...). */
  readonly raw: Readonly<Record<string, string>>;
}

/** "2026-11-23\t13:44:02.894765\t1795441442.894765" → epoch ms. */
function timeField(text: string | undefined): number {
  const epoch = text?.split('\t')[2];
  const n = epoch === undefined ? NaN : Number(epoch);
  return Number.isFinite(n) ? n * 1000 : NaN;
}

/** "00:00:01:234567" (hours:minutes:seconds:microseconds) → ms. */
function durationField(text: string | undefined): number | null {
  const m = /^(\d+):(\d+):(\d+):(\d+)$/.exec(text ?? '');
  if (!m) return null;
  return Number(m[1]) * 3_600_000 + Number(m[2]) * 60_000 + Number(m[3]) * 1000 + Number(m[4]) / 1000;
}

/**
 * Parses a `-trace_stat` file: a header line of ';'-separated names, then one row per `-fd`
 * period (and one at exit). A line still being written (no newline yet) is ignored.
 */
export function parseStatFile(text: string): SippStats[] {
  const lines = text.split('\n');
  lines.pop(); // after the last newline: empty, or a row being written
  const header = lines.shift()?.split(';');
  if (!header) return [];
  const rows: SippStats[] = [];
  for (const line of lines) {
    const values = line.split(';');
    if (values.length < header.length - 1) continue;
    const raw: Record<string, string> = {};
    header.forEach((name, i) => {
      if (name !== '') raw[name] = values[i] ?? '';
    });
    const num = (name: string): number => {
      const n = Number(raw[name]);
      return Number.isFinite(n) ? n : 0;
    };
    const failedBy: Record<string, number> = {};
    for (const name of Object.keys(raw)) {
      const m = /^Failed(\w+)\(C\)$/.exec(name);
      if (m && m[1] !== 'Call' && num(name) > 0) failedBy[m[1]!] = num(name);
    }
    rows.push({
      atMs: timeField(raw['CurrentTime']),
      startMs: timeField(raw['StartTime']),
      totalCallCreated: num('TotalCallCreated'),
      incomingCalls: num('IncomingCall(C)'),
      outgoingCalls: num('OutgoingCall(C)'),
      currentCalls: num('CurrentCall'),
      successful: num('SuccessfulCall(C)'),
      failed: num('FailedCall(C)'),
      retransmissions: num('Retransmissions(C)'),
      outOfCallMsgs: num('OutOfCallMsgs(C)'),
      deadCallMsgs: num('DeadCallMsgs(C)'),
      responseTimeMs: durationField(raw['ResponseTime1(C)']),
      failedBy,
      raw,
    });
  }
  return rows;
}

/** One message of a `-trace_msg` log. */
export interface LoggedMessage {
  /** Wall-clock ms (epoch) sipp logged it at (local time in the log, to the µs). */
  readonly atMs: number;
  readonly direction: 'sent' | 'received';
  readonly transport: string;
  /** "INVITE sip:..." or "SIP/2.0 200 OK". */
  readonly firstLine: string;
  readonly callId: string | null;
  /** The message's bytes as sipp sent or received them (latin1, CRLFs and all). */
  readonly text: string;
}

/**
 * Parses a `-trace_msg` log: blocks that start with a line of dashes and a local timestamp, then
 * "UDP message received [n] bytes :" or "TCP message sent (n bytes):", a blank line, the message
 * exactly and the one newline sipp ends every entry with.
 */
export function parseMessageLog(text: string): LoggedMessage[] {
  const out: LoggedMessage[] = [];
  for (const block of text.split(/^-{20,} /m).slice(1)) {
    const m = /^(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)\.(\d+)\n(\w+) message (sent|received)[^\n]*\n\n([\s\S]*)$/.exec(block);
    if (!m) continue;
    const [, y, mo, d, h, mi, sec, frac, transport, direction, body] = m;
    const atMs = new Date(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(sec)).getTime() + Number(`0.${frac}`) * 1000;
    const message = body!.endsWith('\n') ? body!.slice(0, -1) : body!;
    out.push({
      atMs,
      direction: direction as 'sent' | 'received',
      transport: transport!,
      firstLine: message.slice(0, message.search(/\r?\n|$/)),
      callId: /^(?:Call-ID|i)[ \t]*:[ \t]*(\S+)/im.exec(message)?.[1] ?? null,
      text: message,
    });
  }
  return out;
}

/** The Call-IDs sipp's error file names (aborted calls: unexpected message, receive timeout...), in order. */
export function parseErrorCallIds(text: string): string[] {
  const ids = new Set<string>();
  for (const m of text.matchAll(/Call-Id(?::\s*|\s+')([^',\s]+)/g)) ids.add(m[1]!);
  return [...ids];
}

function readText(file: string): string {
  try {
    return readFileSync(file, 'latin1');
  } catch {
    return '';
  }
}

// ---------------------------------------------------------------- ports

function bindUdp(host: string, port: number): Promise<dgram.Socket | null> {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    s.once('error', () => {
      s.close();
      resolve(null);
    });
    s.bind(port, host, () => resolve(s));
  });
}

function listenTcp(host: string, port: number): Promise<net.Server | null> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(null));
    srv.listen({ host, port, exclusive: true }, () => resolve(srv));
  });
}

/**
 * A port free for both UDP and TCP on `host` a moment ago (SIP runs on both at one port number).
 * The race with other processes is handled by the callers: sipp exits 254 and they pick again.
 */
export async function freeSipPort(host = '127.0.0.1'): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const tcp = await listenTcp(host, 0);
    if (!tcp) continue;
    const port = (tcp.address() as net.AddressInfo).port;
    const udp = await bindUdp(host, port);
    await new Promise<void>((r) => tcp.close(() => r()));
    if (udp) {
      await new Promise<void>((r) => udp.close(() => r()));
      return port;
    }
  }
  throw new Error(`no port free for both UDP and TCP on ${host} after 50 attempts`);
}

/** `n` distinct ports, each free for both UDP and TCP a moment ago. */
export async function freeSipPorts(n: number, host = '127.0.0.1'): Promise<number[]> {
  const ports: number[] = [];
  while (ports.length < n) {
    const p = await freeSipPort(host);
    if (!ports.includes(p)) ports.push(p);
  }
  return ports;
}

/** A UDP port free a moment ago (sipp's control socket). */
async function freeUdpPort(host: string): Promise<number> {
  const s = await bindUdp(host, 0);
  if (!s) throw new Error(`cannot bind a UDP socket on ${host}`);
  const { port } = s.address();
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** /proc/net/{udp,tcp} hex of an IPv4 host:port, e.g. 0100007F:6202. */
function procAddress(host: string, port: number): string {
  const ip = host
    .split('.')
    .map((b) => Number(b).toString(16).toUpperCase().padStart(2, '0'))
    .reverse()
    .join('');
  return `${ip}:${port.toString(16).toUpperCase().padStart(4, '0')}`;
}

/** The socket inodes process `pid` holds open (from /proc/<pid>/fd). */
function socketInodes(pid: number): Set<string> {
  const inodes = new Set<string>();
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return inodes;
  }
  for (const fd of fds) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]!);
    } catch {
      // closed meanwhile
    }
  }
  return inodes;
}

/**
 * Whether process `pid` has a UDP socket (or a listening TCP socket) bound at host:port: the
 * /proc/net table row for the address whose inode is one of the process's sockets. Another
 * process holding the port does not count.
 */
function isBoundBy(pid: number, host: string, port: number, transport: SippTransport): boolean {
  const table = readText(transport === 'udp' ? '/proc/net/udp' : '/proc/net/tcp');
  const wanted = [procAddress(host, port), procAddress('0.0.0.0', port)];
  let inodes: Set<string> | null = null;
  for (const line of table.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (!wanted.includes(f[1] ?? '') || (transport === 'tcp' && f[3] !== '0A')) continue;
    inodes ??= socketInodes(pid);
    if (inodes.has(f[9] ?? '')) return true;
  }
  return false;
}

// ---------------------------------------------------------------- processes

interface SippRun {
  readonly proc: Proc;
  readonly dir: string;
  readonly statFile: string;
  readonly errorFile: string;
  readonly messageFile: string | null;
}

/** The options every sipp gets. */
function commonArgs(dir: string, host: string, controlPort: number, statPeriodMs: number, traceMessages: boolean): { args: string[]; run: Omit<SippRun, 'proc'> } {
  const statFile = path.join(dir, 'stat.csv');
  const errorFile = path.join(dir, 'errors.log');
  const messageFile = traceMessages ? path.join(dir, 'messages.log') : null;
  const args = [
    '-nostdin',
    '-i', host,
    '-ci', host,
    '-cp', String(controlPort),
    '-trace_stat', '-stf', statFile, '-fd', `${statPeriodMs}ms`,
    '-trace_err', '-error_file', errorFile,
    ...(messageFile ? ['-trace_msg', '-message_file', messageFile] : []),
  ];
  return { args, run: { dir, statFile, errorFile, messageFile } };
}

function scenarioArgs(scenario: string): string[] {
  return scenario === 'uac' || scenario === 'uas' ? ['-sn', scenario] : ['-sf', scenario];
}

function transportArgs(transport: SippTransport, perCall: boolean): string[] {
  if (transport === 'udp') return ['-t', 'u1'];
  return ['-t', perCall ? 'tn' : 't1', '-max_socket', String(DEFAULT_MAX_SOCKET)];
}

/**
 * Starts sipp with `-p <port>` and waits until the port is bound; picks another free port and
 * starts again when sipp loses the race for it (exit 254), if the port was ours to pick. A uac
 * (`mayFinish`) may be done before the bind is seen: any exit but 254 is then its result.
 */
async function spawnBound(
  name: string,
  host: string,
  requestedPort: number,
  transport: SippTransport,
  mayFinish: boolean,
  build: (port: number, controlPort: number) => { args: string[]; dir: string },
): Promise<{ proc: Proc; port: number; dir: string }> {
  let lastError: unknown;
  for (let attempt = 0; attempt < PORT_ATTEMPTS; attempt++) {
    const port = requestedPort !== 0 ? requestedPort : await freeSipPort(host);
    const { args, dir } = build(port, await freeUdpPort(host));
    const proc = await startProcess({ name, command: sipp(), args, cwd: dir });
    const deadline = Date.now() + BIND_TIMEOUT_MS;
    let exit: Exit | null = null;
    void proc.exited.then((e) => (exit = e));
    const bound = (): boolean => isBoundBy(proc.pid, host, port, transport);
    while (!bound() && exit === null && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, BIND_POLL_MS));
    }
    if (exit === null && bound()) return { proc, port, dir };
    if (mayFinish && exit !== null && (exit as Exit).code !== SIPP_EXIT.bindFailed) return { proc, port, dir };
    if (exit === null) {
      proc.child.kill('SIGKILL');
      await proc.exited;
    }
    const e = exit as Exit | null;
    const errors = readText(path.join(dir, 'errors.log')).slice(-ERROR_TAIL_CHARS);
    removeTempDir(dir);
    lastError = new Error(
      `${name}: ${e ? `exited (code ${e.code}, signal ${e.signal})` : `did not bind ${transport} ${host}:${port} within ${BIND_TIMEOUT_MS} ms`} ` +
        `— sipp ${args.join(' ')}\n${proc.output().slice(-2000)}\n${errors}`,
    );
    if (requestedPort !== 0 || e?.code !== SIPP_EXIT.bindFailed) break;
  }
  throw lastError;
}

// ---------------------------------------------------------------- uas

export interface UasOptions {
  readonly transport: SippTransport;
  /** Listening port; 0 or absent: a port free for both UDP and TCP. */
  readonly port?: number;
  /** 'uas' (sipp's built-in) or the path of a scenario file (see `fixture()`). Default 'uas'. */
  readonly scenario?: string;
  readonly host?: string;
  /** -mp: the media (RTP) port the uas announces and binds (and +2). Default: sipp's (6000...). */
  readonly mediaPort?: number;
  /** Keep every message sent and received (-trace_msg) for `messages()`. */
  readonly traceMessages?: boolean;
  /** More sipp arguments (`-rtp_echo`, `-d 500`...). */
  readonly extra?: readonly string[];
  /** Stop it and remove its files when this test ends. Without it, the caller stops it. */
  readonly t?: TestContext;
}

export interface SippUas {
  readonly host: string;
  readonly port: number;
  readonly transport: SippTransport;
  readonly proc: Proc;
  /** Resolves when sipp has exited, for any reason. */
  readonly stopped: Promise<Exit>;
  /** The latest statistics row (at most UAS_STAT_PERIOD_MS old), null before the first. */
  stats(): SippStats | null;
  /** Every statistics row so far (one per UAS_STAT_PERIOD_MS): how many calls came when. */
  rows(): SippStats[];
  /** Calls this uas has received (IncomingCall(C) of the latest row). */
  calls(): number;
  /** Polls until `calls()` reaches `n`; rejects after `timeoutMs` with what it saw. */
  waitForCalls(n: number, timeoutMs?: number): Promise<number>;
  /** The message log (traceMessages) or ''. */
  messages(): string;
  /** The message log parsed (traceMessages), or []. */
  loggedMessages(): LoggedMessage[];
  /** Unexpected messages and errors sipp logged (-trace_err). */
  errors(): string;
  /** Sends `signal` (default SIGTERM) and resolves when sipp has exited. SIGKILL: a crash. */
  kill(signal?: NodeJS.Signals): Promise<Exit>;
}

/** Starts a sipp uas and resolves once its port is bound. */
export async function startUas(opts: UasOptions): Promise<SippUas> {
  const host = opts.host ?? '127.0.0.1';
  const scenario = opts.scenario ?? 'uas';
  let files: Omit<SippRun, 'proc'> | null = null;
  const { proc, port, dir } = await spawnBound('sipp-uas', host, opts.port ?? 0, opts.transport, false, (p, controlPort) => {
    const d = makeTempDir('holdfast-sipp-uas');
    const common = commonArgs(d, host, controlPort, UAS_STAT_PERIOD_MS, opts.traceMessages ?? false);
    files = common.run;
    return {
      dir: d,
      args: [
        ...scenarioArgs(scenario),
        '-p', String(p),
        ...transportArgs(opts.transport, false),
        ...(opts.mediaPort !== undefined ? ['-mi', host, '-mp', String(opts.mediaPort)] : ['-mi', host]),
        ...common.args,
        ...(opts.extra ?? []),
      ],
    };
  });
  const run = files! as Omit<SippRun, 'proc'>;
  const rows = (): SippStats[] => parseStatFile(readText(run.statFile));
  const stats = (): SippStats | null => rows().at(-1) ?? null;
  const calls = (): number => stats()?.incomingCalls ?? 0;
  const kill = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<Exit> => {
    if (proc.child.exitCode === null && proc.child.signalCode === null) proc.child.kill(signal);
    return proc.exited;
  };
  const uas: SippUas = {
    host,
    port,
    transport: opts.transport,
    proc,
    stopped: proc.exited,
    stats,
    rows,
    calls,
    async waitForCalls(n, timeoutMs = 5_000) {
      const until = Date.now() + timeoutMs;
      for (;;) {
        const c = calls();
        if (c >= n) return c;
        if (Date.now() > until) throw new Error(`uas :${port} received ${c} calls, expected ${n}, within ${timeoutMs} ms\n${uas.errors()}`);
        await new Promise((r) => setTimeout(r, UAS_STAT_PERIOD_MS / 2));
      }
    },
    messages: () => (run.messageFile ? readText(run.messageFile) : ''),
    loggedMessages: () => (run.messageFile ? parseMessageLog(readText(run.messageFile)) : []),
    errors: () => readText(run.errorFile).slice(-ERROR_TAIL_CHARS),
    kill,
  };
  opts.t?.after(async () => {
    await kill('SIGKILL');
    removeTempDir(dir);
  });
  return uas;
}

/**
 * A SIP backend as a host runs one: a uas on UDP and a uas on TCP at the same port. holdfast's health
 * probe is TCP (or HTTP) only, so a UDP-only uas would be probed down at start; here the probe
 * finds the TCP one. `kill` stops both, as a crash of the host would.
 */
export interface SippBackend {
  readonly host: string;
  readonly port: number;
  readonly udp: SippUas;
  readonly tcp: SippUas;
  /** Calls received on both transports. */
  calls(): number;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

export async function startSipBackend(opts: Omit<UasOptions, 'transport' | 'port'> & { readonly port?: number }): Promise<SippBackend> {
  let lastError: unknown;
  for (let attempt = 0; attempt < PORT_ATTEMPTS; attempt++) {
    const udp = await startUas({ ...opts, transport: 'udp' });
    try {
      const tcp = await startUas({ ...opts, transport: 'tcp', port: udp.port });
      return {
        host: udp.host,
        port: udp.port,
        udp,
        tcp,
        calls: () => udp.calls() + tcp.calls(),
        async kill(signal: NodeJS.Signals = 'SIGTERM') {
          await Promise.all([udp.kill(signal), tcp.kill(signal)]);
        },
      };
    } catch (err) {
      // The TCP side of the port was taken meanwhile: try another port (unless one was asked for).
      lastError = err;
      await udp.kill('SIGKILL');
      if (opts.port !== undefined && opts.port !== 0) break;
    }
  }
  throw lastError;
}

// ---------------------------------------------------------------- uac

export interface UacOptions {
  /** "host:port" of holdfast (or of a uas, for a direct run). */
  readonly target: string;
  readonly transport: SippTransport;
  /** TCP only: a connection per call (-t tn) instead of one for all calls (-t t1). */
  readonly tcpConnectionPerCall?: boolean;
  /** -m: the uac exits after this many calls have ended. */
  readonly calls: number;
  /** -r: calls started per ratePeriodMs. */
  readonly rate: number;
  /** -rp, default 1000 (rate is then calls per second). */
  readonly ratePeriodMs?: number;
  /** 'uac' (built-in) or the path of a scenario file. Default 'uac'. */
  readonly scenario?: string;
  /** -timeout Ns -timeout_error: sipp exits 255 after this; it is killed UAC_KILL_GRACE_MS later. */
  readonly timeoutS: number;
  /** -d: length of the scenario's <pause/> (the built-in uac's call length), ms. */
  readonly callLengthMs?: number;
  /** -l: most calls open at once (sipp's default: 3 x call length (s) x rate). */
  readonly maxOpenCalls?: number;
  /** -fd: statistics row period, ms. Default 1000. */
  readonly statPeriodMs?: number;
  readonly host?: string;
  /** Local SIP port; 0 or absent: a free one (sipp would bind 5060 otherwise). */
  readonly port?: number;
  readonly traceMessages?: boolean;
  /** More sipp arguments (`-nr`, `-recv_timeout 3000`, `-mp 26000`...). */
  readonly extra?: readonly string[];
  readonly t?: TestContext;
}

export interface SippResult {
  /** sipp's exit code (SIPP_EXIT), null when killed by a signal. */
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly created: number;
  readonly successful: number;
  readonly failed: number;
  /** Calls still open when sipp stopped (timeout): counted neither successful nor failed by sipp. */
  readonly unfinished: number;
  readonly retransmissions: number;
  readonly outOfCallMsgs: number;
  readonly deadCallMsgs: number;
  readonly failedBy: Readonly<Record<string, number>>;
  /** From sipp's start to its last statistics row, seconds (µs resolution). */
  readonly durationS: number;
  /** Calls created per second over durationS. */
  readonly callRate: number;
  /** Every statistics row (one per statPeriodMs, one at exit). */
  readonly rows: readonly SippStats[];
  /** The end of sipp's stdout/stderr (its final screen, fatal errors). */
  readonly outputTail: string;
  /** The end of the error file (unexpected messages...). */
  readonly errors: string;
  /** Call-IDs of the calls sipp aborted, from the whole error file. */
  readonly failedCallIds: readonly string[];
  /** The message log (traceMessages) or ''. */
  readonly messages: string;
}

export interface SippUac {
  readonly port: number;
  readonly proc: Proc;
  /** The latest statistics row, null before the first. */
  stats(): SippStats | null;
  /** Resolves when sipp has exited. */
  readonly done: Promise<SippResult>;
  kill(signal?: NodeJS.Signals): void;
}

/** Starts a uac; `done` resolves with the result when it exits (it never rejects for failed calls). */
export async function startUac(opts: UacOptions): Promise<SippUac> {
  const host = opts.host ?? '127.0.0.1';
  let files: Omit<SippRun, 'proc'> | null = null;
  const { proc, port, dir } = await spawnBound('sipp-uac', host, opts.port ?? 0, opts.transport, true, (p, controlPort) => {
    const d = makeTempDir('holdfast-sipp-uac');
    const common = commonArgs(d, host, controlPort, opts.statPeriodMs ?? 1000, opts.traceMessages ?? false);
    files = common.run;
    return {
      dir: d,
      args: [
        opts.target,
        ...scenarioArgs(opts.scenario ?? 'uac'),
        '-p', String(p),
        ...transportArgs(opts.transport, opts.tcpConnectionPerCall ?? false),
        '-m', String(opts.calls),
        '-r', String(opts.rate),
        '-rp', `${opts.ratePeriodMs ?? 1000}ms`,
        ...(opts.callLengthMs !== undefined ? ['-d', `${opts.callLengthMs}ms`] : []),
        ...(opts.maxOpenCalls !== undefined ? ['-l', String(opts.maxOpenCalls)] : []),
        '-timeout', `${opts.timeoutS}s`, '-timeout_error',
        '-mi', host,
        ...common.args,
        ...(opts.extra ?? []),
      ],
    };
  });
  const run = files! as Omit<SippRun, 'proc'>;
  const killTimer = setTimeout(() => proc.child.kill('SIGKILL'), opts.timeoutS * 1000 + UAC_KILL_GRACE_MS);
  const done = proc.exited.then((exit): SippResult => {
    clearTimeout(killTimer);
    const result = uacResult(exit, run, proc);
    removeTempDir(dir);
    return result;
  });
  opts.t?.after(async () => {
    proc.child.kill('SIGKILL');
    await done;
  });
  return {
    port,
    proc,
    stats: () => parseStatFile(readText(run.statFile)).at(-1) ?? null,
    done,
    kill: (signal = 'SIGTERM') => {
      if (proc.child.exitCode === null && proc.child.signalCode === null) proc.child.kill(signal);
    },
  };
}

/** Places `calls` calls and resolves with sipp's statistics once it has exited. */
export async function runUac(opts: UacOptions): Promise<SippResult> {
  return (await startUac(opts)).done;
}

function uacResult(exit: Exit, run: Omit<SippRun, 'proc'>, proc: Proc): SippResult {
  const rows = parseStatFile(readText(run.statFile));
  const last = rows.at(-1);
  const durationS = last ? Math.max(0, (last.atMs - last.startMs) / 1000) : 0;
  const created = last?.totalCallCreated ?? 0;
  return {
    code: exit.code,
    signal: exit.signal,
    created,
    successful: last?.successful ?? 0,
    failed: last?.failed ?? 0,
    unfinished: last?.currentCalls ?? 0,
    retransmissions: last?.retransmissions ?? 0,
    outOfCallMsgs: last?.outOfCallMsgs ?? 0,
    deadCallMsgs: last?.deadCallMsgs ?? 0,
    failedBy: last?.failedBy ?? {},
    durationS,
    callRate: durationS > 0 ? created / durationS : 0,
    rows,
    outputTail: proc.output().slice(-2_000),
    errors: readText(run.errorFile).slice(-ERROR_TAIL_CHARS),
    failedCallIds: parseErrorCallIds(readText(run.errorFile)),
    messages: run.messageFile ? readText(run.messageFile) : '',
  };
}

/** One line for assertion messages: "code 1: 9/10 ok, 1 failed (MaxUDPRetrans 1), 0 unfinished, 3 retrans". */
export function describeResult(r: SippResult): string {
  const why = Object.entries(r.failedBy)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
  return (
    `code ${r.code}${r.signal ? ` (${r.signal})` : ''}: ${r.successful}/${r.created} ok, ${r.failed} failed${why ? ` (${why})` : ''}, ` +
    `${r.unfinished} unfinished, ${r.retransmissions} retransmissions, ${r.outOfCallMsgs} out-of-call` +
    (r.errors ? `\nerrors:\n${r.errors.slice(-1500)}` : '')
  );
}
