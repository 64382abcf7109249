/**
 * @module A real etcd (v3) for tests and benchmarks: one member on loopback with a temporary data
 * directory and free ports, stopped (SIGKILL) and restarted on the same data and ports on demand.
 * `etcdMissing()` says why tests must skip when the `etcd` program (Debian `etcd-server`) is absent.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import https from 'node:https';
import { readFileSync } from 'node:fs';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** null when etcd can run here; otherwise the reason to skip. */
export function etcdMissing(): string | null {
  const r = spawnSync('etcd', ['--version'], { encoding: 'utf8' });
  return r.error || r.status !== 0 ? 'etcd is not installed (Debian package etcd-server; scripts/ensure-peers.mjs installs it as root)' : null;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

export class EtcdServer {
  private child: ChildProcess | null = null;
  private constructor(
    readonly clientPort: number,
    readonly peerPort: number,
    readonly dataDir: string,
    /** Serve the client API over TLS with this pair; clients must present a cert of `ca` when `clientCa`. */
    readonly tls: EtcdTls | null,
  ) {}

  /** `127.0.0.1:port` of the client API, as `cluster.etcd.endpoints` takes it. */
  get endpoint(): string {
    return `127.0.0.1:${this.clientPort}`;
  }

  static async start(tls: EtcdTls | null = null): Promise<EtcdServer> {
    const server = new EtcdServer(await freePort(), await freePort(), mkdtempSync(join(tmpdir(), 'holdfast-etcd-')), tls);
    await server.resume();
    return server;
  }

  /** Starts etcd (again) on the same data directory and ports; resolves when it answers. */
  async resume(): Promise<void> {
    const tls = this.tls;
    const client = `${tls ? 'https' : 'http'}://127.0.0.1:${this.clientPort}`;
    const peer = `http://127.0.0.1:${this.peerPort}`;
    const tlsArgs = tls ? ['--cert-file', tls.cert, '--key-file', tls.key, ...(tls.clientCa ? ['--client-cert-auth', '--trusted-ca-file', tls.clientCa] : [])] : [];
    const child = spawn(
      'etcd',
      [
        '--name', 'hf', '--data-dir', this.dataDir,
        '--listen-client-urls', client, '--advertise-client-urls', client,
        '--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer,
        '--initial-cluster', `hf=${peer}`, '--log-level', 'error',
        ...tlsArgs,
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
    this.child = child;
    const deadline = Date.now() + 15_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`etcd exited (${child.exitCode}): ${stderr}`);
      if (await this.healthy(client)) return;
      if (Date.now() > deadline) throw new Error(`etcd did not answer on ${client} within 15 s: ${stderr}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  private healthy(client: string): Promise<boolean> {
    const tls = this.tls;
    if (!tls) return fetch(`${client}/health`).then((r) => r.ok, () => false);
    return new Promise((resolve) => {
      const req = https.get(`${client}/health`, { ca: readFileSync(tls.ca), ...(tls.clientCa ? { cert: readFileSync(tls.clientCert!), key: readFileSync(tls.clientKey!) } : {}) }, (res) => {
        res.resume();
        resolve(res.statusCode === 200);
      });
      req.on('error', () => resolve(false));
    });
  }

  /** SIGKILLs etcd (the data directory stays for resume()). */
  async kill(): Promise<void> {
    const child = this.child;
    this.child = null;
    if (!child || child.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.kill('SIGKILL');
    });
  }

  async stop(): Promise<void> {
    await this.kill();
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}

/** Files of a TLS etcd: its pair, the CA that signed it, and (mTLS) the CA and a pair of clients. */
export interface EtcdTls {
  readonly cert: string;
  readonly key: string;
  readonly ca: string;
  readonly clientCa?: string;
  readonly clientCert?: string;
  readonly clientKey?: string;
}
