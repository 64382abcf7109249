/**
 * @module A HostSystem for unit tests: interfaces, carrier, sysctls and probe answers are plain
 * fields the test sets; every `ip` line and gratuitous ARP is recorded instead of run.
 */
import type { HostSystem, LinkState } from './host-system.js';

export class FakeHostSystem implements HostSystem {
  readonly interfaces = new Set<string>();
  readonly carrier = new Map<string, boolean>();
  readonly sysctls = new Map<string, string>();
  /** Probe answers by `${iface} ${target}`; missing = true. */
  readonly answers = new Map<string, boolean>();
  /** Every ip line run, as one string. */
  readonly ipLog: string[] = [];
  readonly garps: string[] = [];
  /** What `ip -4 -o addr show` prints. */
  addrShow = '';
  /** An ip line matching this fails (rejects). */
  failIp: RegExp | null = null;

  constructor(interfaces: readonly string[] = []) {
    for (const i of interfaces) {
      this.interfaces.add(i);
      this.carrier.set(i, true);
    }
  }

  interfaceExists(name: string): boolean {
    return this.interfaces.has(name);
  }

  linkState(name: string): LinkState {
    const up = this.carrier.get(name) ?? false;
    return { carrier: up, operstate: up ? 'up' : 'down' };
  }

  async ip(lines: readonly (readonly string[])[]): Promise<void> {
    for (const l of lines) {
      const text = l.join(' ');
      this.ipLog.push(text);
      if (this.failIp?.test(text)) throw new Error(`fake ip failure: ${text}`);
    }
  }

  async ipQuery(): Promise<string> {
    return this.addrShow;
  }

  sysctlRead(key: string): string {
    return this.sysctls.get(key) ?? '0';
  }

  sysctlWrite(key: string, value: string): void {
    this.sysctls.set(key, value);
  }

  async garp(iface: string, address: string, count: number): Promise<void> {
    this.garps.push(`${iface} ${address} x${count}`);
  }

  async arpProbe(iface: string, target: string): Promise<boolean> {
    return this.answers.get(`${iface} ${target}`) ?? true;
  }

  /** The watchLinks listener, to fire link events by hand. */
  linkEvent: ((iface: string) => void) | null = null;

  watchLinks(onEvent: (iface: string) => void): () => void {
    this.linkEvent = onEvent;
    return () => {
      this.linkEvent = null;
    };
  }

  async pingProbe(iface: string, host: string): Promise<boolean> {
    return this.answers.get(`${iface} ${host}`) ?? true;
  }
}
