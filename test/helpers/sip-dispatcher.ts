/**
 * @module Starts an in-process dispatcher for one SIP service named 'sip' (on 127.0.0.1:0 unless told;
 * UDP and TCP share the port number) in front of the given backends (ids b0, b1, ... in order), admin
 * off unless asked, logging silent, and closes it when the test ends. The config goes through the
 * real schema, so everything not overridden is the product's default.
 */
import type { TestContext } from 'node:test';
import { configSchema, type HealthConfig, type DetectorConfig, type SessionsConfig, type SipConfig } from '../../src/config/schema.js';
import { formatHostPort, type HostPort } from '../../src/core/address.js';
import type { Clock } from '../../src/core/clock.js';
import { startDispatcher } from '../../src/dispatcher/dispatcher.js';
import type { BackendStatus } from '../../src/admin/status.js';

export type Dispatcher = Awaited<ReturnType<typeof startDispatcher>>;

export interface SipDispatcherOptions {
  /** Backend ports on 127.0.0.1, "host:port" strings or { host, port }; ids b0, b1, ... in this order. */
  readonly backends: ReadonlyArray<number | string | HostPort>;
  /** services[].sip.transports; default the product's (both). */
  readonly transports?: ReadonlyArray<'udp' | 'tcp'>;
  /** The rest of services[].sip (malformed, maxMessageBytes, recordRoute, tcpIdleTimeoutMs). */
  readonly sip?: Partial<Omit<SipConfig, 'transports'>>;
  readonly sessions?: Partial<SessionsConfig>;
  readonly health?: { connectTimeoutMs?: number; probe?: Partial<HealthConfig['probe']>; detector?: Partial<DetectorConfig> };
  readonly balancer?: string;
  /** The service's listen address; default '127.0.0.1:0'. */
  readonly listen?: string;
  /** Run the admin server on 127.0.0.1:0 (for /metrics); off by default. */
  readonly admin?: boolean;
  readonly clock?: Clock;
}

export interface SipDispatcher {
  readonly dispatcher: Dispatcher;
  /** The bound address of 'sip' (the same port on UDP and TCP). */
  readonly address: HostPort;
  /** "127.0.0.1:port": what runUac({ target }) takes. */
  readonly target: string;
  /** Status of backend `id` (b0, b1, ...). */
  backend(id: string): BackendStatus;
  /** Polls status() until backend `id` is in `state`; rejects with the last status seen. */
  waitForState(id: string, state: BackendStatus['state'], timeoutMs?: number): Promise<BackendStatus>;
}

function backendAddress(b: number | string | HostPort): string {
  if (typeof b === 'number') return `127.0.0.1:${b}`;
  return typeof b === 'string' ? b : formatHostPort(b);
}

/** The config a SIP test dispatcher runs with (exported for tests that want to inspect it). */
export function sipTestConfig(opts: SipDispatcherOptions): ReturnType<typeof configSchema.parse> {
  const sip = { ...opts.sip, ...(opts.transports ? { transports: [...opts.transports] } : {}) };
  return configSchema.parse({
    version: 1,
    logging: { level: 'silent' },
    admin: opts.admin ? { enabled: true, listen: '127.0.0.1:0' } : { enabled: false },
    services: [
      {
        name: 'sip',
        protocol: 'sip',
        listen: opts.listen ?? '127.0.0.1:0',
        ...(opts.balancer ? { balancer: opts.balancer } : {}),
        backends: opts.backends.map((b, i) => ({ id: `b${i}`, address: backendAddress(b) })),
        ...(Object.keys(sip).length > 0 ? { sip } : {}),
        ...(opts.sessions ? { sessions: opts.sessions } : {}),
        ...(opts.health ? { health: opts.health } : {}),
      },
    ],
  });
}

export async function startSipDispatcher(t: TestContext, opts: SipDispatcherOptions): Promise<SipDispatcher> {
  const dispatcher = await startDispatcher(sipTestConfig(opts), opts.clock ? { clock: opts.clock } : {});
  t.after(() => dispatcher.close());
  const address = dispatcher.serviceAddress('sip');
  const backend = (id: string): BackendStatus => {
    const svc = dispatcher.status().services.find((s) => s.name === 'sip');
    const b = svc?.backends.find((x) => x.id === id);
    if (!b) throw new Error(`status() has no backend sip/${id}: ${JSON.stringify(svc)}`);
    return b;
  };
  return {
    dispatcher,
    address,
    target: formatHostPort(address),
    backend,
    async waitForState(id, state, timeoutMs = 3_000) {
      const until = Date.now() + timeoutMs;
      for (;;) {
        const b = backend(id);
        if (b.state === state) return b;
        if (Date.now() > until) throw new Error(`backend ${id} did not become '${state}' within ${timeoutMs} ms; last: ${JSON.stringify(b)}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    },
  };
}
