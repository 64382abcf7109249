/**
 * @module HANet's transmission agent requester (§2.3, §3.7 steps 3-5): on a server whose public
 * links have all failed, it points the server's traffic at a sibling over a private link and asks
 * that sibling to take over its packet transmission, repeating the request every
 * requestIntervalMs until it is acknowledged, then refreshing it every keepaliveMs. A sibling that
 * refuses, or stays silent for siblingTimeoutMs, is given up for the next one (in configured order,
 * only those whose private link is GOOD); when every sibling has refused or is silent the server is
 * isolated, which is logged, and the round starts again. `stop()` hands the job back (release).
 */
import type { Clock, TimerHandle } from '../core/clock.js';
import type { HanetSiblingConfig } from '../config/agent-schema.js';
import type { TransmissionAgentMessage, TransmissionAgentReason } from '../wire/transmission-agent.js';

export type RequesterState = 'idle' | 'asking' | 'relayed' | 'isolated';

/** Releases sent when handing the job back: a lost one is covered by the sibling's silence timeout. */
export const RELEASE_REPEATS = 3;

export interface RequesterOptions {
  /** This server's service address (the sibling answers ARP for it). */
  address: string;
  siblings: readonly HanetSiblingConfig[];
  requestIntervalMs: number;
  keepaliveMs: number;
  siblingTimeoutMs: number;
  clock: Clock;
  /** Whether a private interface is GOOD now (siblings behind a dead link are skipped). */
  linkGood(iface: string): boolean;
  /** Sends one message to a sibling. */
  send(sibling: HanetSiblingConfig, kind: 'request' | 'release'): void;
  /** Points the server's traffic at `sibling` (service address on its link, default route via it). */
  attach(sibling: HanetSiblingConfig): Promise<void>;
  onRelayed?(sibling: HanetSiblingConfig): void;
  onRefused?(sibling: HanetSiblingConfig, reason: TransmissionAgentReason): void;
  onLost?(sibling: HanetSiblingConfig): void;
  onIsolated?(): void;
}

export class TransmissionAgentRequester {
  readonly #o: RequesterOptions;
  #state: RequesterState = 'idle';
  #current: HanetSiblingConfig | null = null;
  /** Siblings tried in this round (refused or silent). */
  #tried = new Set<number>();
  #lastHeard = 0;
  #askedAt = 0;
  #timer: TimerHandle | null = null;
  #attached: Promise<void> = Promise.resolve();

  constructor(o: RequesterOptions) {
    this.#o = o;
  }

  get state(): RequesterState {
    return this.#state;
  }

  /** The sibling asked or relaying now. */
  get sibling(): HanetSiblingConfig | null {
    return this.#current;
  }

  /** Starts asking (no-op when already asking or relayed). */
  start(): void {
    if (this.#state !== 'idle') return;
    this.#tried.clear();
    this.#next();
  }

  /** Hands the job back to the server: release to the sibling, timers off. */
  stop(): void {
    this.#timer?.cancel();
    this.#timer = null;
    const sibling = this.#current;
    this.#current = null;
    this.#state = 'idle';
    if (sibling) for (let i = 0; i < RELEASE_REPEATS; i++) this.#o.send(sibling, 'release');
  }

  /** Resolves when the local changes for the current sibling are made (tests, and the composition's ordering). */
  get attached(): Promise<void> {
    return this.#attached;
  }

  /** A message from a sibling (authenticated and de-duplicated by the channel). */
  onMessage(m: TransmissionAgentMessage): void {
    const sibling = this.#current;
    if (!sibling || m.host !== sibling.id || m.address !== this.#o.address) return;
    if (m.kind === 'ack') {
      this.#lastHeard = this.#o.clock.now();
      if (this.#state !== 'relayed') {
        this.#state = 'relayed';
        this.#schedule(this.#o.keepaliveMs);
        this.#o.onRelayed?.(sibling);
      }
    } else if (m.kind === 'refuse') {
      this.#o.onRefused?.(sibling, m.reason);
      this.#tried.add(sibling.id);
      this.#next();
    }
  }

  /** Asks the next sibling not tried in this round whose link is GOOD; isolated when there is none. */
  #next(): void {
    this.#timer?.cancel();
    this.#timer = null;
    const candidate = this.#o.siblings.find((s) => !this.#tried.has(s.id) && this.#o.linkGood(s.via));
    if (!candidate) {
      this.#current = null;
      if (this.#state !== 'isolated') this.#o.onIsolated?.();
      this.#state = 'isolated';
      // Try the whole list again later: a sibling's public link may come back.
      this.#tried.clear();
      this.#timer = this.#o.clock.setTimeout(() => {
        this.#timer = null;
        this.#next();
      }, this.#o.siblingTimeoutMs);
      return;
    }
    this.#current = candidate;
    this.#state = 'asking';
    this.#askedAt = this.#o.clock.now();
    // Point the traffic at it and ask at once (in parallel: the sibling sets itself up meanwhile).
    this.#o.send(candidate, 'request');
    this.#attached = this.#o.attach(candidate).catch(() => {});
    this.#schedule(this.#o.requestIntervalMs);
  }

  #schedule(ms: number): void {
    this.#timer?.cancel();
    this.#timer = this.#o.clock.setInterval(() => this.#tick(), ms);
  }

  #tick(): void {
    const sibling = this.#current;
    if (!sibling) return;
    const now = this.#o.clock.now();
    const since = this.#state === 'relayed' ? this.#lastHeard : this.#askedAt;
    if (now - since >= this.#o.siblingTimeoutMs || !this.#o.linkGood(sibling.via)) {
      if (this.#state === 'relayed') this.#o.onLost?.(sibling);
      this.#tried.add(sibling.id);
      this.#next();
      return;
    }
    this.#o.send(sibling, 'request');
  }
}
