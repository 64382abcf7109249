/**
 * @module Composition root of `holdfast demo`: a live cluster on loopback in one command (DESIGN).
 * Three demo origins; two dispatchers in one election group (issue 7) whose VIP is a 127/8 address
 * (takeover: loopback), the demo service moving with it — the master binds it on the VIP, the backup
 * waits; each dispatcher with its own admin API; a little traffic of the demo's own through the VIP
 * so that the status pages and the metrics move. It prints which dispatcher is master, and every
 * change of master. Runs until aborted, then closes everything (backup first, so that closing does
 * not hand the VIP over on the way out).
 *
 * The dashboard of each dispatcher (its admin address, `/`) has two demo actions, also at
 * POST /api/v1/actions/{kill-backend,kill-master}: kill a backend (its server closes; it is started
 * again on the same port DEMO_RESTART_MS later), and kill the master dispatcher (in this process
 * it is stopped as on SIGTERM, so it resigns and the backup takes over after Skew_Time; it is
 * started again DEMO_RESTART_MS later and, being preferred, takes the VIP back).
 *
 * Both dispatchers run in this process: the diagnostics channels are process-wide, so only the
 * first one logs (the second one's log would repeat every line), and each one's metrics count the
 * events of both.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatHostPort } from '../core/address.js';
import { realClock } from '../core/clock.js';
import { z } from 'zod';
import { configSchema, type Config } from '../config/schema.js';
import { ApiError, validate } from '../admin/api-http.js';
import type { AdminAction } from '../admin/api-v1.js';
import { startDispatcher, type DispatcherHandle } from '../dispatcher/dispatcher.js';
import { createLogger } from '../admin/log.js';
import type { GroupStatus } from '../admin/status.js';
import { startDemoBackend, type DemoBackend } from './demo-backend.js';

export interface DemoOptions {
  /**
   * The service listens on the VIP at portBase; dispatcher 1's admin API on portBase + 1,
   * dispatcher 2's on portBase + 2; their election sockets (UDP, and TCP for state replication) on
   * portBase + 3 and portBase + 4 of 127.0.0.1.
   */
  portBase?: number;
  /** The group's VIP, an address in 127.0.0.0/8. */
  vip?: string;
  signal?: AbortSignal;
  out?: (line: string) => void;
  /** Interval of the demo's own requests. */
  trafficIntervalMs?: number;
}

export const DEMO_PORT_BASE = 8080;
export const DEMO_VIP = '127.0.0.10';
export const DEMO_TRAFFIC_INTERVAL_MS = 1000;
/** The demo's election group. */
export const DEMO_GROUP = 'demo-vip';
/** The demo's backends are watched by pull hellos this often (survey Fig. 5). */
export const DEMO_PULL_INTERVAL_MS = 250;
/** A killed backend or dispatcher is started again this long after. */
export const DEMO_RESTART_MS = 5000;
/** How often the demo looks at the group's state to report a change of master. */
const MASTER_POLL_MS = 100;
/** Dispatcher 1 is preferred (VRRP priority); dispatcher 2 takes over when it is gone. */
const PRIORITIES = [200, 100] as const;

function get(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve(`${res.statusCode} ${body.trim()}`));
    });
    req.on('error', reject);
    req.setTimeout(2000, () => req.destroy(new Error('timeout')));
  });
}

/** One dispatcher's configuration: the same service and group, its own id, admin port and election socket. */
function dispatcherConfig(i: 0 | 1, base: number, vip: string, keyFile: string, backends: readonly DemoBackend[]): Config {
  const election = (n: number): string => `127.0.0.1:${base + 3 + n}`;
  return configSchema.parse({
    logging: { level: 'info', format: 'pretty' },
    admin: { listen: `127.0.0.1:${base + 1 + i}` },
    cluster: { keyFile },
    dispatcher: { id: i + 1 },
    groups: [
      {
        name: DEMO_GROUP,
        id: 1,
        vip,
        takeover: 'loopback',
        priority: PRIORITIES[i],
        listen: election(i),
        peers: [election(1 - i)],
        services: ['demo-web'],
      },
    ],
    services: [
      {
        name: 'demo-web',
        protocol: 'http',
        listen: `${vip}:${base}`,
        balancer: 'least-connections',
        backends: backends.map((b) => ({ id: b.id, address: formatHostPort(b.address) })),
        // Pull hellos every 250 ms: a killed backend is down after 4 missed replies (1 s), traffic or not;
        // a refused request takes it out at once (passive reports count in every mode).
        health: { probe: { type: 'http', path: '/health', intervalMs: 500 }, detector: { type: 'pull', intervalMs: DEMO_PULL_INTERVAL_MS, n: 4 } },
      },
    ],
  });
}

/** "dispatcher 1 (epoch 3)", or "none" while the group has no master yet. */
function describeMaster(groups: readonly (GroupStatus | undefined)[]): string {
  const masters = groups.flatMap((g, i) => (g?.state === 'master' && g.vipHeld ? [`dispatcher ${i + 1} (epoch ${g.epoch})`] : []));
  return masters.length === 0 ? 'none' : masters.join(' and ');
}

export async function runDemo(options: DemoOptions = {}): Promise<void> {
  const out = options.out ?? ((line: string) => console.log(line));
  const base = options.portBase ?? DEMO_PORT_BASE;
  const vip = options.vip ?? DEMO_VIP;
  const backends: DemoBackend[] = [];
  const dispatchers: DispatcherHandle[] = [];
  // The group's adverts and replicated state are authenticated with the cluster key: a fresh one.
  const keyDir = mkdtempSync(join(tmpdir(), 'holdfast-demo-'));
  try {
    const keyFile = join(keyDir, 'cluster.key');
    writeFileSync(keyFile, randomBytes(32), { mode: 0o600 });
    for (const id of ['alpha', 'beta', 'gamma']) backends.push(await startDemoBackend(id));
    const configs = [dispatcherConfig(0, base, vip, keyFile, backends), dispatcherConfig(1, base, vip, keyFile, backends)];
    const logger = createLogger(configs[0]!.logging);
    const restarts = new Set<ReturnType<typeof realClock.setTimeout>>();
    const later = (fn: () => Promise<void>): void => {
      const timer = realClock.setTimeout(() => {
        restarts.delete(timer);
        if (!options.signal?.aborted) fn().catch((err: Error) => out(`restart failed: ${err.message}`));
      }, DEMO_RESTART_MS);
      restarts.add(timer);
    };
    /** Dispatchers stopped by kill-master, by index, until their restart. */
    const down = new Set<number>();
    const actions = new Map<string, AdminAction>([
      [
        'kill-backend',
        {
          description: `close a demo backend's server (started again ${DEMO_RESTART_MS} ms later on the same port)`,
          run: async (body) => {
            const { backend } = validate(z.object({ backend: z.string() }).strict(), body, 'body');
            const i = backends.findIndex((b) => b.id === backend);
            if (i < 0) throw new ApiError(400, 'bad request', [{ path: 'body.backend', message: `no demo backend "${backend}"` }]);
            const victim = backends[i]!;
            await victim.close();
            out(`killed backend ${backend}`);
            later(async () => {
              backends[i] = await startDemoBackend(victim.id, victim.address.host, victim.address.port);
              out(`backend ${backend} started again`);
            });
            return { killed: backend, restartInMs: DEMO_RESTART_MS };
          },
        },
      ],
      [
        'kill-master',
        {
          description: `stop the master dispatcher (it resigns as on SIGTERM; the backup takes over; started again ${DEMO_RESTART_MS} ms later)`,
          run: async () => {
            const i = dispatchers.findIndex((d, n) => !down.has(n) && groupOf(d)?.state === 'master');
            if (i < 0) throw new ApiError(409, 'no master dispatcher right now');
            down.add(i);
            // Stopped once this answer is written: the call may have come to the master's own admin
            // listener (its dashboard's button), which the stop closes.
            const stopped = new Promise<void>((resolve) => {
              setImmediate(() => {
                void dispatchers[i]!.close().then(() => {
                  out(`killed dispatcher ${i + 1}`);
                  resolve();
                });
              });
            });
            later(async () => {
              await stopped;
              dispatchers[i] = await startDispatcher(configs[i]!, { adminActions: actions, ...(i === 0 ? { logger } : {}) });
              down.delete(i);
              out(`dispatcher ${i + 1} started again`);
            });
            return { killed: `dispatcher ${i + 1}`, restartInMs: DEMO_RESTART_MS };
          },
        },
      ],
    ]);
    const groupOf = (d: DispatcherHandle): GroupStatus | undefined => d.status().groups?.find((g) => g.name === DEMO_GROUP);
    dispatchers.push(await startDispatcher(configs[0]!, { logger, adminActions: actions }));
    dispatchers.push(await startDispatcher(configs[1]!, { adminActions: actions }));
    const service = `http://${formatHostPort(dispatchers[0]!.serviceAddress('demo-web'))}/`;
    const admin = (d: DispatcherHandle): string => (d.adminAddress ? `http://${formatHostPort(d.adminAddress)}` : '(disabled)');
    out('holdfast demo is running: three origins behind two dispatchers sharing one VIP, on loopback.');
    out(`  service:  ${service}          try: curl ${service}`);
    dispatchers.forEach((d, i) => {
      out(`  dispatcher ${i + 1} (priority ${PRIORITIES[i]}): status ${admin(d)}/api/v1/status  metrics ${admin(d)}/metrics`);
    });
    dispatchers.forEach((d, i) => out(`  dashboard ${i + 1}: ${admin(d)}/   (buttons: kill a backend, kill the master dispatcher)`));
    out('Press Ctrl-C to stop.');

    let master = 'none';
    const watch = realClock.setInterval(() => {
      const now = describeMaster(dispatchers.map((d, i) => (down.has(i) ? undefined : groupOf(d))));
      if (now === master) return;
      master = now;
      out(`group ${DEMO_GROUP} (VIP ${vip}): master is ${now}`);
    }, MASTER_POLL_MS);

    let n = 0;
    const traffic = realClock.setInterval(() => {
      n++;
      get(`${service}demo/${n}`).then(
        (line) => out(`demo request ${n}: ${line}`),
        (err: Error) => out(`demo request ${n} failed: ${err.message}`),
      );
    }, options.trafficIntervalMs ?? DEMO_TRAFFIC_INTERVAL_MS);

    await new Promise<void>((resolve) => {
      if (options.signal?.aborted) resolve();
      options.signal?.addEventListener('abort', () => resolve(), { once: true });
    });
    traffic.cancel();
    watch.cancel();
    for (const r of restarts) r.cancel();
    out('stopping...');
    while (dispatchers.length > 0) await dispatchers.pop()!.close();
    logger.flush?.();
  } finally {
    for (const d of dispatchers.reverse()) await d.close();
    await Promise.all(backends.map((b) => b.close()));
    rmSync(keyDir, { recursive: true, force: true });
  }
  out('stopped.');
}
