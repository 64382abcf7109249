import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import net from 'node:net';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `node bin/holdfast.js ...args` from the repository root, as a user would. */
function holdfast(...args: string[]): Promise<Run> {
  return holdfastWithEnv(process.env, ...args);
}

function holdfastWithEnv(env: NodeJS.ProcessEnv, ...args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['bin/holdfast.js', ...args], { cwd: ROOT, env, timeout: 10_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : null) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

function tempDir(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'holdfast-cli-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('check-config on a valid file prints the resolved configuration and exits 0', async () => {
  const run = await holdfast('check-config', 'examples/minimal.yaml');
  assert.equal(run.stderr, '');
  assert.equal(run.code, 0);
  assert.match(run.stdout, /^ {4}balancer: round-robin$/m);
  assert.match(run.stdout, /^ {6}maxHeaderBytes: 16384$/m);
  assert.match(run.stdout, /^ {2}listen: 127\.0\.0\.1:9900$/m);
  assert.match(run.stdout, /^ {8}weight: 1$/m);
});

test('check-config on an invalid file prints every issue, prefixed by the file, and exits 1', async (t) => {
  const file = join(tempDir(t), 'bad.yaml');
  writeFileSync(
    file,
    `services:
  - name: web
    protocol: ftp
    listen: "8080"
    servers: [{ host: "127.0.0.1:9001" }]
`,
  );
  const run = await holdfast('check-config', file);
  assert.equal(run.code, 1);
  assert.equal(run.stdout, '');
  assert.deepEqual(run.stderr.split('\n'), [
    `${file}: services[0].protocol: expected one of "http", "tcp", "udp", "sip", "rtsp", received "ftp"`,
    `${file}: services[0].listen: expected host:port, received "8080"`,
    `${file}: services[0].servers: renamed, use "backends"`,
    '',
  ]);
});

test('check-config reports a YAML syntax error with file:line:col', async (t) => {
  const file = join(tempDir(t), 'broken.yaml');
  writeFileSync(file, 'logging: { level: info }\nlogging: { level: warn }\n');
  const run = await holdfast('check-config', file);
  assert.equal(run.code, 1);
  assert.equal(run.stderr, `${file}:2:1: Map keys must be unique\n`);
});

test('check-config on a missing file exits 1 and says so', async (t) => {
  const file = join(tempDir(t), 'missing.yaml');
  const run = await holdfast('check-config', file);
  assert.equal(run.code, 1);
  assert.equal(run.stderr, `${file}: cannot read file (ENOENT)\n`);
});

test('--help prints usage on stdout and exits 0, at the top level and for each command', async () => {
  const top = await holdfast('--help');
  assert.equal(top.code, 0);
  assert.match(top.stdout, /^Usage: holdfast <command>/);
  for (const command of ['dispatcher', 'reload', 'agent', 'agent drain', 'demo', 'check-config']) {
    assert.match(top.stdout, new RegExp(`^ {2}${command} `, 'm'));
  }

  const expectations: Record<string, RegExp> = {
    dispatcher: /SIGHUP reloads FILE live/,
    reload: /POST \/api\/v1\/actions\/reload/,
    agent: /SIGUSR2/,
    'agent drain': /pidFile/,
    demo: /--port-base N/,
    'check-config': /check-config FILE/,
  };
  const runs = Object.entries(expectations).flatMap(([command, option]) =>
    ['--help', '-h'].map(async (flag) => {
      const run = await holdfast(...command.split(' '), flag);
      assert.equal(run.code, 0, `${command} ${flag}`);
      assert.equal(run.stderr, '');
      assert.match(run.stdout, new RegExp(`^Usage: holdfast ${command}`));
      assert.match(run.stdout, option);
      assert.match(run.stdout, new RegExp(`Example:\\n {2}holdfast ${command} `));
    }),
  );
  await Promise.all(runs);
});

test('--version prints the package version', async () => {
  const { version } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
  const run = await holdfast('--version');
  assert.equal(run.code, 0);
  assert.equal(run.stdout, `${version}\n`);
});

test('usage errors exit 2 with a message and a hint on stderr', async () => {
  const cases: [string[], string][] = [
    [['frobnicate'], 'holdfast: unknown command "frobnicate"\nRun "holdfast --help" for usage.\n'],
    [[], 'holdfast: missing command\nRun "holdfast --help" for usage.\n'],
    [['--frob'], `holdfast: Unknown option '--frob'\nRun "holdfast --help" for usage.\n`],
    [['check-config'], 'holdfast: missing FILE\nRun "holdfast check-config --help" for usage.\n'],
    [['dispatcher'], 'holdfast: missing --config FILE\nRun "holdfast dispatcher --help" for usage.\n'],
    [['agent'], 'holdfast: missing --config FILE\nRun "holdfast agent --help" for usage.\n'],
    [['reload'], 'holdfast: missing --config FILE\nRun "holdfast reload --help" for usage.\n'],
    [['reload', '-c', 'x', 'now'], 'holdfast: unexpected argument "now"\nRun "holdfast reload --help" for usage.\n'],
    [['agent', 'drain'], 'holdfast: missing --config FILE\nRun "holdfast agent drain --help" for usage.\n'],
    [['agent', 'dran', '-c', 'x'], 'holdfast: unknown agent command "dran"\nRun "holdfast agent --help" for usage.\n'],
    [['agent', 'drain', '-c', 'x', 'now'], 'holdfast: unexpected argument "now"\nRun "holdfast agent drain --help" for usage.\n'],
    [
      ['demo', '--port-base', '99999'],
      'holdfast: --port-base expects a port number (1-65535), received "99999"\nRun "holdfast demo --help" for usage.\n',
    ],
  ];
  await Promise.all(
    cases.map(async ([args, stderr]) => {
      const run = await holdfast(...args);
      assert.equal(run.code, 2, args.join(' '));
      assert.equal(run.stdout, '');
      assert.equal(run.stderr, stderr);
    }),
  );
});

/** A valid agent configuration in a temporary directory, its pid file beside it. */
function agentConfig(t: { after(fn: () => void): void }, extra = ''): { file: string; pidFile: string } {
  const dir = tempDir(t);
  const pidFile = join(dir, 'agent.pid');
  const file = join(dir, 'agent.yaml');
  writeFileSync(
    file,
    `agent: { id: 5, dispatchers: ["127.0.0.1:9"], pidFile: ${JSON.stringify(pidFile)} }\nwatchdog: { type: none }\n${extra}`,
  );
  return { file, pidFile };
}

test('agent drain with no agent running says so and exits 1', async (t) => {
  const { file, pidFile } = agentConfig(t);
  const none = await holdfast('agent', 'drain', '--config', file);
  assert.equal(none.code, 1);
  assert.equal(none.stdout, '');
  assert.equal(none.stderr, `holdfast: no agent is running for ${file}: no pid file at ${pidFile}\n`);

  // A pid file left behind by a dead agent: pid 4194304 is above any Linux pid_max.
  writeFileSync(pidFile, '4194304\n');
  const stale = await holdfast('agent', 'drain', '--config', file);
  assert.equal(stale.code, 1);
  assert.equal(
    stale.stderr,
    `holdfast: no agent is running for ${file}: ${pidFile} names pid 4194304, which is not running (stale pid file)\n`,
  );
});

test('agent drain refuses to signal a live process that is not a holdfast agent', { skip: process.platform !== 'linux' }, async (t) => {
  const { file, pidFile } = agentConfig(t);
  writeFileSync(pidFile, `${process.pid}\n`); // the test runner: SIGUSR2 would kill it
  const run = await holdfast('agent', 'drain', '--config', file);
  assert.equal(run.code, 1);
  assert.equal(run.stderr, `holdfast: pid ${process.pid} (from ${pidFile}) is not a holdfast agent; not signalling it\n`);
});

test('agent with an invalid configuration prints every issue, prefixed by the file, and exits 1', async (t) => {
  const { file } = agentConfig(t, 'drain: { deadline: 5 }\n');
  const run = await holdfast('agent', '--config', file);
  assert.equal(run.code, 1);
  assert.equal(run.stderr, `${file}: drain.deadline: renamed, use "deadlineMs"\n`);
  const drain = await holdfast('agent', 'drain', '--config', file);
  assert.equal(drain.code, 1);
  assert.equal(drain.stderr, run.stderr);
});

test('agent without a cluster key exits 1 with HF_ERR_CLUSTER_KEY and leaves no pid file', async (t) => {
  const { file, pidFile } = agentConfig(t);
  const env = { ...process.env };
  delete env.HOLDFAST_CLUSTER_KEY;
  const run = await holdfastWithEnv(env, 'agent', '--config', file);
  assert.equal(run.code, 1);
  assert.match(run.stderr, /^holdfast: no cluster key: set HOLDFAST_CLUSTER_KEY .* \[HF_ERR_CLUSTER_KEY\]\n$/);
  assert.equal(existsSync(pidFile), false);
});

test('agent with a dispatcher name that does not resolve exits 1 with a one-line reason', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'agent.yaml');
  const pidFile = join(dir, 'agent.pid');
  writeFileSync(file, `agent: { id: 5, dispatchers: ["no-such-host.invalid:7600"], pidFile: ${JSON.stringify(pidFile)} }\nwatchdog: { type: none }\n`);
  const run = await holdfastWithEnv({ ...process.env, HOLDFAST_CLUSTER_KEY: 'ab'.repeat(32) }, 'agent', '--config', file);
  assert.equal(run.code, 1);
  assert.match(run.stderr, /^holdfast: cannot start the agent: cannot resolve dispatcher no-such-host\.invalid:7600 \((ENOTFOUND|EAI_AGAIN)\)\n$/);
  assert.equal(existsSync(pidFile), false, 'pid file released');
});

test('reload with no dispatcher listening says so and exits 1', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'holdfast.yaml');
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  writeFileSync(file, `admin: { listen: 127.0.0.1:${port} }\nservices:\n  - { name: web, protocol: http, listen: 127.0.0.1:0, backends: [{ id: a, address: 127.0.0.1:1 }] }\n`);
  const run = await holdfastWithEnv({ ...process.env, HOLDFAST_ADMIN_TOKEN: '' }, 'reload', '--config', file);
  assert.equal(run.code, 1);
  assert.equal(run.stdout, '');
  assert.match(run.stderr, /^holdfast: cannot reach the dispatcher's admin API at http:\/\/127\.0\.0\.1:\d+\/api\/v1\/actions\/reload: ECONNREFUSED\n$/);
});
