/**
 * @module The state-replication frame (envelope type 4): a header and a batch of operations that
 * replay one dispatcher's session-table changes on its peers (issue 7; semi-active replication of
 * the SIP ALG's state, seed 004; reintegration by snapshot then stream, seed 001). The envelope
 * (envelope.ts) authenticates and versions it; the replicator (replication/state-replicator.ts)
 * carries it over TCP, each frame preceded by its u32 length.
 *
 * ## Body layout (all integers big-endian)
 *
 * Version 3 (envelope version byte 0x34): version 2 (0x24) plus the snapshot blocks SESSION_BLOCK and
 * FLOW_BLOCK (issue 17 item 3). Versions 1 (0x14, no epoch) and 2 are refused as 'version' both ways:
 * an old build reports this one as 'version', this build reports the old ones so.
 *
 * Header, 20 bytes:
 *
 * | offset | size | field  | meaning                                                                  |
 * |--------|------|--------|--------------------------------------------------------------------------|
 * | 0      | 2    | sender | u16, the sending dispatcher's id                                         |
 * | 2      | 2    | count  | u16, operations that follow                                              |
 * | 4      | 4    | seq    | u32, the frame's number on its connection: 1, 2, 3… (0: CHALLENGE frame) |
 * | 8      | 8    | nonce  | the receiver's random challenge for this connection, echoed in every     |
 * |        |      |        | frame: a frame recorded on another connection never verifies on this one |
 * | 16     | 4    | epoch  | u32, the highest election epoch the sender knows (election.ts): a        |
 * |        |      |        | receiver that knows a higher one refuses the frame ('stale'), so a stale |
 * |        |      |        | master's stream is not applied once a newer master is known              |
 *
 * Then `count` operations, each an opcode byte and its fields. `service` is u16, the index of the
 * service in the replicator's list (both ends configure the group's services in the same order).
 * `sid` is 8 bytes, the sender's session handle as u64 (all ones: no session). An address `addr` is
 * a length byte then: 0 → u32 IPv4 address; 1-45 → that many bytes of the address's text (IPv6).
 *
 * | op   | name           | fields                                                                          |
 * |------|----------------|---------------------------------------------------------------------------------|
 * | 0x01 | SESSION_OPEN   | service, sid, backend u16, keyLen u16 (0xffff: anonymous), key (UTF-8)          |
 * | 0x02 | SESSION_REPIN  | service, sid, backend u16                                                       |
 * | 0x03 | SESSION_CLOSE  | service, sid, reason u8 (0 ended, 1 timeout, 2 removed)                         |
 * | 0x04 | SESSION_DATA   | service, sid, len u16, data (UTF-8): the forwarder's per-session record          |
 * | 0x05 | FLOW_INSERT    | service, sid, src addr, src port u16, dst addr, dst port u16, proto u8,         |
 * |      |                | role u8 (0 signalling, 1 announced, 2 secondary), timeout ms u32                |
 * | 0x06 | FLOW_REMOVE    | service, src addr, src port u16, dst addr, dst port u16, proto u8               |
 * | 0x07 | RELAY_OPEN     | service, sid, relay port u16, client addr, client port u16, backend addr,       |
 * |      |                | backend port u16: a media relay stream of the session                           |
 * | 0x08 | RELAY_CLOSE    | service, sid, relay port u16                                                    |
 * | 0x09 | SNAPSHOT_BEGIN | (none): what follows until SNAPSHOT_END is the sender's whole state             |
 * | 0x0a | SNAPSHOT_END   | sessions u32, flows u32: how many the snapshot carried                          |
 * | 0x0b | ACK            | seq u32: the receiver applied every frame up to seq                             |
 * | 0x0c | CHALLENGE      | (none): the receiver's first frame; its header nonce is the challenge           |
 * | 0x0d | TABLE_SIZES    | service, sessions u32, flows u32: in a snapshot, before the service's sessions, |
 * |      |                | how many the sender holds (a hint: the receiver sizes its tables once)          |
 * | 0x0e | SESSION_BLOCK  | service, n u16 (1-65535), then n entries, each: sid, backend u16, keyLen u16     |
 * |      |                | (0xffff: anonymous), dataLen u16 (0xffff: none), key (UTF-8), data (UTF-8):     |
 * |      |                | a snapshot's sessions with their data, one op (SESSION_OPEN + SESSION_DATA each) |
 * | 0x0f | FLOW_BLOCK     | service, n u16 (1-65535), then n entries of 26 bytes, each: sid, src u32, src   |
 * |      |                | port u16, dst u32, dst port u16, proto u8, role u8, timeout ms u32: a snapshot's |
 * |      |                | IPv4 flows, one op (FLOW_INSERT each; an IPv6 flow goes as a FLOW_INSERT)        |
 *
 * The blocks exist for speed (issue 17 item 3: 10 000 sessions applied in under 15 ms, a million in
 * under 1 s): a snapshot of a million sessions and flows is two million entries, and an entry in a
 * block carries no opcode, service or address-length bytes (about 20 bytes fewer per session and flow
 * — fewer bytes to MAC twice — and is read in a loop that checks its bounds once per entry, not per
 * field, without an object per entry.
 *
 * Bounds: a body is at most MAX_FRAME_BODY_BYTES, a key or data string at most MAX_STRING_BYTES.
 * A body with an unknown opcode, a field running past the end, trailing bytes or a count that does
 * not match decodes to null (the receiver counts it and drops the connection).
 */

export const FRAME_HEADER_BYTES = 20;
export const NONCE_BYTES = 8;
/** Largest body accepted (and produced: the sender starts a new frame before this). */
export const MAX_FRAME_BODY_BYTES = 64 * 1024;
/** Largest session key or data string, in UTF-8 bytes. */
export const MAX_STRING_BYTES = 1024;
/** Longest address text (an IPv6 address with a zone or an IPv4 tail fits). */
export const MAX_ADDRESS_TEXT_BYTES = 45;
/** The largest encoded operation: a frame with room for this can always take one more op. */
export const MAX_OP_BYTES = 1 + 2 + 8 + 2 + 2 + MAX_STRING_BYTES;
/** u64 all ones: "no session" in a sid field. */
export const NO_SID = -1;

export const Op = {
  SessionOpen: 0x01,
  SessionRepin: 0x02,
  SessionClose: 0x03,
  SessionData: 0x04,
  FlowInsert: 0x05,
  FlowRemove: 0x06,
  RelayOpen: 0x07,
  RelayClose: 0x08,
  SnapshotBegin: 0x09,
  SnapshotEnd: 0x0a,
  Ack: 0x0b,
  Challenge: 0x0c,
  TableSizes: 0x0d,
  SessionBlock: 0x0e,
  FlowBlock: 0x0f,
} as const;

/** Bytes of one FLOW_BLOCK entry. */
export const FLOW_ENTRY_BYTES = 26;
/** Bytes of one SESSION_BLOCK entry before its strings. */
export const SESSION_ENTRY_BYTES = 14;
/** Entries a block holds at most (its u16 count). */
export const MAX_BLOCK_ENTRIES = 0xffff;

export const CLOSE_REASONS = ['ended', 'timeout', 'removed'] as const;
export const FLOW_ROLES = ['signalling', 'announced', 'secondary'] as const;

/** An address on the wire: a number is an IPv4 address as u32, a string any other address's text. */
export type WireAddress = number | string;

export interface FlowTuple {
  src: WireAddress;
  srcPort: number;
  dst: WireAddress;
  dstPort: number;
  proto: number;
}

export type ReplicationOp =
  | { op: typeof Op.SessionOpen; service: number; sid: number; backend: number; key: string | null }
  | { op: typeof Op.SessionRepin; service: number; sid: number; backend: number }
  | { op: typeof Op.SessionClose; service: number; sid: number; reason: (typeof CLOSE_REASONS)[number] }
  | { op: typeof Op.SessionData; service: number; sid: number; data: string }
  | ({ op: typeof Op.FlowInsert; service: number; sid: number; role: (typeof FLOW_ROLES)[number]; timeoutMs: number } & FlowTuple)
  | ({ op: typeof Op.FlowRemove; service: number } & FlowTuple)
  | {
      op: typeof Op.RelayOpen;
      service: number;
      sid: number;
      relayPort: number;
      client: WireAddress;
      clientPort: number;
      backend: WireAddress;
      backendPort: number;
    }
  | { op: typeof Op.RelayClose; service: number; sid: number; relayPort: number }
  | { op: typeof Op.SnapshotBegin }
  | { op: typeof Op.SnapshotEnd; sessions: number; flows: number }
  | { op: typeof Op.Ack; seq: number }
  | { op: typeof Op.Challenge }
  | { op: typeof Op.TableSizes; service: number; sessions: number; flows: number };

export interface FrameHeader {
  sender: number;
  seq: number;
  /** NONCE_BYTES bytes. */
  nonce: Buffer;
  /** The highest election epoch the sender knows (u32; 0 when it knows none). */
  epoch: number;
}

export interface Frame extends FrameHeader {
  ops: ReplicationOp[];
}

const IPV4_MAX = 0xefffffff;

/**
 * Appends operations to a growable buffer: the replicator's data path encodes each change once,
 * here, and frames the bytes per peer later. `length` is the bytes written, `count` the ops.
 * Throws RangeError on a field out of range (the caller's bug, not network input).
 */
export class OpWriter {
  buf: Buffer;
  length = 0;
  count = 0;
  /** While a block is open: where its entry count goes (-1: no block open), and its entries so far. */
  private blockAt = -1;
  blockEntries = 0;

  constructor(initialBytes = 4096) {
    this.buf = Buffer.allocUnsafe(initialBytes);
  }

  reset(): void {
    this.length = 0;
    this.count = 0;
    this.blockAt = -1;
    this.blockEntries = 0;
  }

  /** The op of the block open now (Op.SessionBlock or Op.FlowBlock), or 0. */
  get block(): number {
    return this.blockAt < 0 ? 0 : this.buf[this.blockAt - 3]!;
  }

  /** The service of the block open now (see block). */
  get blockService(): number {
    return this.blockAt < 0 ? -1 : (this.buf[this.blockAt - 2]! << 8) | this.buf[this.blockAt - 1]!;
  }

  /**
   * Opens a SESSION_BLOCK of `service` (closing any block open): sessionEntry() adds to it until
   * endBlock() or the next block. Other ops must not be written while a block is open.
   */
  sessionBlock(service: number): void {
    this.openBlock(Op.SessionBlock, service);
  }

  /** A session in the open SESSION_BLOCK; `key` and `data` at most MAX_STRING_BYTES of UTF-8 each. */
  sessionEntry(sid: number, backend: number, key: string | null, data: string | null): void {
    if (this.blockAt < 0 || this.buf[this.blockAt - 3] !== Op.SessionBlock) throw new RangeError('sessionEntry() outside a SESSION_BLOCK');
    if (this.blockEntries === MAX_BLOCK_ENTRIES) throw new RangeError('SESSION_BLOCK full');
    const keyChars = key === null ? 0 : key.length;
    const dataChars = data === null ? 0 : data.length;
    this.ensure(SESSION_ENTRY_BYTES + 3 * (keyChars + dataChars));
    const at = this.length;
    this.sid(sid);
    const buf = this.buf;
    buf[at + 8] = backend >>> 8;
    buf[at + 9] = backend & 0xff;
    let p = at + SESSION_ENTRY_BYTES;
    const keyBytes = key === null ? 0xffff : this.text(key, p);
    if (key !== null) p += keyBytes;
    const dataBytes = data === null ? 0xffff : this.text(data, p);
    if (data !== null) p += dataBytes;
    if ((key !== null && keyBytes > MAX_STRING_BYTES) || (data !== null && dataBytes > MAX_STRING_BYTES)) {
      throw new RangeError(`session key or data over ${MAX_STRING_BYTES} bytes`);
    }
    buf[at + 10] = keyBytes >>> 8;
    buf[at + 11] = keyBytes & 0xff;
    buf[at + 12] = dataBytes >>> 8;
    buf[at + 13] = dataBytes & 0xff;
    this.length = p;
    this.blockEntries++;
  }

  /** Opens a FLOW_BLOCK of `service` (closing any block open): flowEntry() adds to it. */
  flowBlock(service: number): void {
    this.openBlock(Op.FlowBlock, service);
  }

  /** An IPv4 flow in the open FLOW_BLOCK: addresses as u32, `role` as its index in FLOW_ROLES. */
  flowEntry(sid: number, src: number, srcPort: number, dst: number, dstPort: number, proto: number, role: number, timeoutMs: number): void {
    if (this.blockAt < 0 || this.buf[this.blockAt - 3] !== Op.FlowBlock) throw new RangeError('flowEntry() outside a FLOW_BLOCK');
    if (this.blockEntries === MAX_BLOCK_ENTRIES) throw new RangeError('FLOW_BLOCK full');
    if (!(src >= 0 && src <= IPV4_MAX && dst >= 0 && dst <= IPV4_MAX)) throw new RangeError('FLOW_BLOCK: an address is not IPv4');
    this.ensure(FLOW_ENTRY_BYTES);
    const at = this.length;
    this.sid(sid);
    const buf = this.buf;
    put32(buf, at + 8, src);
    buf[at + 12] = srcPort >>> 8;
    buf[at + 13] = srcPort & 0xff;
    put32(buf, at + 14, dst);
    buf[at + 18] = dstPort >>> 8;
    buf[at + 19] = dstPort & 0xff;
    buf[at + 20] = proto;
    buf[at + 21] = role;
    put32(buf, at + 22, timeoutMs);
    this.length = at + FLOW_ENTRY_BYTES;
    this.blockEntries++;
  }

  /** Closes the open block (one with no entry is taken back, as if never opened). */
  endBlock(): void {
    const at = this.blockAt;
    if (at < 0) return;
    this.blockAt = -1;
    if (this.blockEntries === 0) {
      this.length = at - 3;
      this.count--;
      return;
    }
    this.buf[at] = this.blockEntries >>> 8;
    this.buf[at + 1] = this.blockEntries & 0xff;
    this.blockEntries = 0;
  }

  private openBlock(op: number, service: number): void {
    this.endBlock();
    this.ensure(5);
    this.buf[this.length++] = op;
    this.u16(service);
    this.blockAt = this.length;
    this.length += 2;
    this.blockEntries = 0;
    this.count++;
  }

  /** A sid (u64) at `length`, which moves on by 8. */
  private sid(sid: number): void {
    const buf = this.buf;
    const at = this.length;
    if (sid === NO_SID) {
      buf.fill(0xff, at, at + 8);
    } else {
      if (!(Number.isSafeInteger(sid) && sid >= 0)) throw new RangeError(`sid ${sid} is not a u64 below 2^53`);
      put32(buf, at, Math.floor(sid / 0x100000000));
      put32(buf, at + 4, sid >>> 0);
    }
    this.length = at + 8;
  }

  /**
   * `s` as UTF-8 at `at` (3 bytes per char of room ensured); returns its bytes. A short ASCII string
   * is copied by a loop: a call into Buffer.write costs more than the copy (issue 17 item 3).
   */
  private text(s: string, at: number): number {
    const n = s.length;
    if (n <= 64) {
      const buf = this.buf;
      let i = 0;
      for (; i < n; i++) {
        const c = s.charCodeAt(i);
        if (c > 0x7f) break;
        buf[at + i] = c;
      }
      if (i === n) return n;
    }
    return this.buf.write(s, at, 'utf8');
  }

  /** The ops written so far (a view, valid until the next write or reset). */
  bytes(): Buffer {
    return this.buf.subarray(0, this.length);
  }

  sessionOpen(service: number, sid: number, backend: number, key: string | null): void {
    const keyBytes = key === null ? 0 : Buffer.byteLength(key, 'utf8');
    if (keyBytes > MAX_STRING_BYTES) throw new RangeError(`session key of ${keyBytes} bytes exceeds ${MAX_STRING_BYTES}`);
    this.ensure(15 + keyBytes);
    this.head(Op.SessionOpen, service, sid);
    this.u16(backend);
    if (key === null) this.u16(0xffff);
    else {
      this.u16(keyBytes);
      this.length += this.buf.write(key, this.length, 'utf8');
    }
    this.count++;
  }

  sessionRepin(service: number, sid: number, backend: number): void {
    this.ensure(13);
    this.head(Op.SessionRepin, service, sid);
    this.u16(backend);
    this.count++;
  }

  sessionClose(service: number, sid: number, reason: (typeof CLOSE_REASONS)[number]): void {
    this.ensure(12);
    this.head(Op.SessionClose, service, sid);
    this.buf[this.length++] = CLOSE_REASONS.indexOf(reason);
    this.count++;
  }

  sessionData(service: number, sid: number, data: string): void {
    const n = Buffer.byteLength(data, 'utf8');
    if (n > MAX_STRING_BYTES) throw new RangeError(`session data of ${n} bytes exceeds ${MAX_STRING_BYTES}`);
    this.ensure(13 + n);
    this.head(Op.SessionData, service, sid);
    this.u16(n);
    this.length += this.buf.write(data, this.length, 'utf8');
    this.count++;
  }

  flowInsert(service: number, sid: number, t: FlowTuple, role: (typeof FLOW_ROLES)[number], timeoutMs: number): void {
    this.ensure(11 + 2 * (1 + MAX_ADDRESS_TEXT_BYTES) + 11);
    this.head(Op.FlowInsert, service, sid);
    this.tuple(t);
    this.buf[this.length++] = FLOW_ROLES.indexOf(role);
    this.buf.writeUInt32BE(timeoutMs >>> 0, this.length);
    this.length += 4;
    this.count++;
  }

  flowRemove(service: number, t: FlowTuple): void {
    this.ensure(3 + 2 * (1 + MAX_ADDRESS_TEXT_BYTES) + 5);
    this.buf[this.length++] = Op.FlowRemove;
    this.u16(service);
    this.tuple(t);
    this.count++;
  }

  relayOpen(service: number, sid: number, relayPort: number, client: WireAddress, clientPort: number, backend: WireAddress, backendPort: number): void {
    this.ensure(13 + 2 * (1 + MAX_ADDRESS_TEXT_BYTES + 2));
    this.head(Op.RelayOpen, service, sid);
    this.u16(relayPort);
    this.address(client);
    this.u16(clientPort);
    this.address(backend);
    this.u16(backendPort);
    this.count++;
  }

  relayClose(service: number, sid: number, relayPort: number): void {
    this.ensure(13);
    this.head(Op.RelayClose, service, sid);
    this.u16(relayPort);
    this.count++;
  }

  snapshotBegin(): void {
    this.ensure(1);
    this.buf[this.length++] = Op.SnapshotBegin;
    this.count++;
  }

  snapshotEnd(sessions: number, flows: number): void {
    this.ensure(9);
    this.buf[this.length++] = Op.SnapshotEnd;
    this.buf.writeUInt32BE(sessions >>> 0, this.length);
    this.buf.writeUInt32BE(flows >>> 0, this.length + 4);
    this.length += 8;
    this.count++;
  }

  ack(seq: number): void {
    this.ensure(5);
    this.buf[this.length++] = Op.Ack;
    this.buf.writeUInt32BE(seq >>> 0, this.length);
    this.length += 4;
    this.count++;
  }

  challenge(): void {
    this.ensure(1);
    this.buf[this.length++] = Op.Challenge;
    this.count++;
  }

  tableSizes(service: number, sessions: number, flows: number): void {
    this.ensure(11);
    this.buf[this.length++] = Op.TableSizes;
    this.u16(service);
    this.buf.writeUInt32BE(sessions >>> 0, this.length);
    this.buf.writeUInt32BE(flows >>> 0, this.length + 4);
    this.length += 8;
    this.count++;
  }

  private head(op: number, service: number, sid: number): void {
    this.buf[this.length++] = op;
    this.u16(service);
    if (sid === NO_SID) {
      this.buf.writeUInt32BE(0xffffffff, this.length);
      this.buf.writeUInt32BE(0xffffffff, this.length + 4);
    } else {
      if (!(Number.isSafeInteger(sid) && sid >= 0)) throw new RangeError(`sid ${sid} is not a u64 below 2^53`);
      this.buf.writeUInt32BE(Math.floor(sid / 0x100000000), this.length);
      this.buf.writeUInt32BE(sid >>> 0, this.length + 4);
    }
    this.length += 8;
  }

  private u16(v: number): void {
    this.buf.writeUInt16BE(v, this.length);
    this.length += 2;
  }

  private address(a: WireAddress): void {
    if (typeof a === 'number') {
      this.buf[this.length++] = 0;
      this.buf.writeUInt32BE(a >>> 0, this.length);
      this.length += 4;
      return;
    }
    const n = Buffer.byteLength(a, 'latin1');
    if (n < 1 || n > MAX_ADDRESS_TEXT_BYTES) throw new RangeError(`address text of ${n} bytes is not in [1, ${MAX_ADDRESS_TEXT_BYTES}]`);
    this.buf[this.length++] = n;
    this.length += this.buf.write(a, this.length, 'latin1');
  }

  private tuple(t: FlowTuple): void {
    this.address(t.src);
    this.u16(t.srcPort);
    this.address(t.dst);
    this.u16(t.dstPort);
    this.buf[this.length++] = t.proto;
  }

  private ensure(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.length + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.length);
    this.buf = next;
  }
}

function put32(buf: Buffer, at: number, v: number): void {
  buf[at] = v >>> 24;
  buf[at + 1] = (v >>> 16) & 0xff;
  buf[at + 2] = (v >>> 8) & 0xff;
  buf[at + 3] = v & 0xff;
}

/** A frame body: the header then `ops` (the bytes of `count` ops from an OpWriter). */
export function encodeFrame(h: Omit<FrameHeader, 'epoch'> & { epoch?: number }, count: number, ops: Uint8Array): Buffer {
  if (h.nonce.length !== NONCE_BYTES) throw new RangeError(`nonce must be ${NONCE_BYTES} bytes`);
  const body = Buffer.allocUnsafe(FRAME_HEADER_BYTES + ops.length);
  encodeFrameAt(body, 0, h, count, ops);
  return body;
}

/**
 * encodeFrame() into `buf` at `at` (FRAME_HEADER_BYTES + ops.length bytes of room): the sender
 * builds `u32 length ‖ body ‖ envelope` in one buffer (envelope.ts sealAt). Returns the body's length.
 */
export function encodeFrameAt(buf: Buffer, at: number, h: Omit<FrameHeader, 'epoch'> & { epoch?: number }, count: number, ops: Uint8Array): number {
  if (h.nonce.length !== NONCE_BYTES) throw new RangeError(`nonce must be ${NONCE_BYTES} bytes`);
  buf.writeUInt16BE(h.sender, at);
  buf.writeUInt16BE(count, at + 2);
  buf.writeUInt32BE(h.seq >>> 0, at + 4);
  h.nonce.copy(buf, at + 8);
  buf.writeUInt32BE((h.epoch ?? 0) >>> 0, at + 16);
  buf.set(ops, at + FRAME_HEADER_BYTES);
  return FRAME_HEADER_BYTES + ops.length;
}

/** Only the header (null when the body is shorter than one): lets a receiver check seq and nonce before decoding ops. */
export function decodeFrameHeader(body: Buffer): (FrameHeader & { count: number }) | null {
  if (body.length < FRAME_HEADER_BYTES || body.length > MAX_FRAME_BODY_BYTES) return null;
  return { sender: body.readUInt16BE(0), count: body.readUInt16BE(2), seq: body.readUInt32BE(4), nonce: body.subarray(8, 16), epoch: body.readUInt32BE(16) };
}

class Truncated extends Error {}
const TRUNCATED = new Truncated();

/**
 * What a decoded body's ops are handed to, one call per op with its fields as arguments: the
 * receiver's apply path (replication-apply.ts) decodes straight into table changes, with no object
 * per op. Addresses are as on the wire (WireAddress); `reason` and `role` are already checked.
 */
export interface OpVisitor {
  sessionOpen(service: number, sid: number, backend: number, key: string | null): void;
  sessionRepin(service: number, sid: number, backend: number): void;
  sessionClose(service: number, sid: number, reason: (typeof CLOSE_REASONS)[number]): void;
  sessionData(service: number, sid: number, data: string): void;
  flowInsert(
    service: number,
    sid: number,
    src: WireAddress,
    srcPort: number,
    dst: WireAddress,
    dstPort: number,
    proto: number,
    role: (typeof FLOW_ROLES)[number],
    timeoutMs: number,
  ): void;
  flowRemove(service: number, src: WireAddress, srcPort: number, dst: WireAddress, dstPort: number, proto: number): void;
  relayOpen(service: number, sid: number, relayPort: number, client: WireAddress, clientPort: number, backend: WireAddress, backendPort: number): void;
  relayClose(service: number, sid: number, relayPort: number): void;
  snapshotBegin(): void;
  snapshotEnd(sessions: number, flows: number): void;
  ack(seq: number): void;
  challenge(): void;
  tableSizes(service: number, sessions: number, flows: number): void;
  /** A SESSION_BLOCK entry: a SESSION_OPEN then, when `data` is not null, a SESSION_DATA. (A FLOW_BLOCK entry is a flowInsert().) */
  sessionEntry(service: number, sid: number, backend: number, key: string | null, data: string | null): void;
}

/** Node's Buffer methods without the argument checks of toString(): measured about 100 ns less per string. */
interface BufferSlices {
  utf8Slice(start: number, end: number): string;
}

/** Whether this Node has Buffer.prototype.utf8Slice (undocumented; Node 20 has it). */
const HAS_UTF8_SLICE = typeof (Buffer.prototype as unknown as Partial<BufferSlices>).utf8Slice === 'function';

/** The UTF-8 text of `b[start, end)`. */
function utf8(b: Buffer, start: number, end: number): string {
  return HAS_UTF8_SLICE ? (b as unknown as BufferSlices).utf8Slice(start, end) : b.toString('utf8', start, end);
}

/** A read position in a body; every read checks its bounds (TRUNCATED past the end). */
class Cursor {
  p = FRAME_HEADER_BYTES;
  constructor(
    readonly body: Buffer,
    readonly end: number,
  ) {}

  need(n: number): void {
    if (this.p + n > this.end) throw TRUNCATED;
  }

  u8(): number {
    if (this.p + 1 > this.end) throw TRUNCATED;
    return this.body[this.p++]!;
  }

  u16(): number {
    if (this.p + 2 > this.end) throw TRUNCATED;
    const b = this.body;
    const v = (b[this.p]! << 8) | b[this.p + 1]!;
    this.p += 2;
    return v;
  }

  u32(): number {
    if (this.p + 4 > this.end) throw TRUNCATED;
    const b = this.body;
    const p = this.p;
    this.p += 4;
    return b[p]! * 0x1000000 + ((b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!);
  }

  sid(): number {
    const hi = this.u32();
    const lo = this.u32();
    if (hi === 0xffffffff && lo === 0xffffffff) return NO_SID;
    if (hi >= 0x200000) throw TRUNCATED; // not a safe integer: no handle is that large
    return hi * 0x100000000 + lo;
  }

  /** `text`: whether to build an IPv6 address's string (false: only check it). */
  address(text: boolean): WireAddress {
    const n = this.u8();
    if (n === 0) {
      const v = this.u32();
      if (v > IPV4_MAX) throw TRUNCATED;
      return v;
    }
    if (n > MAX_ADDRESS_TEXT_BYTES) throw TRUNCATED;
    this.need(n);
    const s = text ? this.body.toString('latin1', this.p, this.p + n) : '';
    this.p += n;
    return s;
  }

  /** A u16-length string field (0xffff: none, when `nullable`); `text` as for address(). */
  string(nullable: boolean, text: boolean): string | null {
    const n = this.u16();
    if (nullable && n === 0xffff) return null;
    if (n > MAX_STRING_BYTES) throw TRUNCATED;
    this.need(n);
    const s = text ? this.body.toString('utf8', this.p, this.p + n) : '';
    this.p += n;
    return s;
  }
}

/**
 * Walks the ops of a body whose header was read; `v` null only checks them (no string built).
 * Throws TRUNCATED when malformed.
 */
function walk(body: Buffer, count: number, v: OpVisitor | null): void {
  const c = new Cursor(body, body.length);
  const text = v !== null;
  for (let i = 0; i < count; i++) {
    const op = c.u8();
    switch (op) {
      case Op.SessionOpen: {
        const service = c.u16();
        const sid = c.sid();
        const backend = c.u16();
        const key = c.string(true, text);
        v?.sessionOpen(service, sid, backend, key);
        break;
      }
      case Op.SessionRepin: {
        const service = c.u16();
        const sid = c.sid();
        const backend = c.u16();
        v?.sessionRepin(service, sid, backend);
        break;
      }
      case Op.SessionClose: {
        const service = c.u16();
        const sid = c.sid();
        const reason = CLOSE_REASONS[c.u8()];
        if (reason === undefined) throw TRUNCATED;
        v?.sessionClose(service, sid, reason);
        break;
      }
      case Op.SessionData: {
        const service = c.u16();
        const sid = c.sid();
        const data = c.string(false, text)!;
        v?.sessionData(service, sid, data);
        break;
      }
      case Op.FlowInsert: {
        const service = c.u16();
        const sid = c.sid();
        const src = c.address(text);
        const srcPort = c.u16();
        const dst = c.address(text);
        const dstPort = c.u16();
        const proto = c.u8();
        if (proto === 0) throw TRUNCATED;
        const role = FLOW_ROLES[c.u8()];
        if (role === undefined) throw TRUNCATED;
        const timeoutMs = c.u32();
        if (timeoutMs > 0x7fffffff) throw TRUNCATED;
        v?.flowInsert(service, sid, src, srcPort, dst, dstPort, proto, role, timeoutMs);
        break;
      }
      case Op.FlowRemove: {
        const service = c.u16();
        const src = c.address(text);
        const srcPort = c.u16();
        const dst = c.address(text);
        const dstPort = c.u16();
        const proto = c.u8();
        if (proto === 0) throw TRUNCATED;
        v?.flowRemove(service, src, srcPort, dst, dstPort, proto);
        break;
      }
      case Op.RelayOpen: {
        const service = c.u16();
        const sid = c.sid();
        const relayPort = c.u16();
        const client = c.address(text);
        const clientPort = c.u16();
        const backend = c.address(text);
        const backendPort = c.u16();
        v?.relayOpen(service, sid, relayPort, client, clientPort, backend, backendPort);
        break;
      }
      case Op.RelayClose: {
        const service = c.u16();
        const sid = c.sid();
        const relayPort = c.u16();
        v?.relayClose(service, sid, relayPort);
        break;
      }
      case Op.SnapshotBegin:
        v?.snapshotBegin();
        break;
      case Op.SnapshotEnd: {
        const sessions = c.u32();
        const flows = c.u32();
        v?.snapshotEnd(sessions, flows);
        break;
      }
      case Op.Ack: {
        const seq = c.u32();
        v?.ack(seq);
        break;
      }
      case Op.Challenge:
        v?.challenge();
        break;
      case Op.TableSizes: {
        const service = c.u16();
        const sessions = c.u32();
        const flows = c.u32();
        v?.tableSizes(service, sessions, flows);
        break;
      }
      case Op.SessionBlock:
        sessionBlock(c, v);
        break;
      case Op.FlowBlock:
        flowBlock(c, v);
        break;
      default:
        throw TRUNCATED;
    }
  }
  if (c.p !== c.end) throw TRUNCATED;
}

/** A sid at `p` (see Cursor.sid()); throws TRUNCATED when it is not a safe integer. */
function sidAt(b: Buffer, p: number): number {
  const hi = b[p]! * 0x1000000 + ((b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!);
  const lo = b[p + 4]! * 0x1000000 + ((b[p + 5]! << 16) | (b[p + 6]! << 8) | b[p + 7]!);
  if (hi === 0xffffffff && lo === 0xffffffff) return NO_SID;
  if (hi >= 0x200000) throw TRUNCATED;
  return hi * 0x100000000 + lo;
}

function u32At(b: Buffer, p: number): number {
  return b[p]! * 0x1000000 + ((b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!);
}

/** Entries of the data-string cache (a power of two). */
const DATA_CACHE_ENTRIES = 1024;
/** The longest data string the cache holds. */
const DATA_CACHE_MAX_BYTES = 64;
/** Recently decoded ASCII data strings, by a hash of their bytes (see cachedText). */
const dataCache: (string | undefined)[] = new Array<string | undefined>(DATA_CACHE_ENTRIES).fill(undefined);

/**
 * The text of `n` bytes at `p`, the string decoded last time for the same bytes when the cache has
 * it: a session's data is its client's transport and address (SIP), shared by every call of that
 * client, so a million replicas need not hold (nor the decoder make, nor the collector sweep) a
 * million copies. The cache holds short ASCII strings only, compared byte for char before reuse.
 */
function cachedText(b: Buffer, p: number, n: number): string {
  if (n > DATA_CACHE_MAX_BYTES) return utf8(b, p, p + n);
  let h = n;
  for (let i = 0; i < n; i++) h = Math.imul(h ^ b[p + i]!, 0x01000193);
  const at = (h ^ (h >>> 15)) & (DATA_CACHE_ENTRIES - 1);
  const cached = dataCache[at];
  if (cached !== undefined && cached.length === n) {
    let i = 0;
    while (i < n && cached.charCodeAt(i) === b[p + i]) i++;
    if (i === n) return cached;
  }
  const s = utf8(b, p, p + n);
  // One char per byte: ASCII (a byte-for-char comparison finds it again).
  if (s.length === n) dataCache[at] = s;
  return s;
}

/** A SESSION_BLOCK after its opcode: every entry checked, handed to `v` when there is one. */
function sessionBlock(c: Cursor, v: OpVisitor | null): void {
  const service = c.u16();
  const n = c.u16();
  if (n === 0) throw TRUNCATED;
  const b = c.body;
  const end = c.end;
  let p = c.p;
  for (let i = 0; i < n; i++) {
    if (p + SESSION_ENTRY_BYTES > end) throw TRUNCATED;
    const sid = sidAt(b, p);
    const backend = (b[p + 8]! << 8) | b[p + 9]!;
    const keyLen = (b[p + 10]! << 8) | b[p + 11]!;
    const dataLen = (b[p + 12]! << 8) | b[p + 13]!;
    const keyBytes = keyLen === 0xffff ? 0 : keyLen;
    const dataBytes = dataLen === 0xffff ? 0 : dataLen;
    if (keyBytes > MAX_STRING_BYTES || dataBytes > MAX_STRING_BYTES) throw TRUNCATED;
    p += SESSION_ENTRY_BYTES;
    if (p + keyBytes + dataBytes > end) throw TRUNCATED;
    if (v !== null) {
      const key = keyLen === 0xffff ? null : utf8(b, p, p + keyBytes);
      const data = dataLen === 0xffff ? null : cachedText(b, p + keyBytes, dataBytes);
      v.sessionEntry(service, sid, backend, key, data);
    }
    p += keyBytes + dataBytes;
  }
  c.p = p;
}

/** A FLOW_BLOCK after its opcode: every entry checked, handed to `v` (as a flowInsert) when there is one. */
function flowBlock(c: Cursor, v: OpVisitor | null): void {
  const service = c.u16();
  const n = c.u16();
  if (n === 0) throw TRUNCATED;
  c.need(n * FLOW_ENTRY_BYTES);
  const b = c.body;
  let p = c.p;
  for (let i = 0; i < n; i++, p += FLOW_ENTRY_BYTES) {
    const sid = sidAt(b, p);
    const src = u32At(b, p + 8);
    const dst = u32At(b, p + 14);
    const proto = b[p + 20]!;
    const role = FLOW_ROLES[b[p + 21]!];
    const timeoutMs = u32At(b, p + 22);
    if (src > IPV4_MAX || dst > IPV4_MAX || proto === 0 || role === undefined || timeoutMs > 0x7fffffff) throw TRUNCATED;
    v?.flowInsert(service, sid, src, (b[p + 12]! << 8) | b[p + 13]!, dst, (b[p + 18]! << 8) | b[p + 19]!, proto, role, timeoutMs);
  }
  c.p = p;
}

/**
 * Checks a whole authenticated body (header and every op) first, then hands its ops to `v` in
 * order: a malformed frame applies nothing. False when malformed (see the module doc). `v` may throw
 * (its error propagates); the decoder itself never does. `checked`: the caller ran checkFrame() on
 * this very body already.
 */
export function visitFrame(body: Buffer, v: OpVisitor, checked = false): boolean {
  if (!checked && !checkFrame(body)) return false;
  walk(body, body.readUInt16BE(2), v);
  return true;
}

/** Whether a body decodes (header and every op), without building anything. `checked` in visitFrame() skips this second pass. */
export function checkFrame(body: Buffer): boolean {
  const h = decodeFrameHeader(body);
  if (h === null) return false;
  try {
    walk(body, h.count, null);
  } catch {
    return false;
  }
  return true;
}

/** Collects the ops as objects (tests, and the few control frames a dialer reads). */
class OpCollector implements OpVisitor {
  readonly ops: ReplicationOp[] = [];
  sessionOpen(service: number, sid: number, backend: number, key: string | null): void {
    this.ops.push({ op: Op.SessionOpen, service, sid, backend, key });
  }
  sessionRepin(service: number, sid: number, backend: number): void {
    this.ops.push({ op: Op.SessionRepin, service, sid, backend });
  }
  sessionClose(service: number, sid: number, reason: (typeof CLOSE_REASONS)[number]): void {
    this.ops.push({ op: Op.SessionClose, service, sid, reason });
  }
  sessionData(service: number, sid: number, data: string): void {
    this.ops.push({ op: Op.SessionData, service, sid, data });
  }
  flowInsert(service: number, sid: number, src: WireAddress, srcPort: number, dst: WireAddress, dstPort: number, proto: number, role: (typeof FLOW_ROLES)[number], timeoutMs: number): void {
    this.ops.push({ op: Op.FlowInsert, service, sid, src, srcPort, dst, dstPort, proto, role, timeoutMs });
  }
  flowRemove(service: number, src: WireAddress, srcPort: number, dst: WireAddress, dstPort: number, proto: number): void {
    this.ops.push({ op: Op.FlowRemove, service, src, srcPort, dst, dstPort, proto });
  }
  relayOpen(service: number, sid: number, relayPort: number, client: WireAddress, clientPort: number, backend: WireAddress, backendPort: number): void {
    this.ops.push({ op: Op.RelayOpen, service, sid, relayPort, client, clientPort, backend, backendPort });
  }
  relayClose(service: number, sid: number, relayPort: number): void {
    this.ops.push({ op: Op.RelayClose, service, sid, relayPort });
  }
  snapshotBegin(): void {
    this.ops.push({ op: Op.SnapshotBegin });
  }
  snapshotEnd(sessions: number, flows: number): void {
    this.ops.push({ op: Op.SnapshotEnd, sessions, flows });
  }
  ack(seq: number): void {
    this.ops.push({ op: Op.Ack, seq });
  }
  challenge(): void {
    this.ops.push({ op: Op.Challenge });
  }
  tableSizes(service: number, sessions: number, flows: number): void {
    this.ops.push({ op: Op.TableSizes, service, sessions, flows });
  }
  sessionEntry(service: number, sid: number, backend: number, key: string | null, data: string | null): void {
    this.sessionOpen(service, sid, backend, key);
    if (data !== null) this.sessionData(service, sid, data);
  }
}

/**
 * Decodes an authenticated body into op objects; a block's entries come out as the ops they stand
 * for (SESSION_OPEN and SESSION_DATA, FLOW_INSERT), so `ops` may hold more than the header's count. Null when it is malformed (see the module doc). Never throws. */
export function decodeFrame(body: Buffer): Frame | null {
  const h = decodeFrameHeader(body);
  if (h === null) return null;
  const c = new OpCollector();
  try {
    walk(body, h.count, c);
  } catch {
    return null;
  }
  return { sender: h.sender, seq: h.seq, nonce: h.nonce, epoch: h.epoch, ops: c.ops };
}
