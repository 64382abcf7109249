/**
 * @module Raw HTTP/2 frames for attack tests (RFC 9113 §4.1): a client that writes exactly the frames
 * a test wants — floods, resets, header blocks no well-behaved library would send — over a plain
 * socket, and reads back what the server sent (frame types, GOAWAY error codes).
 */
import net from 'node:net';

export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
export const enum FrameType {
  DATA = 0,
  HEADERS = 1,
  RST_STREAM = 3,
  SETTINGS = 4,
  PING = 6,
  GOAWAY = 7,
  WINDOW_UPDATE = 8,
  CONTINUATION = 9,
}
export const END_STREAM = 0x1;
export const END_HEADERS = 0x4;
export const ACK = 0x1;

export function frame(type: number, flags: number, streamId: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(streamId & 0x7fffffff, 5);
  return Buffer.concat([h, payload]);
}

/** An HPACK integer with an n-bit prefix (RFC 7541 §5.1), first byte or'ed with `high`. */
export function hpackInt(value: number, prefixBits: number, high: number): Buffer {
  const max = (1 << prefixBits) - 1;
  if (value < max) return Buffer.from([high | value]);
  const out = [high | max];
  value -= max;
  while (value >= 128) {
    out.push((value % 128) + 128);
    value = Math.floor(value / 128);
  }
  out.push(value);
  return Buffer.from(out);
}

/** A literal header field without indexing, new name (RFC 7541 §6.2.2), no Huffman. */
export function literal(name: string, value: string, indexing = false): Buffer {
  const n = Buffer.from(name, 'latin1');
  const v = Buffer.from(value, 'latin1');
  return Buffer.concat([indexing ? Buffer.from([0x40]) : Buffer.from([0x00]), hpackInt(n.length, 7, 0), n, hpackInt(v.length, 7, 0), v]);
}

/** `GET /` with :scheme http and :authority a (static table indexes 2, 6, 4, then a literal). */
export function getBlock(): Buffer {
  return Buffer.concat([Buffer.from([0x82, 0x86, 0x84]), Buffer.from([0x41, 0x01, 0x61])]);
}

export interface RawH2 {
  readonly socket: net.Socket;
  /** Frame types received so far, in order. */
  readonly types: number[];
  /** The error code of the first GOAWAY received, or null. */
  goawayCode(): number | null;
  /** Resolves when the server closed the connection. */
  readonly closed: Promise<void>;
  send(...frames: Buffer[]): boolean;
}

/** Connects, sends the preface and an empty SETTINGS, and records every frame the server sends. */
export function rawH2(port: number, host = '127.0.0.1'): Promise<RawH2> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, host);
    const types: number[] = [];
    let goaway: number | null = null;
    let buf = Buffer.alloc(0);
    socket.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 9) {
        const len = buf.readUIntBE(0, 3);
        if (buf.length < 9 + len) break;
        const type = buf[3]!;
        types.push(type);
        if (type === FrameType.GOAWAY && goaway === null) goaway = buf.readUInt32BE(13);
        if (type === FrameType.SETTINGS && (buf[4]! & ACK) === 0) socket.write(frame(FrameType.SETTINGS, ACK, 0));
        buf = buf.subarray(9 + len);
      }
    });
    const closed = new Promise<void>((r) => socket.once('close', () => r()));
    socket.on('error', () => {});
    socket.once('connect', () => {
      socket.write(Buffer.concat([PREFACE, frame(FrameType.SETTINGS, 0, 0)]));
      resolve({
        socket,
        types,
        goawayCode: () => goaway,
        closed,
        send: (...frames: Buffer[]) => (socket.destroyed ? false : socket.write(Buffer.concat(frames))),
      });
    });
    socket.once('error', reject);
  });
}
