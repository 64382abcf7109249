/**
 * @module The link watcher of the real host system (`ip -o monitor link`), in a network namespace of
 * the test's own: it reports a link that appears, and it dies with its parent even when the parent
 * is SIGKILLed (setpriv --pdeathsig), instead of living on until the next link event on the host.
 * Root only (ip netns): skipped with the reason otherwise. The namespace is removed in t.after.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import readline from 'node:readline';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const HOST_SYSTEM = fileURLToPath(new URL('./host-system.js', import.meta.url));

/** The child's state letter (/proc/PID/stat), or null once it is gone. Reaped or a zombie: dead. */
function procState(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  } catch {
    return null;
  }
}

async function until(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('the link watcher reports a new link, and its ip monitor dies with a SIGKILLed parent', async (t) => {
  if (process.getuid?.() !== 0 || !existsSync('/usr/bin/setpriv')) return t.skip('needs root (ip netns) and setpriv');
  const ns = `hf-tied-${process.pid}`;
  execFileSync('ip', ['netns', 'add', ns]);
  t.after(() => execFileSync('ip', ['netns', 'del', ns]));
  // The parent: watches links and prints its watcher's pid and every event.
  const script = `
    import(${JSON.stringify(HOST_SYSTEM)}).then((m) => {
      new m.LinuxHostSystem().watchLinks((iface) => console.log('link ' + iface));
      console.log('ready');
      setInterval(() => {}, 1000);
    });`;
  const parent = spawn('ip', ['netns', 'exec', ns, process.execPath, '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => parent.kill('SIGKILL'));
  const lines: string[] = [];
  readline.createInterface({ input: parent.stdout }).on('line', (l) => lines.push(l));
  await until(() => lines.includes('ready'), 'the parent to start');
  // The watcher: the parent's only child, `ip -o monitor link` once setpriv has exec'd it.
  let watcher = 0;
  await until(() => {
    const children = execFileSync('pgrep', ['-P', String(parent.pid)], { encoding: 'latin1' }).trim().split('\n');
    watcher = Number(children[0]);
    return readFileSync(`/proc/${watcher}/cmdline`, 'latin1').split('\0').join(' ').includes('ip -o monitor link');
  }, 'ip monitor to run');
  // A link event in the namespace reaches the callback.
  await new Promise((r) => setTimeout(r, 100)); // ip monitor subscribes right after exec
  execFileSync('ip', ['-n', ns, 'link', 'add', 'hf-tied-a', 'type', 'veth', 'peer', 'name', 'hf-tied-b']);
  await until(() => lines.includes('link hf-tied-a'), 'the link event');
  // SIGKILL of the parent: no handler runs, yet the watcher goes too.
  parent.kill('SIGKILL');
  await until(() => {
    const s = procState(watcher);
    return s === null || s === 'Z';
  }, `ip monitor (pid ${watcher}) to die with its parent`);
});
