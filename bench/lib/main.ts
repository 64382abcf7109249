/** @module The entry-point check every runnable benchmark module shares. */
import { pathToFileURL } from 'node:url';

/**
 * Runs `main` when the module at `moduleUrl` (its import.meta.url) is the script node was started
 * with, not when bench/run.ts or a test imports it. A failure prints its stack and exits 1.
 */
export function runIfMain(moduleUrl: string, main: () => void | Promise<void>): void {
  if (process.argv[1] === undefined || moduleUrl !== pathToFileURL(process.argv[1]).href) return;
  Promise.resolve()
    .then(main)
    .catch((err: unknown) => {
      console.error(err instanceof Error ? (err.stack ?? err.message) : String(err));
      process.exit(1);
    });
}
