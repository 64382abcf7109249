/**
 * @module The `holdfast` command line: reads argv, runs one command, returns the exit code
 * (0 done, 1 failed, 2 usage error). The dispatcher, the demo and the logger are imported only by
 * the command that runs them, so `check-config` and `--help` load nothing but the config loader.
 */
import { readFileSync } from 'node:fs';
import { constants } from 'node:os';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import type { AgentConfig } from '../config/agent-schema.js';
import { formatConfig, loadAgentConfigFile, loadConfigFile } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { formatHostPort } from '../core/address.js';
import { ConfigInvalidError, HoldfastError, UsageError } from '../core/errors.js';

type Options = NonNullable<ParseArgsConfig['options']>;
type Values = ReturnType<typeof parseArgs>['values'];

interface Command {
  readonly usage: string;
  readonly options: Options;
  /** `holdfast <command> <sub> ...`: the first argument picks one of these when it names one. */
  readonly subcommands?: Record<string, Command>;
  run(values: Values, positionals: string[]): Promise<number>;
}

const USAGE = `Usage: holdfast <command> [options]

Session-aware, fault-tolerant load balancer.

Commands:
  dispatcher --config FILE   run the dispatcher: serve the configured services
  reload --config FILE       make the running dispatcher reload its configuration file (admin API)
  agent --config FILE        run the agent beside a backend: heartbeats, watchdog, load
  agent drain --config FILE  make the running agent announce a planned failure and exit
  demo [--port-base N]       run a small cluster on loopback with live traffic
  check-config FILE          validate a configuration file, print it with defaults filled in

Options:
  -h, --help                 show this help; "holdfast <command> --help" for a command's
  -v, --version              print the version

Example:
  holdfast check-config examples/minimal.yaml
`;

const HELP_OPTION: Options = { help: { type: 'boolean', short: 'h' } };

const COMMANDS: Record<string, Command> = {
  dispatcher: {
    usage: `Usage: holdfast dispatcher --config FILE

Runs the dispatcher: listens on every service address of the configuration, spreads new work over
the backends, and serves the admin API. Stops cleanly on SIGINT or SIGTERM: new connections are
refused, requests in flight finish (dispatcher.drainTimeoutMs, 5 s by default), exit 0; a second
signal stops at once.
SIGHUP reloads FILE live (as "holdfast reload"): an invalid file changes nothing; what cannot
change live is logged. SIGUSR1 reopens logging.file (after logrotate renamed it).

Options:
  -c, --config FILE   the YAML configuration (see examples/)
  -h, --help          show this help

Example:
  holdfast dispatcher --config examples/minimal.yaml
`,
    options: { ...HELP_OPTION, config: { type: 'string', short: 'c' } },
    async run(values, positionals) {
      noPositionals('dispatcher', positionals);
      const file = values.config;
      if (typeof file !== 'string') throw usageError('dispatcher', 'missing --config FILE');
      return runDispatcher(file);
    },
  },
  reload: {
    usage: `Usage: holdfast reload --config FILE [--admin HOST:PORT]

Asks the running dispatcher to reload its configuration file, through its admin API
(POST /api/v1/actions/reload): the address is FILE's admin.listen (or --admin), the bearer token
HOLDFAST_ADMIN_TOKEN or FILE's admin.tokenFile. The dispatcher reads its own --config file again,
validates it (an invalid file changes nothing: every issue is printed with its path, exit 1), and
applies what can change live: backends added, removed (drained) and re-weighted, the balancer,
detector and probe settings, admission thresholds, a stream service's listen address. What needs
a restart is printed. Exit 0 when applied, 1 otherwise. (SIGHUP to the dispatcher does the same.)

Options:
  -c, --config FILE     the dispatcher's YAML configuration
  --admin HOST:PORT     the admin listener, when not FILE's admin.listen
  -h, --help            show this help

Example:
  holdfast reload --config /etc/holdfast/holdfast.yaml
`,
    options: { ...HELP_OPTION, config: { type: 'string', short: 'c' }, admin: { type: 'string' } },
    async run(values, positionals) {
      noPositionals('reload', positionals);
      const file = values.config;
      if (typeof file !== 'string') throw usageError('reload', 'missing --config FILE');
      const admin = values.admin;
      return reloadDispatcher(file, typeof admin === 'string' ? admin : undefined);
    },
  },
  agent: {
    usage: `Usage: holdfast agent --config FILE

Runs the agent beside one backend server. Every agent.heartbeatIntervalMs it announces to each
dispatcher whether the node and its application are available (the watchdog decides), every
agent.loadIntervalMs it sends the node's load vector; both authenticated with the cluster key
(HOLDFAST_CLUSTER_KEY, hex, or cluster.keyFile).

SIGUSR2 (or "holdfast agent drain") announces a planned failure: the dispatchers send no new
sessions, and the agent exits once the application has no established connection on drain.port,
or when drain.deadlineMs has passed. SIGINT or SIGTERM: one last planned-failure announcement,
then exit at once. SIGUSR1 reopens logging.file.

Options:
  -c, --config FILE   the agent's YAML configuration (see examples/agent.yaml)
  -h, --help          show this help

Example:
  holdfast agent --config examples/agent.yaml
`,
    options: { ...HELP_OPTION, config: { type: 'string', short: 'c' } },
    subcommands: {
      drain: {
        usage: `Usage: holdfast agent drain --config FILE

Tells the agent running with this configuration (found through its agent.pidFile) to announce a
planned failure: it sends SIGUSR2 and returns. The agent keeps announcing the planned failure
until the application is idle or drain.deadlineMs has passed, then exits. Exits 1 when no agent
runs for this configuration.

Options:
  -c, --config FILE   the agent's YAML configuration
  -h, --help          show this help

Example:
  holdfast agent drain --config examples/agent.yaml
`,
        options: { ...HELP_OPTION, config: { type: 'string', short: 'c' } },
        async run(values, positionals) {
          noPositionals('agent drain', positionals);
          const file = values.config;
          if (typeof file !== 'string') throw usageError('agent drain', 'missing --config FILE');
          return drainAgent(file);
        },
      },
    },
    async run(values, positionals) {
      if (positionals.length > 0) throw usageError('agent', `unknown agent command "${positionals[0]!}"`);
      const file = values.config;
      if (typeof file !== 'string') throw usageError('agent', 'missing --config FILE');
      return runAgent(file);
    },
  },
  demo: {
    usage: `Usage: holdfast demo [--port-base N]

Runs a small cluster on loopback: two dispatchers sharing a VIP (127.0.0.10), three
backends and live traffic through the VIP, printing which dispatcher is master and what
happens. Stops on SIGINT or SIGTERM.

Options:
  --port-base N   first of the consecutive ports the demo listens on (default: the demo's own)
  -h, --help      show this help

Example:
  holdfast demo --port-base 18000
`,
    options: { ...HELP_OPTION, 'port-base': { type: 'string' } },
    async run(values, positionals) {
      noPositionals('demo', positionals);
      const text = values['port-base'];
      const portBase = typeof text === 'string' ? Number(text) : undefined;
      if (portBase !== undefined && !(/^\d+$/.test(text as string) && portBase >= 1 && portBase <= 65535)) {
        throw usageError('demo', `--port-base expects a port number (1-65535), received "${text as string}"`);
      }
      return runDemo(portBase);
    },
  },
  'check-config': {
    usage: `Usage: holdfast check-config FILE

Validates a configuration file. Prints the resolved configuration (every default filled in) and
exits 0, or prints every problem, one per line, and exits 1.

Options:
  -h, --help   show this help

Example:
  holdfast check-config examples/http.yaml
`,
    options: HELP_OPTION,
    async run(_values, positionals) {
      const [file, ...extra] = positionals;
      if (file === undefined) throw usageError('check-config', 'missing FILE');
      if (extra.length > 0) throw usageError('check-config', `unexpected argument "${extra[0]!}"`);
      const config = loadOrReport(file);
      if (!config) return 1;
      process.stdout.write(formatConfig(config));
      return 0;
    },
  },
};

/** Runs the command line `argv` (without node and the script) and returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  try {
    return await dispatch(argv);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`holdfast: ${err.message}\n`);
      return 2;
    }
    if (err instanceof HoldfastError) {
      const cause = (err.cause as NodeJS.ErrnoException | undefined)?.code;
      process.stderr.write(`holdfast: ${err.message}${cause ? ` (${cause})` : ''} [${err.code}]\n`);
      return 1;
    }
    throw err;
  }
}

async function dispatch(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined) throw usageError(null, 'missing command');
  if (name.startsWith('-')) {
    const { values } = parse(null, { ...HELP_OPTION, version: { type: 'boolean', short: 'v' } }, argv);
    if (values.version) process.stdout.write(`${packageVersion()}\n`);
    else process.stdout.write(USAGE);
    return 0;
  }
  let command = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (!command) throw usageError(null, `unknown command "${name}"`);
  let label = name;
  let args = rest;
  const sub = rest[0];
  if (sub !== undefined && command.subcommands && Object.hasOwn(command.subcommands, sub)) {
    command = command.subcommands[sub]!;
    label = `${name} ${sub}`;
    args = rest.slice(1);
  }
  const { values, positionals } = parse(label, command.options, args);
  if (values.help) {
    process.stdout.write(command.usage);
    return 0;
  }
  return command.run(values, positionals);
}

async function runDispatcher(file: string): Promise<number> {
  const config = loadOrReport(file);
  if (!config) return 1;
  const { createLogOutput } = await import('../admin/log.js');
  const { startDispatcher } = await import('../dispatcher/dispatcher.js');
  const output = openLogOrReport(createLogOutput, config.logging);
  if (!output) return 1;
  const { logger } = output;
  const shutdown = onShutdownSignal();
  const reopen = reopenLogOnUsr1(output);
  let handle: Awaited<ReturnType<typeof startDispatcher>> | null = null;
  // SIGHUP reloads the file live (the dispatcher logs what it applied, what needs a restart, or why
  // the file was refused); one received during start-up is logged and dropped.
  const hangup = ignoreHangup(() => {
    if (!handle) {
      logger.warn({ signal: 'SIGHUP' }, 'SIGHUP received while starting: not reloaded');
      return;
    }
    logger.info({ signal: 'SIGHUP', file }, 'SIGHUP received: reloading the configuration');
    handle.reload().catch((err: unknown) => logger.error({ err }, 'reload failed'));
  });
  const scheduling = await ownScheduling(config.scheduling, logger);
  try {
    const running = await startDispatcher(config, { logger, configSource: () => loadConfigFile(file) });
    handle = running;
    // The running services: with cluster.membership etcd they may come from the shared configuration.
    const services = Object.fromEntries(running.status().services.map((s) => [s.name, formatHostPort(running.serviceAddress(s.name))]));
    const admin = running.adminAddress ? formatHostPort(running.adminAddress) : null;
    logger.info({ services, admin }, 'holdfast dispatcher listening');
    logger.info({ signal: await shutdown.received }, 'holdfast dispatcher shutting down');
    await running.close();
    return 0;
  } finally {
    scheduling.close();
    hangup();
    reopen();
    shutdown.dispose();
    output.file?.close();
  }
}

/**
 * The process's own priority (`scheduling`): raised at start or at the first stall of its event
 * loop, each attempt logged with the level reached and why a better one was refused.
 */
async function ownScheduling(
  cfg: import('../core/scheduling.js').SchedulingConfig,
  logger: { info(o: object, m: string): void; warn(o: object, m: string): void },
): Promise<{ close(): void }> {
  const { startScheduling } = await import('../core/scheduling.js');
  const { realClock } = await import('../core/clock.js');
  return startScheduling(cfg, realClock, ({ stallMs, result }) => {
    const fields = { stallMs, level: result.level, refused: result.errors };
    if (result.level === 'realtime') logger.info(fields, `own priority raised to SCHED_RR ${cfg.realtimePriority}`);
    else logger.warn(fields, result.level === 'nice' ? `own priority raised to nice ${cfg.nice} only` : 'own priority could not be raised');
  });
}

/**
 * Runs the agent until it stops: drained (SIGUSR2), past its drain deadline, or told to stop
 * (SIGINT, SIGTERM). Its UDP socket keeps the process alive meanwhile. The pid file is written
 * before the agent starts and removed when it stops, so `agent drain` always finds a live agent.
 */
async function runAgent(file: string): Promise<number> {
  const config = loadAgentOrReport(file);
  if (!config) return 1;
  const { loadClusterKey } = await import('../wire/cluster-key.js');
  const key = loadClusterKey(config.cluster);
  const { createLogOutput } = await import('../admin/log.js');
  const { startAgent } = await import('../agent/agent.js');
  const { claimPidFile, releasePidFile } = await import('../agent/pid-file.js');
  const output = openLogOrReport(createLogOutput, config.logging);
  if (!output) return 1;
  const { logger } = output;
  const reopen = reopenLogOnUsr1(output);
  const pidFile = config.agent.pidFile;
  // Both handlers before anything can find the pid file: SIGUSR2's default action is to terminate,
  // and a drain requested while the agent is still starting must not be lost.
  const shutdown = onShutdownSignal();
  const hangup = ignoreHangup(() => logger.warn({ signal: 'SIGHUP' }, HANGUP_IGNORED));
  const scheduling = await ownScheduling(config.scheduling, logger);
  let agent: Awaited<ReturnType<typeof startAgent>> | null = null;
  let drainRequested = false;
  const onDrain = (): void => {
    logger.info({ signal: 'SIGUSR2' }, 'drain requested');
    if (agent) agent.drain();
    else drainRequested = true;
  };
  process.on('SIGUSR2', onDrain);
  try {
    const claim = claimPidFile(pidFile);
    if (!claim.ok) {
      process.stderr.write(
        `holdfast: another agent is running with pid file ${pidFile} (pid ${claim.pid}); stop it, or give this one its own agent.pidFile\n`,
      );
      return 1;
    }
    try {
      agent = await startAgent(config, { key, logger });
    } catch (err) {
      // An unresolvable dispatcher name, no UDP socket: say what, without a stack trace.
      if (err instanceof HoldfastError || !(err instanceof Error)) throw err;
      process.stderr.write(`holdfast: cannot start the agent: ${err.message}\n`);
      return 1;
    }
    const running = agent;
    if (drainRequested) running.drain();
    void shutdown.received.then((signal) => {
      logger.info({ signal }, 'holdfast agent stopping');
      return running.stop();
    });
    const exit = await running.done;
    logger.info({ exit }, `holdfast agent stopped (${exit})`);
    return 0;
  } finally {
    process.off('SIGUSR2', onDrain);
    scheduling.close();
    hangup();
    reopen();
    output.file?.close();
    shutdown.dispose();
    releasePidFile(pidFile); // only if it still names this process
  }
}

/**
 * `holdfast reload`: POST /api/v1/actions/reload to the dispatcher's admin listener (FILE's
 * admin.listen or --admin) with its bearer token; prints what was applied, what needs a restart, or
 * the file's issues.
 */
async function reloadDispatcher(file: string, adminAt: string | undefined): Promise<number> {
  const config = loadOrReport(file);
  if (!config) return 1;
  const { resolveAdminToken } = await import('../admin/api-auth.js');
  const { parseHostPort } = await import('../core/address.js');
  const fail = (message: string): number => {
    process.stderr.write(`holdfast: ${message}\n`);
    return 1;
  };
  const at = parseHostPort(adminAt ?? config.admin.listen);
  if (!at) return fail(`--admin: expected host:port, received "${adminAt ?? ''}"`);
  let token: string | null;
  try {
    token = resolveAdminToken({ ...config.admin, listen: formatHostPort(at) });
  } catch (err) {
    if (err instanceof HoldfastError) return fail(err.message);
    throw err;
  }
  const url = `http://${formatHostPort(at)}/api/v1/actions/reload`;
  let res: Response;
  try {
    res = await fetch(url, { method: 'POST', headers: token ? { authorization: `Bearer ${token}` } : {}, signal: AbortSignal.timeout(RELOAD_TIMEOUT_MS) });
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message;
    return fail(`cannot reach the dispatcher's admin API at ${url}: ${cause}`);
  }
  const body = (await res.json().catch(() => null)) as ReloadAnswer | null;
  if (res.status === 400 && body?.issues) {
    for (const i of body.issues) process.stderr.write(`${i.path}: ${i.message}\n`);
    return fail('the dispatcher refused the new configuration; nothing changed');
  }
  if (res.status !== 200 || !body) return fail(`the dispatcher answered ${res.status}: ${body?.error ?? 'no JSON body'}`);
  for (const a of body.applied ?? []) {
    const parts = [
      a.added.length ? `added ${a.added.join(', ')}` : '',
      a.removed.length ? `removed (draining) ${a.removed.join(', ')}` : '',
      a.reweighted.length ? `weights ${a.reweighted.map((r) => `${r.id}=${r.weight}`).join(', ')}` : '',
      a.balancer ? `balancer ${a.balancer}` : '',
      a.health ? 'health detector/probe' : '',
      a.admission ? 'admission thresholds' : '',
      a.listen ? `listening on ${a.listen}` : '',
    ].filter((x) => x !== '');
    process.stdout.write(`${a.service}: ${parts.join('; ')}\n`);
  }
  if ((body.applied ?? []).length === 0) process.stdout.write('nothing to change live\n');
  for (const r of body.restartRequired ?? []) process.stdout.write(`needs a restart: ${r.path}: ${r.reason}\n`);
  for (const c of body.certificates ?? []) process.stdout.write(`TLS certificates of ${c.service} kept: ${c.error}\n`);
  for (const e of body.errors ?? []) process.stderr.write(`not applied: ${e.path}: ${e.message}\n`);
  return (body.errors ?? []).length > 0 ? 1 : 0;
}

/** How long `holdfast reload` waits for the dispatcher's answer. */
const RELOAD_TIMEOUT_MS = 30_000;

interface ReloadAnswer {
  error?: string;
  issues?: { path: string; message: string }[];
  applied?: { service: string; added: string[]; removed: string[]; reweighted: { id: string; weight: number }[]; balancer?: string; health?: true; admission?: true; listen?: string }[];
  restartRequired?: { path: string; reason: string }[];
  errors?: { path: string; message: string }[];
  certificates?: { service: string; error: string }[];
}

/** `holdfast agent drain`: finds the agent through its pid file and sends it SIGUSR2. */
async function drainAgent(file: string): Promise<number> {
  const config = loadAgentOrReport(file);
  if (!config) return 1;
  const { isHoldfastAgent, processAlive, readPidFile } = await import('../agent/pid-file.js');
  const { pidFile, id } = config.agent;
  const pid = readPidFile(pidFile);
  const fail = (message: string): number => {
    process.stderr.write(`holdfast: ${message}\n`);
    return 1;
  };
  if (pid === null) return fail(`no agent is running for ${file}: no pid file at ${pidFile}`);
  if (!processAlive(pid)) return fail(`no agent is running for ${file}: ${pidFile} names pid ${pid}, which is not running (stale pid file)`);
  if (isHoldfastAgent(pid) === false) return fail(`pid ${pid} (from ${pidFile}) is not a holdfast agent; not signalling it`);
  try {
    process.kill(pid, 'SIGUSR2');
  } catch (err) {
    return fail(`cannot signal the agent (pid ${pid}): ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  const { deadlineMs, port } = config.drain;
  process.stdout.write(
    `sent SIGUSR2 to the holdfast agent ${id} (pid ${pid}): it announces a planned failure now and exits ` +
      `${port === undefined ? `after drain.deadlineMs (${deadlineMs} ms)` : `once port ${port} has no established connection, at the latest after ${deadlineMs} ms`}\n`,
  );
  return 0;
}

async function runDemo(portBase: number | undefined): Promise<number> {
  const { runDemo: demo } = await import('../demo/demo.js');
  const controller = new AbortController();
  const shutdown = onShutdownSignal();
  const hangup = ignoreHangup(() => process.stdout.write(`${HANGUP_IGNORED}\n`));
  void shutdown.received.then(() => controller.abort());
  try {
    await demo({ portBase, signal: controller.signal, out: (line: string) => process.stdout.write(`${line}\n`) });
    return 0;
  } finally {
    hangup();
    shutdown.dispose();
  }
}

/**
 * Resolves `received` on the first SIGINT or SIGTERM, from then on replacing Node's default (die at
 * once) with a graceful stop. A second signal exits at once with 128 + its number: the operator does
 * not want to wait for the drain.
 */
function onShutdownSignal(): { received: Promise<NodeJS.Signals>; dispose(): void } {
  const names = ['SIGINT', 'SIGTERM'] as const;
  const forced = (signal: NodeJS.Signals) => process.exit(128 + constants.signals[signal]);
  let resolve!: (signal: NodeJS.Signals) => void;
  const received = new Promise<NodeJS.Signals>((r) => (resolve = r));
  const first = (signal: NodeJS.Signals) => {
    for (const name of names) process.off(name, first).on(name, forced);
    resolve(signal);
  };
  for (const name of names) process.on(name, first);
  const dispose = () => {
    for (const name of names) process.off(name, first).off(name, forced);
  };
  return { received, dispose };
}

const HANGUP_IGNORED = 'SIGHUP received: reload is not supported yet; the signal is ignored';

/**
 * SIGHUP's default action is to terminate at once: no drain, no log line. Operators send it to
 * reload (nginx, HAProxy's master, keepalived), so it is caught (issue 21): the dispatcher reloads
 * its configuration file live, the agent and the demo log it and go on. Returns the function that removes
 * the handler.
 */
export function ignoreHangup(onHangup: () => void): () => void {
  process.on('SIGHUP', onHangup);
  return () => process.off('SIGHUP', onHangup);
}

type LogOutput = ReturnType<typeof import('../admin/log.js').createLogOutput>;

/** The logger, or null after saying on stderr why `logging.file` cannot be opened. */
function openLogOrReport(open: (cfg: Config['logging']) => LogOutput, cfg: Config['logging']): LogOutput | null {
  try {
    return open(cfg);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === undefined) throw err;
    process.stderr.write(`holdfast: cannot open logging.file ${cfg.file ?? ''}: ${code}\n`);
    return null;
  }
}

/**
 * SIGUSR1 reopens `logging.file` (logrotate's `postrotate kill -USR1`), as nginx and HAProxy do; the
 * new file's first line says so. Without a log file the signal is logged and ignored (its default
 * action would kill the process). Returns the function that removes the handler.
 */
function reopenLogOnUsr1({ logger, file }: LogOutput): () => void {
  const onUsr1 = (): void => {
    if (!file) {
      logger.warn({ signal: 'SIGUSR1' }, 'SIGUSR1 received: no logging.file to reopen; the signal is ignored');
      return;
    }
    const error = file.reopen();
    if (error) logger.error({ signal: 'SIGUSR1', file: file.path, error }, `SIGUSR1: cannot reopen ${file.path} (${error}); lines go on to the old file`);
    else logger.info({ signal: 'SIGUSR1', file: file.path, dropped: file.dropped }, `SIGUSR1: log file ${file.path} reopened`);
  };
  process.on('SIGUSR1', onUsr1);
  return () => process.off('SIGUSR1', onUsr1);
}

/** The loaded configuration, or null after printing every issue to stderr, each prefixed by the file. */
function loadOrReport(file: string): Config | null {
  try {
    return loadConfigFile(file);
  } catch (err) {
    if (!(err instanceof ConfigInvalidError)) throw err;
    // Issues without a config path (syntax errors, unreadable file) already start with the file name.
    for (const issue of err.issues) process.stderr.write(`${issue.startsWith(`${file}:`) ? issue : `${file}: ${issue}`}\n`);
    return null;
  }
}

/** The loaded agent configuration, or null after printing every issue to stderr (as loadOrReport). */
function loadAgentOrReport(file: string): AgentConfig | null {
  try {
    return loadAgentConfigFile(file);
  } catch (err) {
    if (!(err instanceof ConfigInvalidError)) throw err;
    for (const issue of err.issues) process.stderr.write(`${issue.startsWith(`${file}:`) ? issue : `${file}: ${issue}`}\n`);
    return null;
  }
}

function parse(command: string | null, options: Options, args: string[]): { values: Values; positionals: string[] } {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: command !== null });
  } catch (err) {
    // node:util's messages go on with advice about "--"; the first sentence is the problem.
    if ((err as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS')) {
      throw usageError(command, (err as Error).message.split('. ')[0]!);
    }
    throw err;
  }
}

function noPositionals(command: string, positionals: string[]): void {
  if (positionals.length > 0) throw usageError(command, `unexpected argument "${positionals[0]!}"`);
}

function usageError(command: string | null, message: string): UsageError {
  return new UsageError(`${message}\nRun "holdfast${command ? ` ${command}` : ''} --help" for usage.`);
}

function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}
