/**
 * @module The transmission agent message body (HANet §2.3, §3.6; type 5, 20 bytes): a server whose
 * public links all failed asks a sibling over the private link to take over its packet transmission
 * (request), the sibling answers (ack or refuse), and the server hands the job back (release).
 * kind u8 @0, reason u8 @1, host u16 @2, seq u32 @4, timestamp u32 @8, address u32 @12 (the
 * requester's service address, IPv4), next hop u32 @16 (the requester's address on the private
 * link), big-endian. The full layout and its envelope are documented in envelope.ts. Like HANet's
 * in-kernel responder this travels over UDP: a TCP handshake's SYN/ACK would be routed through the
 * failed link (HANet §3.6).
 */
import net from 'node:net';

export const TRANSMISSION_AGENT_BYTES = 20;

/** What the message asks or answers, in wire order 1-4. */
export type TransmissionAgentKind = 'request' | 'ack' | 'release' | 'refuse';

/**
 * Why a sibling refused, wire values 0-3: none (kinds other than refuse), it has no GOOD public
 * link itself, the address is not one it relays for that host, or it relays another server's
 * address from that host already.
 */
export type TransmissionAgentReason = 'none' | 'no-public-link' | 'not-allowed' | 'busy';

export interface TransmissionAgentMessage {
  kind: TransmissionAgentKind;
  reason: TransmissionAgentReason;
  /** u16: the sender's Host_Identity (agent.id). */
  host: number;
  /** u32, +1 per message from this sender, wraps at 2^32 (replay-guard.ts). */
  seq: number;
  /** u32: wall-clock ms mod 2^32 at send time (timestamp.ts). */
  timestamp: number;
  /** Dotted IPv4: the requester's service address (the one the sibling answers ARP for). */
  address: string;
  /** Dotted IPv4: the requester's address on the private link (where the sibling routes the address). */
  nextHop: string;
}

const KINDS: readonly TransmissionAgentKind[] = ['request', 'ack', 'release', 'refuse'];
const REASONS: readonly TransmissionAgentReason[] = ['none', 'no-public-link', 'not-allowed', 'busy'];

function ipv4ToU32(ip: string, field: string): number {
  if (!net.isIPv4(ip)) throw new RangeError(`${field}: expected an IPv4 address, received ${JSON.stringify(ip)}`);
  return ip.split('.').reduce((acc, octet) => acc * 256 + Number(octet), 0);
}

function u32ToIpv4(v: number): string {
  return `${v >>> 24}.${(v >>> 16) & 0xff}.${(v >>> 8) & 0xff}.${v & 0xff}`;
}

/**
 * The 20-byte body. Throws RangeError when a field does not fit its width or an address is not
 * IPv4: the sender's bug, caught before anything is sent.
 */
export function encodeTransmissionAgent(m: TransmissionAgentMessage): Buffer {
  const kind = KINDS.indexOf(m.kind);
  if (kind < 0) throw new RangeError(`kind: expected one of ${KINDS.join(', ')}, received ${JSON.stringify(m.kind)}`);
  const reason = REASONS.indexOf(m.reason);
  if (reason < 0) throw new RangeError(`reason: expected one of ${REASONS.join(', ')}, received ${JSON.stringify(m.reason)}`);
  const b = Buffer.allocUnsafe(TRANSMISSION_AGENT_BYTES);
  b.writeUInt8(kind + 1, 0);
  b.writeUInt8(reason, 1);
  b.writeUInt16BE(m.host, 2);
  b.writeUInt32BE(m.seq, 4);
  b.writeUInt32BE(m.timestamp, 8);
  b.writeUInt32BE(ipv4ToU32(m.address, 'address'), 12);
  b.writeUInt32BE(ipv4ToU32(m.nextHop, 'nextHop'), 16);
  return b;
}

/**
 * Decodes an authenticated body; null when its length is wrong, the kind or reason is not one this
 * version defines, a reason is given on a kind other than refuse, or an address is 0.0.0.0.
 */
export function decodeTransmissionAgent(body: Buffer): TransmissionAgentMessage | null {
  if (body.length !== TRANSMISSION_AGENT_BYTES) return null;
  const kindCode = body[0]!;
  const reasonCode = body[1]!;
  // Range checks first: an out-of-bounds array read would walk the prototype chain.
  if (kindCode < 1 || kindCode > KINDS.length || reasonCode >= REASONS.length) return null;
  const kind = KINDS[kindCode - 1]!;
  if ((kind === 'refuse') !== (reasonCode !== 0)) return null;
  const address = body.readUInt32BE(12);
  const nextHop = body.readUInt32BE(16);
  if (address === 0 || nextHop === 0) return null;
  return {
    kind,
    reason: REASONS[reasonCode]!,
    host: body.readUInt16BE(2),
    seq: body.readUInt32BE(4),
    timestamp: body.readUInt32BE(8),
    address: u32ToIpv4(address),
    nextHop: u32ToIpv4(nextHop),
  };
}
