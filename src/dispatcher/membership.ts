/**
 * @module Wires `cluster.membership: etcd` into the dispatcher (issue 20): starts the membership
 * before the services are built (the shared configuration under `<prefix>config` gives their
 * `services`), then keeps each service's backends in step with `<prefix>backends/<service>/`: a
 * configured backend whose key is absent is drained (no new sessions, its sessions stay), one whose
 * key appears is undrained. A service with no backend key at all keeps every configured backend.
 * Backends named in etcd but not in the configuration are not created (a backend's address is in
 * the configuration): they are reported in the membership event's detail. A change of the shared
 * configuration is handed to the dispatcher, which reloads with it (the same plan as a SIGHUP).
 */
import { readFileSync } from 'node:fs';
import type { Backend } from '../core/backend.js';
import { MembershipUnavailableError } from '../core/errors.js';
import { channels, type MembershipEvent } from '../core/diagnostics.js';
import { withSharedServices } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { EtcdMembership, type MembershipView } from '../membership/etcd-membership.js';
import type { HealthMonitor } from '../monitor/index.js';

const NOT_A_MEMBER = 'not a member in etcd';

export interface MembershipService {
  readonly config: { readonly name: string };
  readonly backends: readonly Backend[];
  readonly monitor: HealthMonitor;
}

export interface MembershipWiring {
  readonly membership: EtcdMembership;
  /** The configuration to build the services from (shared services applied). */
  readonly config: Config;
  /**
   * Applies the view now and on every change; `onSharedConfig` is called when the shared
   * configuration's text changes (not when it is deleted: the services in force stay).
   */
  bind(services: readonly MembershipService[], onSharedConfig?: () => void): void;
  /** Applies the view again (after a reload added backends, so that they are drained if not members). */
  refresh(): void;
  /**
   * `local` with its services taken from the current shared configuration (unchanged when there is
   * none); throws ConfigInvalidError naming `etcd:<prefix>config` for a bad shared configuration.
   */
  resolve(local: Config): Config;
  close(): Promise<void>;
}

/** The etcd password: HOLDFAST_ETCD_PASSWORD, else the first line of `passwordFile`. */
function etcdPassword(etcd: NonNullable<Config['cluster']['etcd']>): string | undefined {
  const env = process.env['HOLDFAST_ETCD_PASSWORD'];
  if (env !== undefined && env !== '') return env;
  if (etcd.passwordFile === undefined) return undefined;
  try {
    return readFileSync(etcd.passwordFile, 'utf8').split('\n')[0]!.trimEnd();
  } catch (err) {
    throw new MembershipUnavailableError(etcd.endpoints, `cluster.etcd.passwordFile ${etcd.passwordFile} unreadable (${(err as NodeJS.ErrnoException).code ?? 'EIO'})`, { cause: err });
  }
}

function readTlsFile(etcd: NonNullable<Config['cluster']['etcd']>, what: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new MembershipUnavailableError(etcd.endpoints, `cluster.etcd.tls.${what} ${file} unreadable (${(err as NodeJS.ErrnoException).code ?? 'EIO'})`, { cause: err });
  }
}

export async function startMembership(config: Config): Promise<MembershipWiring> {
  const etcd = config.cluster.etcd!;
  const password = etcdPassword(etcd);
  const tls = etcd.tls
    ? {
        ca: readTlsFile(etcd, 'caFile', etcd.tls.caFile),
        ...(etcd.tls.certFile && etcd.tls.keyFile
          ? { cert: readTlsFile(etcd, 'certFile', etcd.tls.certFile), key: readTlsFile(etcd, 'keyFile', etcd.tls.keyFile) }
          : {}),
      }
    : undefined;
  const membership = await EtcdMembership.start({
    ...(etcd.username !== undefined ? { auth: { username: etcd.username, password: password ?? '' } } : {}),
    ...(tls ? { tls } : {}),
    endpoints: etcd.endpoints,
    prefix: etcd.prefix,
    id: etcd.id,
    address: etcd.address ?? config.services[0]!.listen,
    leaseTtlS: etcd.leaseTtlS,
    dialTimeoutMs: etcd.dialTimeoutMs,
    lastKnownFile: etcd.lastKnownFile,
  });
  const source = `etcd:${etcd.prefix}config`;
  const resolve = (local: Config): Config => {
    const shared = membership.view.sharedConfig;
    return shared === null ? local : withSharedServices(local, shared, source);
  };
  let resolved: Config;
  try {
    resolved = resolve(config);
  } catch (err) {
    await membership.close();
    throw err;
  }
  /** The shared configuration's text last handed on (or started with). */
  let lastShared = membership.view.sharedConfig;
  let bound: readonly MembershipService[] = [];
  let onShared: (() => void) | undefined;
  /** Backends this wiring drained (an operator's drain is left alone). */
  const drained = new Set<Backend>();
  let unsubscribe = (): void => {};
  const apply = (services: readonly MembershipService[], view: MembershipView): void => {
    const unknown: string[] = [];
    for (const s of services) {
      const members = view.backends.get(s.config.name);
      for (const b of s.backends) {
        const member = members === undefined || members.has(b.id);
        if (!member && b.state !== 'draining' && s.monitor.drain(b, NOT_A_MEMBER)) drained.add(b);
        else if (member && drained.has(b)) {
          drained.delete(b);
          s.monitor.undrain(b, 'a member in etcd again');
        }
      }
      for (const id of members ?? []) if (!s.backends.some((b) => b.id === id)) unknown.push(`${s.config.name}/${id}`);
    }
    const notes: string[] = [];
    if (unknown.length > 0) notes.push(`backends in etcd but not in the configuration (add them to it): ${unknown.join(', ')}`);
    if (view.sharedConfig === null && lastShared !== null) notes.push('the shared configuration was deleted: the services in force stay');
    if (notes.length > 0 && channels.membership.hasSubscribers) {
      channels.membership.publish({ type: 'view', dispatchers: view.dispatchers.length, detail: notes.join('; ') } satisfies MembershipEvent);
    }
  };
  return {
    membership,
    config: resolved,
    bind(services, onSharedConfig) {
      bound = services;
      onShared = onSharedConfig;
      apply(services, membership.view);
      unsubscribe = membership.onChange((view) => {
        apply(services, view);
        if (view.sharedConfig !== null && view.sharedConfig !== lastShared) {
          lastShared = view.sharedConfig;
          onShared?.();
        }
      });
    },
    refresh() {
      apply(bound, membership.view);
    },
    resolve,
    async close() {
      unsubscribe();
      await membership.close();
    },
  };
}
