/**
 * @module A tiny L4 spreader for the scale-out lab (issue 20), standing in for a router's ECMP: one
 * UDP socket in front; each client flow (address, port) goes to one of the live dispatchers, chosen
 * by rendezvous hashing (so a dispatcher leaving moves only its own flows, as resilient ECMP does);
 * each flow has its own upstream socket, so a dispatcher sees one client port per flow. The live
 * set follows etcd (`<prefix>dispatchers/`): a dispatcher whose lease expired stops getting flows.
 * Not product code: the product does not hand-roll ECMP.
 */
import dgram from 'node:dgram';
import { Etcd3, type Watcher } from 'etcd3';
import { mix32, keyHash } from '../../src/core/key-hash.js';

interface Target {
  readonly id: string;
  readonly host: string;
  readonly port: number;
  readonly seed: number;
}

interface Flow {
  readonly upstream: dgram.Socket;
  readonly host: string;
  readonly port: number;
  readonly hash: number;
}

export class L4Spreader {
  private targets: Target[] = [];
  private readonly flows = new Map<string, Flow>();
  /** Flows first sent to each dispatcher id, and datagrams forwarded to each. */
  readonly flowsTo = new Map<string, number>();
  readonly datagramsTo = new Map<string, number>();
  private watcher: Watcher | null = null;
  private client: Etcd3 | null = null;

  private constructor(private readonly front: dgram.Socket) {}

  static async start(): Promise<L4Spreader> {
    const front = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => front.bind(0, '127.0.0.1', () => resolve()));
    const s = new L4Spreader(front);
    front.on('message', (msg, rinfo) => s.fromClient(msg, rinfo));
    return s;
  }

  get address(): string {
    const a = this.front.address();
    return `${a.address}:${a.port}`;
  }

  /** Follows the dispatchers registered under `prefix` in etcd. */
  async follow(endpoint: string, prefix: string): Promise<void> {
    const client = new Etcd3({ hosts: `http://${endpoint}` });
    this.client = client;
    const key = `${prefix}dispatchers/`;
    const live = new Map<string, string>();
    const apply = (): void => {
      this.setTargets([...live].map(([id, value]) => ({ id, address: (JSON.parse(value) as { address: string }).address })));
    };
    for (const [k, v] of Object.entries(await client.getAll().prefix(key).strings())) live.set(k.slice(key.length), v);
    apply();
    const watcher = await client.watch().prefix(key).create();
    this.watcher = watcher;
    watcher.on('put', (kv) => {
      live.set(kv.key.toString().slice(key.length), kv.value.toString());
      apply();
    });
    watcher.on('delete', (kv) => {
      live.delete(kv.key.toString().slice(key.length));
      apply();
    });
  }

  /** Live dispatcher ids. */
  live(): string[] {
    return this.targets.map((t) => t.id);
  }

  setTargets(list: readonly { id: string; address: string }[]): void {
    this.targets = list.map(({ id, address }) => {
      const i = address.lastIndexOf(':');
      return { id, host: address.slice(0, i), port: Number(address.slice(i + 1)), seed: keyHash(id) };
    });
  }

  private pick(hash: number): Target | null {
    let best: Target | null = null;
    let bestScore = -1;
    for (const t of this.targets) {
      const score = mix32(hash ^ t.seed);
      if (score > bestScore) {
        bestScore = score;
        best = t;
      }
    }
    return best;
  }

  private fromClient(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const key = `${rinfo.address}:${rinfo.port}`;
    let flow = this.flows.get(key);
    const isNew = flow === undefined;
    if (!flow) {
      const upstream = dgram.createSocket('udp4');
      upstream.bind(0, '127.0.0.1');
      upstream.on('message', (reply) => this.front.send(reply, rinfo.port, rinfo.address));
      upstream.on('error', () => {});
      flow = { upstream, host: rinfo.address, port: rinfo.port, hash: keyHash(key) };
      this.flows.set(key, flow);
    }
    const target = this.pick(flow.hash);
    if (!target) return;
    if (isNew) this.flowsTo.set(target.id, (this.flowsTo.get(target.id) ?? 0) + 1);
    this.datagramsTo.set(target.id, (this.datagramsTo.get(target.id) ?? 0) + 1);
    flow.upstream.send(msg, target.port, target.host);
  }

  async close(): Promise<void> {
    await this.watcher?.cancel().catch(() => {});
    this.client?.close();
    for (const f of this.flows.values()) f.upstream.close();
    this.flows.clear();
    await new Promise<void>((r) => this.front.close(() => r()));
  }
}
