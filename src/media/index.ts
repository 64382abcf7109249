/**
 * @module The media relay (SARA III.A's announced flows): RTP/RTCP port pairs that carry a session's
 * media through the dispatcher to the backend its signalling is pinned to, latching the client's
 * address, following re-pins, and reporting every port change so that replication can rebuild the
 * pairs on a backup. Shared by the SIP and RTSP forwarders and by replication.
 */
export {
  liveRelays,
  MediaRelay,
  type MediaRelayOptions,
  type MediaRelayStats,
  type RelayChange,
  type RelayPortState,
  type RelayStream,
} from './media-relay.js';
