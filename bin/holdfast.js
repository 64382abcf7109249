#!/usr/bin/env node
// Entry point installed as `holdfast`: the compiled CLI lives in dist/ (built by `npm ci` via prepare).
import { main } from '../dist/src/cli/main.js';

main(process.argv.slice(2)).then(
  (code) => { if (typeof code === 'number') process.exitCode = code; },
  (err) => { console.error(err?.stack ?? String(err)); process.exitCode = 1; },
);
