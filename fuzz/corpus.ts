/** @module Seed messages for the mutational fuzzers: real requests, valid and near-valid. */

export const HTTP_REQUESTS: readonly string[] = [
  'GET / HTTP/1.1\r\nHost: a.example\r\n\r\n',
  'GET /path?q=1&r=%20 HTTP/1.1\r\nHost: a.example:8080\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n',
  'POST /form HTTP/1.1\r\nHost: a\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 11\r\n\r\nhello=world',
  'POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=v\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n',
  'PUT /k HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc',
  'GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
  'GET / HTTP/1.0\r\n\r\n',
  'HEAD /h HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n\r\n',
  'OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n',
  'GET http://a.example/abs HTTP/1.1\r\nHost: a.example\r\n\r\n',
  'DELETE /d HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nCookie: s=1; t=2\r\n\r\n',
  'POST / HTTP/1.1\r\nHost: a\r\nConnection: Content-Length\r\nContent-Length: 32\r\n\r\nGET /smug HTTP/1.1\r\nHost: a\r\n\r\n',
  'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
  '\r\nGET /after-crlf HTTP/1.1\r\nHost: a\r\n\r\n',
];

export const HTTP_RESPONSES: readonly string[] = [
  'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello',
  'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nETag: "abc"\r\nAccept-Ranges: bytes\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
  'HTTP/1.0 404 Not Found\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\n',
  'HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n',
  'HTTP/1.1 204 No Content\r\nSet-Cookie: s=1; Path=/; HttpOnly\r\n\r\n',
];

export const SIP_MESSAGES: readonly string[] = [
  'INVITE sip:bob@192.0.2.4 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds;rport\r\nMax-Forwards: 70\r\nTo: Bob <sip:bob@192.0.2.4>\r\nFrom: Alice <sip:alice@192.0.2.1>;tag=1928301774\r\nCall-ID: a84b4c76e66710@pc33\r\nCSeq: 314159 INVITE\r\nContact: <sip:alice@192.0.2.1>\r\nContent-Type: application/sdp\r\nContent-Length: 129\r\n\r\nv=0\r\no=alice 2890844526 2890844526 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\n',
  'SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKhf.1, SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds\r\nTo: Bob <sip:bob@192.0.2.4>;tag=a6c85cf\r\nFrom: Alice <sip:alice@192.0.2.1>;tag=1928301774\r\nCall-ID: a84b4c76e66710@pc33\r\nCSeq: 314159 INVITE\r\nContent-Length: 0\r\n\r\n',
  'REGISTER sip:registrar.example SIP/2.0\r\nv: SIP/2.0/TCP 192.0.2.9:5060;branch=z9hG4bKnashds7\r\nt: <sip:bob@example>\r\nf: <sip:bob@example>;tag=456248\r\ni: 843817637684230@998sdasdh09\r\nCSeq: 1826 REGISTER\r\nm: <sip:bob@192.0.2.9>\r\nExpires: 7200\r\nl: 0\r\n\r\n',
  'BYE sip:alice@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.4:5060;branch=z9hG4bKnashds8\r\nMax-Forwards: 0\r\nFrom: <sip:bob@192.0.2.4>;tag=a6c85cf\r\nTo: <sip:alice@192.0.2.1>;tag=1928301774\r\nCall-ID: a84b4c76e66710@pc33\r\nCSeq: 231 BYE\r\nContent-Length: 0\r\n\r\n',
];

export const SDP_BODIES: readonly string[] = [
  'v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtcp:40001\r\nm=video 40002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n',
  'v=0\r\no=- 2 2 IN IP6 ::1\r\ns=-\r\nc=IN IP6 ::1\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\na=inactive\r\n',
];

export const RTSP_MESSAGES: readonly string[] = [
  'SETUP rtsp://media.example/stream/track1 RTSP/1.0\r\nCSeq: 3\r\nTransport: RTP/AVP;unicast;client_port=8000-8001\r\n\r\n',
  'RTSP/1.0 200 OK\r\nCSeq: 3\r\nSession: 12345678;timeout=60\r\nTransport: RTP/AVP;unicast;client_port=8000-8001;server_port=9000-9001\r\n\r\n',
  'PLAY rtsp://media.example/stream RTSP/1.0\r\nCSeq: 4\r\nSession: 12345678\r\nRange: npt=0-\r\n\r\n',
  'ANNOUNCE rtsp://media.example/stream RTSP/1.0\r\nCSeq: 5\r\nContent-Type: application/sdp\r\nContent-Length: 10\r\n\r\nv=0\r\ns=-\r\n',
];
