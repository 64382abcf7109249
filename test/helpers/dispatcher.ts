/**
 * @module Starts an in-process dispatcher for one HTTP service named 'web' (on 127.0.0.1:0 unless told) in front of
 * the given backends (ids b0, b1, ... in order), admin off unless asked, logging silent, and closes it when the
 * test ends. The config goes through the real schema, so defaults are the product's defaults. Also the
 * single-service pieces (config, start, status polling) the SIP and UDP test dispatchers build on.
 */
import type { TestContext } from 'node:test';
import { configSchema, type DetectorConfig, type FailoverConfig, type HealthConfig, type HttpConfig, type SessionsConfig } from '../../src/config/schema.js';
import { formatHostPort, type HostPort } from '../../src/core/address.js';
import type { Clock } from '../../src/core/clock.js';
import { startDispatcher } from '../../src/dispatcher/dispatcher.js';
import type { BackendStatus } from '../../src/admin/status.js';

export type Dispatcher = Awaited<ReturnType<typeof startDispatcher>>;

export interface TestDispatcherOptions {
  /** "host:port" strings or { host, port }; ids are b0, b1, ... in this order. */
  backends: ReadonlyArray<string | HostPort>;
  http?: Partial<HttpConfig>;
  health?: { connectTimeoutMs?: number; probe?: Partial<HealthConfig['probe']>; detector?: Partial<DetectorConfig> };
  /** services[].http.failover (issue 4); merged into `http`. */
  failover?: Partial<FailoverConfig>;
  /** Run the admin server on 127.0.0.1:0 (for /metrics); off by default. */
  admin?: boolean;
  balancer?: string;
  /** The service's listen address; default '127.0.0.1:0'. */
  listen?: string;
  /** services[].sessions (issue 5: cookie or header virtual sessions, table bounds). */
  sessions?: Partial<SessionsConfig>;
}

/** The handle for the HTTP service 'web'. */
export type TestDispatcher = ServiceDispatcher;

/** One entry of services[] before the schema fills in defaults: at least its name. */
export type ServiceInput = { readonly name: string } & Record<string, unknown>;

/** Options every single-service test dispatcher shares. */
export interface ServiceDispatcherOptions {
  /** Run the admin server on 127.0.0.1:0 (for /metrics); off by default. */
  readonly admin?: boolean | undefined;
  readonly clock?: Clock | undefined;
}

/** What a single-service test dispatcher hands a test: the dispatcher, its bound address and status polling. */
export interface ServiceDispatcher {
  readonly dispatcher: Dispatcher;
  /** The bound address of the service. */
  readonly address: HostPort;
  /** Status of backend `id` (b0, b1, ...) from d.status(). */
  backend(id: string): BackendStatus;
  /** Polls d.status() until backend `id` is in `state`; rejects with the last status seen. */
  waitForState(id: string, state: BackendStatus['state'], timeoutMs?: number): Promise<BackendStatus>;
}

/** services[].backends for addresses given in order: ids b0, b1, ...; a bare number is a port on 127.0.0.1. */
export function backendList(backends: ReadonlyArray<number | string | HostPort>): Array<{ id: string; address: string }> {
  return backends.map((b, i) => ({
    id: `b${i}`,
    address: typeof b === 'number' ? `127.0.0.1:${b}` : typeof b === 'string' ? b : formatHostPort(b),
  }));
}

/**
 * HOLDFAST_TEST_WORKERS=N runs every single-service test dispatcher with `dispatcher.workers: N` (issue 16:
 * the suites that do not reach into the dispatcher's process, run against N worker processes).
 */
const TEST_WORKERS: number | undefined = process.env['HOLDFAST_TEST_WORKERS'] ? Number(process.env['HOLDFAST_TEST_WORKERS']) : undefined;

/** A whole config (through the real schema) with logging silent, admin off unless asked, and the one service. */
export function singleServiceConfig(service: ServiceInput, opts: ServiceDispatcherOptions = {}): ReturnType<typeof configSchema.parse> {
  return configSchema.parse({
    version: 1,
    logging: { level: 'silent' },
    admin: opts.admin ? { enabled: true, listen: '127.0.0.1:0' } : { enabled: false },
    ...(TEST_WORKERS !== undefined ? { dispatcher: { workers: TEST_WORKERS } } : {}),
    services: [service],
  });
}

/**
 * Starts an in-process dispatcher running `config` (whose service `name` the handle reports on), closed
 * when the test ends.
 */
export async function startServiceDispatcher(
  t: TestContext,
  config: ReturnType<typeof configSchema.parse>,
  name: string,
  opts: ServiceDispatcherOptions = {},
): Promise<ServiceDispatcher> {
  const dispatcher = await startDispatcher(config, opts.clock ? { clock: opts.clock } : {});
  t.after(() => dispatcher.close());
  const address = dispatcher.serviceAddress(name);
  const backend = (id: string): BackendStatus => {
    const svc = dispatcher.status().services.find((s) => s.name === name);
    const b = svc?.backends.find((x) => x.id === id);
    if (!b) throw new Error(`status() has no backend ${name}/${id}: ${JSON.stringify(svc)}`);
    return b;
  };
  return {
    dispatcher,
    address,
    backend,
    async waitForState(id, state, timeoutMs = 3_000) {
      const until = Date.now() + timeoutMs;
      for (;;) {
        const b = backend(id);
        if (b.state === state) return b;
        if (Date.now() > until) {
          throw new Error(`backend ${id} did not become '${state}' within ${timeoutMs} ms; last: ${JSON.stringify(b)}`);
        }
        await new Promise((r) => setTimeout(r, 10));
      }
    },
  };
}

/** The config object a test dispatcher runs with (exported for tests that want to inspect it). */
export function testConfig(opts: TestDispatcherOptions): ReturnType<typeof configSchema.parse> {
  return singleServiceConfig(
    {
      name: 'web',
      protocol: 'http',
      listen: opts.listen ?? '127.0.0.1:0',
      ...(opts.balancer ? { balancer: opts.balancer } : {}),
      backends: backendList(opts.backends),
      ...(opts.http || opts.failover ? { http: { ...opts.http, ...(opts.failover ? { failover: opts.failover } : {}) } } : {}),
      ...(opts.health ? { health: opts.health } : {}),
      ...(opts.sessions ? { sessions: opts.sessions } : {}),
    },
    { admin: opts.admin },
  );
}

export function startTestDispatcher(t: TestContext, opts: TestDispatcherOptions): Promise<TestDispatcher> {
  return startServiceDispatcher(t, testConfig(opts), 'web');
}
