#!/usr/bin/env node
/**
 * @module Builds holdfast's one native addon, the gratuitous-ARP packet socket
 * (src/takeover/garp-socket.c → build/native/garp-socket.node), from source against the running
 * Node's own headers (<prefix>/include/node, shipped with Node and with Debian's nodejs), with the
 * system C compiler. Runs in `npm ci` (prepare) and `npm run build`. Optional by design: without a
 * compiler or headers, or off Linux, it says why and exits 0, and src/takeover/linux.ts uses arping.
 * Plain JavaScript with no dependencies.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const source = join(root, 'src', 'takeover', 'garp-socket.c');
const outDir = join(root, 'build', 'native');
const out = join(outDir, 'garp-socket.node');

function skip(why) {
  process.stderr.write(`build-native: garp-socket addon not built (${why}); Linux takeover will use arping\n`);
  process.exit(0);
}

if (process.platform !== 'linux') skip(`platform ${process.platform}`);
// Up to date: built after its source by this very Node (the ABI is Node-API's, but the headers are this Node's).
if (existsSync(out) && statSync(out).mtimeMs >= Math.max(statSync(source).mtimeMs, statSync(process.execPath).mtimeMs)) process.exit(0);
const candidates = [join(dirname(process.execPath), '..', 'include', 'node'), '/usr/include/node', '/usr/local/include/node'];
const headers = candidates.find((d) => existsSync(join(d, 'node_api.h')));
if (headers === undefined) skip(`no node_api.h in ${candidates.join(', ')}`);
const cc = ['cc', 'gcc', 'clang'].find((c) => spawnSync(c, ['--version'], { stdio: 'ignore' }).status === 0);
if (cc === undefined) skip('no C compiler (cc, gcc, clang)');
mkdirSync(outDir, { recursive: true });
const tmp = `${out}.${process.pid}.tmp`;
const r = spawnSync(cc, ['-O2', '-Wall', '-shared', '-fPIC', '-DNODE_GYP_MODULE_NAME=garp_socket', `-I${headers}`, '-o', tmp, source], { encoding: 'utf8' });
if (r.status !== 0) {
  rmSync(tmp, { force: true });
  skip(`${cc} failed: ${(r.stderr || r.error?.message || '').trim()}`);
}
renameSync(tmp, out);
