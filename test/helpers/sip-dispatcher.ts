/**
 * @module Starts an in-process dispatcher for one SIP service named 'sip' (on 127.0.0.1:0 unless told;
 * UDP and TCP share the port number) in front of the given backends (ids b0, b1, ... in order), admin
 * off unless asked, logging silent, and closes it when the test ends. The config goes through the
 * real schema, so everything not overridden is the product's default.
 */
import type { TestContext } from 'node:test';
import type { configSchema, HealthConfig, DetectorConfig, SessionsConfig, SipConfig } from '../../src/config/schema.js';
import { formatHostPort, type HostPort } from '../../src/core/address.js';
import type { Clock } from '../../src/core/clock.js';
import { backendList, singleServiceConfig, startServiceDispatcher, type Dispatcher, type ServiceDispatcher } from './dispatcher.js';

export type { Dispatcher };

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

export interface SipDispatcher extends ServiceDispatcher {
  /** "127.0.0.1:port": what runUac({ target }) takes (the same port on UDP and TCP). */
  readonly target: string;
}

/** The config a SIP test dispatcher runs with (exported for tests that want to inspect it). */
export function sipTestConfig(opts: SipDispatcherOptions): ReturnType<typeof configSchema.parse> {
  const sip = { ...opts.sip, ...(opts.transports ? { transports: [...opts.transports] } : {}) };
  return singleServiceConfig(
    {
      name: 'sip',
      protocol: 'sip',
      listen: opts.listen ?? '127.0.0.1:0',
      ...(opts.balancer ? { balancer: opts.balancer } : {}),
      backends: backendList(opts.backends),
      ...(Object.keys(sip).length > 0 ? { sip } : {}),
      ...(opts.sessions ? { sessions: opts.sessions } : {}),
      ...(opts.health ? { health: opts.health } : {}),
    },
    { admin: opts.admin },
  );
}

export async function startSipDispatcher(t: TestContext, opts: SipDispatcherOptions): Promise<SipDispatcher> {
  const d = await startServiceDispatcher(t, sipTestConfig(opts), 'sip', { clock: opts.clock });
  return { ...d, target: formatHostPort(d.address) };
}
