/**
 * @module Every parser of untrusted bytes, as a fuzz target: a corpus of real messages and the
 * property each input must keep. For all: no exception escapes, no input takes longer than
 * SLOW_INPUT_MS. For HTTP requests: the differential framing against llhttp (http-framing.ts).
 */
import { ChunkedScanner } from '../src/forward/http/http-chunked.js';
import { parseResponseHead, ResponseHeadError } from '../src/forward/http/http-head.js';
import { parseRtspMessage } from '../src/sessions/rtsp-message.js';
import { parseSdp } from '../src/sessions/sdp.js';
import { parseSipMessage } from '../src/sessions/sip-message.js';
import { decodeAvailability, encodeAvailability } from '../src/wire/availability.js';
import { decodeElectionAdvert } from '../src/wire/election-advert.js';
import { MessageType, open, seal } from '../src/wire/envelope.js';
import { decodeTransmissionAgent, encodeTransmissionAgent } from '../src/wire/transmission-agent.js';
import { decodeLoadVector } from '../src/wire/load-vector.js';
import { decodeFrame, encodeFrame } from '../src/wire/replication-frame.js';
import { HTTP_REQUESTS, HTTP_RESPONSES, RTSP_MESSAGES, SDP_BODIES, SIP_MESSAGES } from './corpus.js';
import { disagreement } from './http-framing.js';

/** One input taking longer than this is a hang (a super-linear parser path). */
export const SLOW_INPUT_MS = 50;

export interface FuzzTarget {
  readonly name: string;
  readonly corpus: readonly Buffer[];
  /** Null when the input keeps the target's property, else what broke (exceptions are caught by the runner). */
  check(input: Buffer): string | null;
}

const bytes = (list: readonly string[]): Buffer[] => list.map((s) => Buffer.from(s, 'latin1'));
const FUZZ_KEY = Buffer.alloc(32, 7);

export const TARGETS: readonly FuzzTarget[] = [
  { name: 'http-request-differential', corpus: bytes(HTTP_REQUESTS), check: disagreement },
  {
    name: 'http-response',
    corpus: bytes(HTTP_RESPONSES),
    check(input) {
      const s = input.toString('latin1');
      const end = s.indexOf('\r\n\r\n');
      if (end < 0) return null;
      try {
        const res = parseResponseHead(s.slice(0, end), 'GET');
        if (res.chunked) new ChunkedScanner().scan(input, end + 4, input.length);
      } catch (err) {
        if (!(err instanceof ResponseHeadError)) throw err;
      }
      return null;
    },
  },
  {
    name: 'sip',
    corpus: bytes(SIP_MESSAGES),
    check(input) {
      parseSipMessage(input, { transport: 'udp' });
      parseSipMessage(input, { transport: 'tcp', maxMessageBytes: 65_535 });
      return null;
    },
  },
  {
    name: 'sdp',
    corpus: bytes(SDP_BODIES),
    check(input) {
      parseSdp(input.toString('utf8'));
      return null;
    },
  },
  {
    name: 'rtsp',
    corpus: bytes(RTSP_MESSAGES),
    check(input) {
      parseRtspMessage(input);
      return null;
    },
  },
  {
    name: 'wire',
    corpus: [
      seal(MessageType.Availability, encodeAvailability({ host: 7, seq: 9, flag: 'available', timestamp: 123 }), FUZZ_KEY),
      encodeAvailability({ host: 1, seq: 2, flag: 'planned-failure', timestamp: 3 }),
      Buffer.alloc(39, 0x41),
      Buffer.alloc(37, 0x42),
      seal(
        MessageType.TransmissionAgent,
        encodeTransmissionAgent({ kind: 'request', reason: 'none', host: 1, seq: 1, timestamp: 5, address: '10.0.0.21', nextHop: '10.99.0.1' }),
        FUZZ_KEY,
      ),
    ],
    check(input) {
      const r = open(input, FUZZ_KEY);
      const body = r.ok ? r.body : input;
      // Decoders see authenticated bodies only; fuzz them on raw bytes too (defence in depth).
      const a = decodeAvailability(body);
      if (a !== null && !encodeAvailability(a).equals(body.subarray(0, 11))) return 'availability does not round-trip';
      decodeLoadVector(body);
      decodeElectionAdvert(body);
      const ta = decodeTransmissionAgent(body);
      if (ta !== null && !encodeTransmissionAgent(ta).equals(body)) return 'transmission agent message does not round-trip';
      return null;
    },
  },
  {
    name: 'replication-frame',
    corpus: [
      encodeFrame({ sender: 1, seq: 1, nonce: Buffer.alloc(8, 1) }, 1, Buffer.from([0x03, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0])),
      encodeFrame({ sender: 2, seq: 7, nonce: Buffer.alloc(8, 2) }, 1, Buffer.from([0x0b, 0, 0, 0, 5])),
      encodeFrame({ sender: 3, seq: 9, nonce: Buffer.alloc(8, 3) }, 1, Buffer.from([0x0c])),
      encodeFrame({ sender: 4, seq: 2, nonce: Buffer.alloc(8, 4), epoch: 3 }, 1, Buffer.from([0x0d, 0, 1, 0, 0, 0, 5, 0, 0, 0, 7])),
      // SESSION_BLOCK of one keyed session with data, FLOW_BLOCK of one flow (format version 3).
      encodeFrame({ sender: 5, seq: 3, nonce: Buffer.alloc(8, 5), epoch: 3 }, 2, Buffer.from(
        '0e00000001' + '0000000001000005' + '0001' + '0002' + '0003' + '6162' + '756470' +
        '0f00000001' + '0000000001000005' + '0a000001' + '13c4' + '0a000064' + '13c4' + '11' + '00' + '00007530', 'hex')),
    ],
    check(input) {
      decodeFrame(input);
      return null;
    },
  },
];
