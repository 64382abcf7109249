#!/usr/bin/env node
/**
 * @module Builds the dashboard (src/admin/dashboard/) with esbuild into dist/dashboard/: one bundled
 * app.js (Preact, htm, uPlot), one app.css, and index.html. Run by `npm run build`, `prepare`,
 * `test` and `start`; nothing is fetched at run time. The main tsconfig excludes the dashboard.
 */
import { build } from 'esbuild';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../', import.meta.url));
const src = `${root}src/admin/dashboard/`;
const out = `${root}dist/dashboard/`;
// esbuild strips types without checking them: the browser code is type-checked here (its own
// tsconfig: DOM library, bundler resolution), and a type error fails the build.
const tsc = spawnSync(process.execPath, [`${root}node_modules/typescript/bin/tsc`, '-p', `${src}tsconfig.json`], { stdio: 'inherit' });
if (tsc.status !== 0) process.exit(tsc.status ?? 1);
mkdirSync(`${out}assets`, { recursive: true });
await build({
  entryPoints: { app: `${src}app.ts` },
  bundle: true,
  format: 'esm',
  minify: true,
  target: ['chrome109', 'firefox115', 'safari16'],
  outdir: `${out}assets`,
  logLevel: 'warning',
  legalComments: 'eof',
});
copyFileSync(`${src}index.html`, `${out}index.html`);
