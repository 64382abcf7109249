/**
 * @module The probes of HANet's three fault detection methods (§3.2), over HostSystem: carrier (the
 * bonding driver's MII monitor: /sys/class/net/IF/carrier is 1 and operstate up or unknown; hanet.ts
 * also pokes it on every netlink link event of its interface), ARP
 * (an ARP request to each target out of the interface, good when any answers; sees a dead switch
 * port or a filter that carrier cannot), host ping (an ICMP echo to each listed host through the
 * interface, good when any answers; works beyond the LAN). `createMonitor` builds the monitor one
 * configuration entry asks for.
 */
import type { Clock } from '../core/clock.js';
import type { HanetMonitorConfig } from '../config/agent-schema.js';
import type { HostSystem } from './host-system.js';
import { PeriodicLinkMonitor, type LinkMonitor, type Probe } from './link-monitor.js';

/** operstate values under which a carrier counts: `unknown` is what virtual links without RFC 2863 support report. */
const UP_OPERSTATES: ReadonlySet<string> = new Set(['up', 'unknown']);

export function carrierProbe(sys: HostSystem, iface: string): Probe {
  return async () => {
    const s = sys.linkState(iface);
    return s.carrier && UP_OPERSTATES.has(s.operstate);
  };
}

/** Any target answering is enough: one dead target must not fail the link (HANet: ARP monitoring's false positives). */
export function anyOf(targets: readonly string[], one: (target: string, timeoutMs: number) => Promise<boolean>): Probe {
  return (timeoutMs) =>
    new Promise<boolean>((resolve) => {
      let pending = targets.length;
      if (pending === 0) return resolve(false);
      for (const t of targets) {
        one(t, timeoutMs).then(
          (ok) => {
            if (ok) resolve(true);
            else if (--pending === 0) resolve(false);
          },
          () => {
            if (--pending === 0) resolve(false);
          },
        );
      }
    });
}

export function createMonitor(iface: string, cfg: HanetMonitorConfig, sys: HostSystem, clock: Clock): LinkMonitor {
  const timing = { periodMs: cfg.periodMs, timeoutMs: cfg.timeoutMs, misses: cfg.misses };
  switch (cfg.type) {
    case 'carrier':
      return new PeriodicLinkMonitor('carrier', iface, carrierProbe(sys, iface), timing, clock);
    case 'arp':
      return new PeriodicLinkMonitor('arp', iface, anyOf(cfg.targets, (t, ms) => sys.arpProbe(iface, t, ms)), timing, clock);
    case 'ping':
      return new PeriodicLinkMonitor('ping', iface, anyOf(cfg.hosts, (h, ms) => sys.pingProbe(iface, h, ms)), timing, clock);
  }
}
