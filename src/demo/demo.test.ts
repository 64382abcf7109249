/**
 * The demo end to end: its group of two dispatchers has exactly one master (asked of each
 * dispatcher's own admin API), the traffic goes through the VIP, and it stops cleanly — on its abort
 * signal in process, and on SIGINT as `holdfast demo` (what Ctrl-C sends).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomInt } from 'node:crypto';
import http from 'node:http';
import { fileURLToPath } from 'node:url';
import type { StatusSnapshot } from '../admin/status.js';
import { DEMO_GROUP, runDemo } from './demo.js';
import { canBind, freeDemoPortBase } from '../../test/helpers/demo-ports.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));



function getJson<T>(url: string): Promise<T> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent: false, timeout: 3000 }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => {
          try {
            resolve(JSON.parse(body) as T);
          } catch (err) {
            reject(err);
          }
        });
      })
      .on('error', reject);
  });
}

/** The demo's output lines, and a wait for the first one matching. */
class Lines {
  readonly all: string[] = [];
  readonly #waiters = new Set<() => void>();

  push(line: string): void {
    this.all.push(line);
    for (const w of this.#waiters) w();
  }

  wait(re: RegExp, timeoutMs: number): Promise<string> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const line = this.all.find((l) => re.test(l));
        if (line === undefined) return;
        this.#waiters.delete(check);
        clearTimeout(timer);
        resolve(line);
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(check);
        reject(new Error(`no line matching ${re} within ${timeoutMs} ms:\n${this.all.join('\n')}`));
      }, timeoutMs);
      this.#waiters.add(check);
      check();
    });
  }
}

test("the demo's group has exactly one master; its traffic goes through the VIP; abort stops everything", async (t) => {
  const vip = `127.${randomInt(64, 250)}.${randomInt(1, 250)}.${randomInt(2, 250)}`;
  const base = await freeDemoPortBase(vip);
  const lines = new Lines();
  const controller = new AbortController();
  t.after(() => controller.abort());
  const done = runDemo({
    portBase: base,
    vip,
    trafficIntervalMs: 100,
    signal: controller.signal,
    out: (line) => lines.push(line),
  });
  await lines.wait(new RegExp(`^group ${DEMO_GROUP} \\(VIP ${vip.replaceAll('.', '\\.')}\\): master is dispatcher 1 \\(epoch \\d+\\)$`), 10_000);
  // Traffic through the VIP reaches the origins.
  const served = await lines.wait(/^demo request \d+: 200 /, 10_000);
  assert.match(served, /"backend":"(alpha|beta|gamma)"/);
  assert.match(lines.all.find((l) => l.includes('service:'))!, new RegExp(`http://${vip.replaceAll('.', '\\.')}:${base}/`));

  // Each dispatcher's own view: exactly one master holding the VIP, the other backup and knowing it.
  const views = await Promise.all([1, 2].map((i) => getJson<StatusSnapshot>(`http://127.0.0.1:${base + i}/api/v1/status`)));
  const groups = views.map((v) => v.groups?.find((g) => g.name === DEMO_GROUP));
  assert.equal(groups.filter((g) => g?.state === 'master').length, 1, JSON.stringify(groups));
  assert.equal(groups.filter((g) => g?.vipHeld).length, 1, JSON.stringify(groups));
  assert.deepEqual(
    groups.map((g) => [g?.state, g?.vipHeld, g?.master]),
    [
      ['master', true, 1],
      ['backup', false, 1],
    ],
  );

  controller.abort();
  await done;
  assert.equal(lines.all.at(-1), 'stopped.');
  // Nothing left listening: the VIP's port, both admin ports and both election sockets are free.
  assert.equal(await canBind('tcp', vip, base), true);
  for (const i of [1, 2, 3, 4]) assert.equal(await canBind('tcp', '127.0.0.1', base + i), true, `port ${base + i}`);
  for (const i of [3, 4]) assert.equal(await canBind('udp', '127.0.0.1', base + i), true, `udp port ${base + i}`);
});

test('holdfast demo stops cleanly on SIGINT (Ctrl-C) and exits 0', async (t) => {
  const base = await freeDemoPortBase('127.0.0.10');
  const child = spawn(process.execPath, ['bin/holdfast.js', 'demo', '--port-base', String(base)], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let stdout = '';
  let stderr = '';
  child.stderr.on('data', (s: Buffer) => (stderr += String(s)));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no master within 15 s:\n${stdout}\n${stderr}`)), 15_000);
    child.stdout.on('data', (s: Buffer) => {
      stdout += String(s);
      if (/master is dispatcher 1/.test(stdout)) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  child.kill('SIGINT');
  assert.equal(await exited, 0, `${stdout}\n${stderr}`);
  assert.match(stdout, /stopping\.\.\.\n(.*\n)*stopped\.\n$/);
  assert.equal(stderr, '');
});
