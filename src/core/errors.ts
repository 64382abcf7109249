/**
 * @module Every error holdfast raises: one base class and one subclass per condition, each with a
 * stable `code` that operators can grep for and the README documents (test: errors.test.ts).
 */

export abstract class HoldfastError extends Error {
  abstract readonly code: string;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The configuration file could not be read, parsed or validated. `issues` lists every problem. */
export class ConfigInvalidError extends HoldfastError {
  readonly code = 'HF_ERR_CONFIG_INVALID';
  constructor(readonly issues: readonly string[], options?: { cause?: unknown }) {
    super(`invalid configuration:\n  ${issues.join('\n  ')}`, options);
  }
}

/** A balancer name that no module registered. */
export class UnknownBalancerError extends HoldfastError {
  readonly code = 'HF_ERR_UNKNOWN_BALANCER';
  constructor(readonly balancer: string, readonly known: readonly string[]) {
    super(`unknown balancer "${balancer}", expected one of: ${known.join(', ')}`);
  }
}

/** How a backend connection failed, as passive detection reports it. */
export type BackendFailureKind = 'refused' | 'reset' | 'timeout' | 'closed' | 'protocol';

/** A client sent a request that holdfast refuses (smuggling, bad framing); answered with `status`. */
export class HttpRequestError extends HoldfastError {
  readonly code = 'HF_ERR_HTTP_REQUEST';
  constructor(readonly status: 400 | 408 | 413 | 414 | 431 | 501 | 505, detail: string) {
    super(detail);
  }
}

/** A listener could not bind its address. */
export class ListenError extends HoldfastError {
  readonly code = 'HF_ERR_LISTEN';
  constructor(readonly address: string, options?: { cause?: unknown }) {
    super(`cannot listen on ${address}`, options);
  }
}

/** A component was used after close() or destroy(). */
export class ClosedError extends HoldfastError {
  readonly code = 'HF_ERR_CLOSED';
  constructor(readonly component: string) {
    super(`${component} is closed`);
  }
}

/** Command-line usage error. */
export class UsageError extends HoldfastError {
  readonly code = 'HF_ERR_USAGE';
}

/**
 * The cluster key that authenticates agent ↔ dispatcher messages is missing, too short, or kept in
 * a file that other users can read. `path` names the key file when one was involved.
 */
export class ClusterKeyError extends HoldfastError {
  readonly code = 'HF_ERR_CLUSTER_KEY';
  constructor(message: string, readonly path?: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/**
 * An identity takeover step failed: a VIP could not be bound on loopback, or `ip addr` / `arping`
 * failed for a Linux VIP. `command` is what ran (or the address bound), `detail` what it said.
 */
export class TakeoverError extends HoldfastError {
  readonly code = 'HF_ERR_TAKEOVER';
  constructor(readonly command: string, readonly detail: string, options?: { cause?: unknown }) {
    super(`identity takeover: ${command}: ${detail}`, options);
  }
}

/**
 * The HANet configuration names a network interface this host does not have (or a sibling's `via`
 * that is not among hanet.interfaces): found at start, before anything is changed.
 */
export class HanetInterfaceError extends HoldfastError {
  readonly code = 'HF_ERR_HANET_INTERFACE';
  constructor(readonly iface: string, detail: string) {
    super(`hanet: interface ${iface}: ${detail}`);
  }
}

/**
 * A HANet change could not be made: `ip`, a sysctl write or `arping` failed. `command` is what ran,
 * `detail` what it said.
 */
export class HanetCommandError extends HoldfastError {
  readonly code = 'HF_ERR_HANET_COMMAND';
  constructor(readonly command: string, readonly detail: string, options?: { cause?: unknown }) {
    super(`hanet: ${command}: ${detail}`, options);
  }
}

/** A TLS certificate or key cannot be served: unreadable, unparsable, mismatched or out of its validity. */
export class TlsCertificateError extends HoldfastError {
  readonly code = 'HF_ERR_TLS_CERTIFICATE';
  constructor(readonly file: string, readonly reason: string, options?: { cause?: unknown }) {
    super(`${file}: ${reason}`, options);
  }
}

/**
 * `cluster.membership: etcd` could not reach etcd at start (or etcd refused its credentials) and has
 * no last-known view to start from (`cluster.etcd.lastKnownFile`), or that file is unreadable.
 */
export class MembershipUnavailableError extends HoldfastError {
  readonly code = 'HF_ERR_MEMBERSHIP_UNAVAILABLE';
  constructor(readonly endpoints: readonly string[], detail: string, options?: { cause?: unknown }) {
    super(`cannot use etcd at ${endpoints.join(', ')}: ${detail}`, options);
  }
}
