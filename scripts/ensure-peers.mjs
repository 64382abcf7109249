#!/usr/bin/env node
/**
 * @module Makes sure the peer programs that tests and benchmarks drive are installed: HAProxy and
 * wrk (HTTP baseline), sipp (SIP load), iproute2, nftables, arping, ping (identity takeover, HANet and
 * fault injection), openssl (test certificates), curl (a real TLS client), h2load (HTTP/2 load, Debian
 * nghttp2-client), chromium (the dashboard's browser test, driven by playwright-core) and etcd (scale-out
 * membership). Runs before `npm test` and `npm bench`. Silent
 * when everything is there; installs the missing Debian packages when running as root (CI, fresh
 * machines); otherwise says what to install and fails. Plain JavaScript with no dependencies: it
 * must run before anything is built.
 */
import { spawnSync } from 'node:child_process';
import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, join } from 'node:path';

/** Program looked up on PATH → the Debian package that ships it. */
const PEERS = [
  { program: 'haproxy', pkg: 'haproxy' },
  { program: 'wrk', pkg: 'wrk' },
  { program: 'sipp', pkg: 'sip-tester' },
  { program: 'ip', pkg: 'iproute2' },
  { program: 'nft', pkg: 'nftables' },
  { program: 'arping', pkg: 'arping' },
  { program: 'ping', pkg: 'iputils-ping' },
  { program: 'openssl', pkg: 'openssl' },
  { program: 'curl', pkg: 'curl' },
  { program: 'h2load', pkg: 'nghttp2-client' },
  { program: 'chromium', pkg: 'chromium' },
  { program: 'etcd', pkg: 'etcd-server' },
];

/** ip, nft and arping live in sbin, which a non-root PATH often lacks. */
const EXTRA_DIRS = ['/usr/local/sbin', '/usr/sbin', '/sbin'];

function isExecutable(path) {
  try {
    if (!statSync(path).isFile()) return false;
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Full path of `program` on PATH or in sbin, or null. */
function findProgram(program) {
  const dirs = [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), ...EXTRA_DIRS];
  for (const dir of dirs) if (isExecutable(join(dir, program))) return join(dir, program);
  return null;
}

function missingPackages() {
  return [...new Set(PEERS.filter((p) => findProgram(p.program) === null).map((p) => p.pkg))];
}

function run(command, args, env = process.env) {
  const result = spawnSync(command, args, { stdio: 'inherit', env });
  if (result.error) {
    process.stderr.write(`ensure-peers: cannot run ${command}: ${result.error.message}\n`);
    return false;
  }
  return result.status === 0;
}

const missing = missingPackages();
if (missing.length === 0) process.exit(0);

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
if (!isRoot) {
  process.stderr.write(
    `holdfast tests need these Debian packages: ${missing.join(' ')}. ` +
      `Install them with: sudo apt-get install ${missing.join(' ')}\n`,
  );
  process.exit(1);
}

process.stdout.write(`ensure-peers: installing missing Debian packages: ${missing.join(' ')}\n`);
const aptGet = findProgram('apt-get') ?? '/usr/bin/apt-get';
run(aptGet, ['update']);
run(aptGet, ['install', '-y', '--no-install-recommends', ...missing], {
  ...process.env,
  DEBIAN_FRONTEND: 'noninteractive',
});

const still = missingPackages();
if (still.length > 0) {
  process.stderr.write(
    `ensure-peers: still missing after apt-get install: ${still.join(' ')} ` +
      `(programs: ${PEERS.filter((p) => still.includes(p.pkg))
        .map((p) => p.program)
        .join(', ')}). holdfast tests and benchmarks cannot run without them.\n`,
  );
  process.exit(1);
}
