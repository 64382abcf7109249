/**
 * @module HAProxy (Debian package `haproxy`, 2.6) as the peer the HTTP proxy benchmark measures
 * holdfast against: writes a config into a temp dir and runs it in the foreground.
 *
 * The config is HAProxy at its single-threaded best for this workload, so the ratio is honest:
 * one thread (holdfast's HTTP path is one Node event loop), keep-alive on both sides, server
 * connections reused across client connections (`http-reuse always`), no logging. `option forwardfor`
 * is on because holdfast adds X-Forwarded-For (and Forwarded) by default: both proxies then edit
 * every request head.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { startProcess, waitForPort, type Proc } from './procs.js';

export interface HaproxyRoute {
  /** Frontend/backend name suffix: letters, digits, "-", "_". */
  readonly name: string;
  /** 127.0.0.1:<listenPort> is the frontend. */
  readonly listenPort: number;
  readonly origin: { readonly host: string; readonly port: number };
  /**
   * More servers after `origin`, balanced round-robin with it (default none). Named origin-1,
   * origin-2...; the first stays `origin`.
   */
  readonly moreOrigins?: readonly { readonly host: string; readonly port: number }[];
  /** Appended to every `server` line, e.g. 'check inter 100ms fall 1 rise 1' (default none). */
  readonly serverParams?: string;
  /** Extra lines for the backend section, e.g. 'retries 3', 'option redispatch 1' (default none). */
  readonly backendLines?: readonly string[];
  /** Appended to the frontend's bind line, e.g. 'ssl crt /x.pem alpn http/1.1' (default none). */
  readonly bindParams?: string;
}

export interface HaproxyOptions {
  readonly routes: readonly HaproxyRoute[];
  /** Directory for haproxy.cfg (a temp dir). */
  readonly dir: string;
  /** Path to haproxy; default from PATH (or /usr/sbin). */
  readonly haproxy?: string;
  /** Add X-Forwarded-For like holdfast does (default true). */
  readonly forwardFor?: boolean;
  /** global maxconn; default MAXCONN, lowered to what the FD hard limit allows (fdLimitedMaxconn). */
  readonly maxconn?: number;
  /** HAProxy threads (default 1: against one holdfast event loop). */
  readonly nbthread?: number;
}

/** The global maxconn we ask for: far above the benchmark's 32 connections, so it never limits. */
export const MAXCONN = 10_000;
/** FDs HAProxy wants beyond two per connection (listeners, pollers, stdio): 2.6 asked for 15 here. */
const HAPROXY_SPARE_FDS = 64;

/**
 * MAXCONN, or less when this process's hard RLIMIT_NOFILE cannot hold two FDs per connection:
 * HAProxy 2.6 refuses to start (ALERT "FD limit too low for maxconn") rather than lowering it, and
 * some machines (this one: 20000) cap the hard limit just below what maxconn 10000 needs (20015).
 */
export function fdLimitedMaxconn(wanted = MAXCONN): number {
  let hard = Number.POSITIVE_INFINITY;
  try {
    const m = /^Max open files\s+\S+\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    if (m) hard = Number(m[1]);
  } catch {
    // Not Linux: trust the default.
  }
  return Math.max(1, Math.min(wanted, Math.floor((hard - HAPROXY_SPARE_FDS) / 2)));
}

/** The haproxy.cfg text for `routes`. */
export function haproxyConfig(routes: readonly HaproxyRoute[], forwardFor = true, maxconn = MAXCONN, nbthread = 1): string {
  const lines = [
    'global',
    `    nbthread ${nbthread}`,
    `    maxconn ${maxconn}`,
    '',
    'defaults',
    '    mode http',
    '    timeout connect 5s',
    '    timeout client 30s',
    '    timeout server 30s',
    '    option http-keep-alive',
    '    http-reuse always',
    ...(forwardFor ? ['    option forwardfor'] : []),
  ];
  for (const r of routes) {
    if (!/^[A-Za-z0-9_-]+$/.test(r.name)) throw new Error(`haproxy route name "${r.name}": expected letters, digits, "_" or "-"`);
    lines.push(
      '',
      `frontend fe_${r.name}`,
      `    bind 127.0.0.1:${r.listenPort}${r.bindParams ? ` ${r.bindParams}` : ''}`,
      `    default_backend be_${r.name}`,
      '',
      `backend be_${r.name}`,
      ...(r.backendLines ?? []).map((l) => `    ${l}`),
      ...[r.origin, ...(r.moreOrigins ?? [])].map(
        (o, i) => `    server ${i === 0 ? 'origin' : `origin-${i}`} ${o.host}:${o.port}${r.serverParams ? ` ${r.serverParams}` : ''}`,
      ),
    );
  }
  return `${lines.join('\n')}\n`;
}

/** Writes the config and starts `haproxy -f cfg -db`; resolves once every frontend accepts. */
export async function startHaproxy(opts: HaproxyOptions): Promise<Proc> {
  if (opts.routes.length === 0) throw new Error('haproxy: no routes');
  const cfg = path.join(opts.dir, 'haproxy.cfg');
  writeFileSync(cfg, haproxyConfig(opts.routes, opts.forwardFor ?? true, fdLimitedMaxconn(opts.maxconn), opts.nbthread ?? 1));
  const [first, ...rest] = opts.routes;
  const proc = await startProcess({
    name: 'haproxy',
    command: opts.haproxy ?? 'haproxy',
    args: ['-f', cfg, '-db'],
    readyPort: { host: '127.0.0.1', port: first!.listenPort },
  });
  try {
    for (const r of rest) await waitForPort('127.0.0.1', r.listenPort);
  } catch (err) {
    await proc.stop();
    throw err;
  }
  return proc;
}
