/**
 * @module The replicated dispatcher (SARA II, III.F; the SIP ALG paper; CoRAL's reintegration): the
 * election of each group's master over authenticated UDP adverts (election.ts, election-transport.ts),
 * and the session-state stream from master to backups — its public face and data path
 * (state-replicator.ts), its TCP transport (replication-transport.ts), batching and snapshots
 * (replication-batch.ts) and the applying side (replication-apply.ts) — plus the groups' configuration
 * fragment.
 */
export { Election, type ElectionEvent } from './election.js';
export { ElectionTransport, type ElectionTransportStats } from './election-transport.js';
export { vipOf } from './replication-schema.js';
export { createStateReplicator, type ReplicatedRelay, type ReplicatedService, type ReplicatorStats, type StateReplicator } from './state-replicator.js';
