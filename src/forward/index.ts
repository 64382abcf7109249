/**
 * @module The forwarders: the last stage of the pipeline, one protocol wing each, all implementing
 * the `Forwarder` contract of pipeline/ and routing every unit of work through the service's Router.
 *
 * - `http/`   HTTP/1.1 on raw sockets: head parser, chunked scanner, backend connection pool, request
 *             log and reply hold (failover), session keys, and the client connection in four layers
 *             (connection, exchange, reply relay, failover/resume).
 * - `http2/`  HTTP/2 to clients (issue 19): node:http2 sessions whose streams each run as a client
 *             connection of the HTTP/1.1 forwarder, so its failover holds per stream; the defences.
 * - `sip/`    SIP over UDP and TCP: dialog routing by Call-ID, Via and Record-Route, and the SDP media
 *             gateway onto the shared media relay (src/media/).
 * - `rtsp/`   RTSP over TCP, its RTP/RTCP through the media relay.
 * - `stream/` plain TCP (splice) and UDP (per-flow relay).
 *
 * Beside the wings: the listener that hands accepted sockets to a forwarder, the lifecycle pieces every
 * connection-oriented forwarder shares (idle timer, live set, one-way relay), and the upstream connect
 * shared by SIP and RTSP.
 */
export { HttpForwarder } from './http/http-forwarder.js';
export { Http2Forwarder } from './http2/h2-forwarder.js';
export { SipForwarder } from './sip/sip-forwarder.js';
export { RtspForwarder } from './rtsp/rtsp-forwarder.js';
export { TcpForwarder } from './stream/tcp-forwarder.js';
export { UdpForwarder } from './stream/udp-forwarder.js';
export { listen, type Listener } from './listener.js';
