/**
 * @module The agent's composition root (`holdfast agent`): wires the UDP link to the dispatchers,
 * the heartbeat sender, the watchdog whose verdict sets the heartbeat flag, the load collector and
 * its sender, and the planned-failure drain (SARA III.E flag 3). Owns nothing else: process
 * concerns (signals, the pid file, exit codes) stay in the CLI.
 */
import type { Logger } from '../admin/log.js';
import type { AgentConfig } from '../config/agent-schema.js';
import { realClock, type Clock, type TimerHandle } from '../core/clock.js';
import type { Hanet } from '../hanet/hanet.js';
import type { HostSystem } from '../hanet/host-system.js';
import { DispatcherLink } from './dispatcher-link.js';
import { establishedConnections } from './drain.js';
import { HeartbeatSender } from './heartbeat-sender.js';
import { LoadCollector, STATS_TIMEOUT_MAX_MS, readProc, type ProcReader } from './load-collector.js';
import { LoadSender } from './load-sender.js';
import { probeFor, Watchdog } from './watchdog.js';

/**
 * A drain ends on idleness only after this many planned-failure announcements went out: with one,
 * a single lost datagram would turn the planned failure into a crash detected n x delta later (and
 * logged as one). The deadline still wins when it is shorter.
 */
export const DRAIN_MIN_ANNOUNCEMENTS = 3;

/** How often a draining agent looks for established connections on drain.port. */
export const DRAIN_POLL_MS = 50;

/** The last heartbeat before a stop gets this long to leave the socket. */
export const FINAL_FLUSH_MS = 100;

export type AgentState = 'running' | 'draining' | 'stopped';

/** Why the agent stopped: the drained node went idle, the drain deadline passed, or stop() was called. */
export type AgentExit = 'idle' | 'deadline' | 'stopped';

export interface AgentOptions {
  /** The cluster key (wire/cluster-key.ts). */
  key: Buffer;
  logger?: Logger;
  clock?: Clock;
  /** /proc reader, for the load collector and the drain's idleness check. */
  readProc?: ProcReader;
  /** HANet's access to ip, sysctl and arping (default: the real Linux host). */
  hostSystem?: HostSystem;
}

export interface Agent {
  readonly state: AgentState;
  /** The dispatchers as resolved at start (`address:port`). */
  readonly dispatchers: readonly string[];
  /**
   * Planned failure (SIGUSR2, `holdfast agent drain`): from now on every heartbeat says "planned
   * failure at <now>", so the dispatcher sends no new sessions; the agent stops when the application
   * has no established connection on drain.port, or when drain.deadlineMs has passed. Idempotent.
   */
  drain(): void;
  /** Stop now (SIGTERM, SIGINT): one last planned-failure heartbeat, then close. */
  stop(): Promise<void>;
  /** Settles when the agent has stopped, with the reason. */
  readonly done: Promise<AgentExit>;
  /** Link failover and the sibling transmission agent, when configured (`hanet:`). */
  readonly hanet: Hanet | null;
}

export async function startAgent(config: AgentConfig, opts: AgentOptions): Promise<Agent> {
  const clock = opts.clock ?? realClock;
  const log = opts.logger;

  let lastSendError: string | null = null;
  const link = await DispatcherLink.open(config.agent.dispatchers, {
    // One line per change of error, not one per heartbeat (up to 200 a second).
    onError: (err, dispatcher) => {
      const code = err.code ?? err.message;
      if (code === lastSendError) return;
      lastSendError = code;
      log?.warn({ dispatcher, code }, `cannot send to dispatcher ${dispatcher}: ${code}`);
    },
  });

  try {
    return await wire(config, opts, link, clock);
  } catch (err) {
    await link.close(0);
    throw err;
  }
}

async function wire(config: AgentConfig, opts: AgentOptions, link: DispatcherLink, clock: Clock): Promise<Agent> {
  const log = opts.logger;
  const { id: host, heartbeatIntervalMs } = config.agent;
  const heartbeats = new HeartbeatSender({ host, intervalMs: heartbeatIntervalMs, key: opts.key, sink: link, clock });

  const probe = probeFor(config.watchdog);
  let watchdog: Watchdog | null = null;
  if (probe === null) {
    heartbeats.setAppAvailable(true);
  } else {
    const wd = new Watchdog(probe, {
      periodMs: config.watchdog.periodMs,
      timeoutMs: config.watchdog.timeoutMs,
      failures: config.watchdog.failures,
      clock,
      onVerdict: (verdict, { failures, reason }) => {
        heartbeats.setAppAvailable(verdict === 'healthy');
        if (verdict === 'healthy') log?.info({ watchdog: config.watchdog.type }, 'application available');
        else log?.warn({ watchdog: config.watchdog.type, failures, reason }, `application unavailable (${failures} failed checks, last: ${reason ?? 'failed'})`);
      },
    });
    watchdog = wd;
    const first = await wd.start();
    heartbeats.setAppAvailable(first === 'healthy');
    if (first !== 'healthy') log?.warn({ watchdog: config.watchdog.type }, 'application not available yet; announcing it unavailable');
  }
  // HANet before the first heartbeat: the service address and routes are in place when it leaves.
  let hanet: Hanet | null = null;
  if (config.hanet !== undefined) {
    const { startHanet } = await import('../hanet/hanet.js');
    const sys = opts.hostSystem ?? new (await import('../hanet/host-system.js')).LinuxHostSystem();
    try {
      hanet = await startHanet(config.hanet, {
        host,
        key: opts.key,
        clock,
        sys,
        ...(log ? { log } : {}),
        onViaSibling: (via) => heartbeats.setViaSibling(via),
      });
    } catch (err) {
      watchdog?.close();
      heartbeats.close();
      throw err;
    }
  }
  try {
    return await running(config, opts, link, clock, heartbeats, watchdog, hanet);
  } catch (err) {
    watchdog?.close();
    heartbeats.close();
    await hanet?.close();
    throw err;
  }
}

async function running(
  config: AgentConfig,
  opts: AgentOptions,
  link: DispatcherLink,
  clock: Clock,
  heartbeats: HeartbeatSender,
  watchdog: Watchdog | null,
  hanet: Hanet | null,
): Promise<Agent> {
  const log = opts.logger;
  const read = opts.readProc ?? readProc;
  const { id: host, loadIntervalMs, heartbeatIntervalMs } = config.agent;
  heartbeats.start();

  const collector = new LoadCollector({
    weights: config.load.weights,
    backlogCapacity: config.load.backlogCapacity,
    ...(config.load.statsUrl === undefined ? {} : { statsUrl: config.load.statsUrl }),
    statsTimeoutMs: Math.min(loadIntervalMs, STATS_TIMEOUT_MAX_MS),
    clock,
    read,
  });
  const loads = new LoadSender({
    host,
    intervalMs: loadIntervalMs,
    key: opts.key,
    sink: link,
    source: collector,
    clock,
    onError: (err) => log?.error({ err }, 'load sample failed'),
    onSent: (vector, sample) => {
      if (log?.isLevelEnabled('debug')) log.debug({ seq: vector.seq, load: vector.load, missing: sample.missing }, 'load vector sent');
    },
  });
  await loads.start();

  let state: AgentState = 'running';
  const timers: TimerHandle[] = [];
  let resolveDone!: (exit: AgentExit) => void;
  const done = new Promise<AgentExit>((r) => (resolveDone = r));

  const finish = async (exit: AgentExit): Promise<void> => {
    if (state === 'stopped') return;
    state = 'stopped';
    for (const t of timers) t.cancel();
    watchdog?.close();
    heartbeats.close();
    loads.close();
    collector.close();
    // Every HANet change undone before the last heartbeat leaves (it then goes out the public link).
    await hanet?.close();
    await link.close(FINAL_FLUSH_MS);
    resolveDone(exit);
  };

  const drain = (): void => {
    if (state !== 'running') return;
    state = 'draining';
    const at = clock.wallNow();
    // The watchdog's and the stats fetch's own connections to the application would keep it busy.
    watchdog?.close();
    collector.disableStats();
    heartbeats.announcePlannedFailure(at);
    const announcedBefore = heartbeats.sent - 1;
    const { deadlineMs, port } = config.drain;
    log?.info({ deadlineMs, port: port ?? null }, `planned failure announced; exiting when ${port === undefined ? 'the deadline passes' : `port ${port} is idle`} (at most ${deadlineMs} ms)`);
    timers.push(clock.setTimeout(() => void finish('deadline'), deadlineMs));
    if (port === undefined) return;

    let checking = false;
    const poll = clock.setInterval(() => {
      if (checking || state !== 'draining' || heartbeats.sent - announcedBefore < DRAIN_MIN_ANNOUNCEMENTS) return;
      checking = true;
      void establishedConnections(port, read).then((n) => {
        checking = false;
        if (state !== 'draining') return;
        if (n === 0) void finish('idle');
        else if (n === null) {
          poll.cancel();
          log?.warn({ port }, 'cannot read /proc/net/tcp: waiting for the drain deadline');
        }
      });
    }, DRAIN_POLL_MS);
    timers.push(poll);
  };

  const stop = async (): Promise<void> => {
    if (state === 'stopped') {
      await done;
      return;
    }
    // A drain already announced it; otherwise this is the announcement. Either way one more goes now.
    if (state === 'running') heartbeats.announcePlannedFailure(clock.wallNow());
    else heartbeats.sendNow();
    await finish('stopped');
  };

  log?.info(
    { id: host, dispatchers: link.resolved, heartbeatIntervalMs, loadIntervalMs, watchdog: config.watchdog.type },
    'holdfast agent running',
  );

  return {
    get state() {
      return state;
    },
    dispatchers: link.resolved,
    drain,
    stop,
    done,
    hanet,
  };
}
