/**
 * @module Composition root of `holdfast demo`: a live cluster on loopback in one command. Three
 * demo origins, one dispatcher in front of them with its admin API, and a little traffic of its
 * own so that the status page and the metrics move. Runs until aborted, then closes everything.
 */
import http from 'node:http';
import { formatHostPort } from '../core/address.js';
import { realClock } from '../core/clock.js';
import { configSchema, type Config } from '../config/schema.js';
import { startDispatcher } from '../dispatcher/dispatcher.js';
import { createLogger } from '../admin/log.js';
import { startDemoBackend, type DemoBackend } from './demo-backend.js';

export interface DemoOptions {
  /** The service listens on portBase, the admin API on portBase + 1. */
  portBase?: number;
  signal?: AbortSignal;
  out?: (line: string) => void;
  /** Interval of the demo's own requests. */
  trafficIntervalMs?: number;
}

export const DEMO_PORT_BASE = 8080;
export const DEMO_TRAFFIC_INTERVAL_MS = 1000;

function get(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve(`${res.statusCode} ${body.trim()}`));
    });
    req.on('error', reject);
    req.setTimeout(2000, () => req.destroy(new Error('timeout')));
  });
}

export async function runDemo(options: DemoOptions = {}): Promise<void> {
  const out = options.out ?? ((line: string) => console.log(line));
  const base = options.portBase ?? DEMO_PORT_BASE;
  const backends: DemoBackend[] = [];
  try {
    for (const id of ['alpha', 'beta', 'gamma']) backends.push(await startDemoBackend(id));
    const config: Config = configSchema.parse({
      logging: { level: 'info', format: 'pretty' },
      admin: { listen: `127.0.0.1:${base + 1}` },
      services: [
        {
          name: 'demo-web',
          protocol: 'http',
          listen: `127.0.0.1:${base}`,
          balancer: 'least-connections',
          backends: backends.map((b) => ({ id: b.id, address: formatHostPort(b.address) })),
          health: { probe: { type: 'http', path: '/health', intervalMs: 500 } },
        },
      ],
    });
    const logger = createLogger(config.logging);
    const dispatcher = await startDispatcher(config, { logger });
    const service = `http://${formatHostPort(dispatcher.serviceAddress('demo-web'))}/`;
    const admin = dispatcher.adminAddress ? `http://${formatHostPort(dispatcher.adminAddress)}` : '(disabled)';
    out('holdfast demo is running: three origins behind one dispatcher, on loopback.');
    out(`  service:  ${service}          try: curl ${service}`);
    out(`  status:   ${admin}/api/v1/status`);
    out(`  metrics:  ${admin}/metrics`);
    out('Press Ctrl-C to stop.');

    let n = 0;
    const traffic = realClock.setInterval(() => {
      n++;
      get(`${service}demo/${n}`).then(
        (line) => out(`demo request ${n}: ${line}`),
        (err: Error) => out(`demo request ${n} failed: ${err.message}`),
      );
    }, options.trafficIntervalMs ?? DEMO_TRAFFIC_INTERVAL_MS);

    await new Promise<void>((resolve) => {
      if (options.signal?.aborted) resolve();
      options.signal?.addEventListener('abort', () => resolve(), { once: true });
    });
    traffic.cancel();
    out('stopping...');
    await dispatcher.close();
    logger.flush?.();
  } finally {
    await Promise.all(backends.map((b) => b.close()));
  }
  out('stopped.');
}
