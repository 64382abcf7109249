/**
 * @module A minimal SIP UAS over UDP for the scale-out lab: it answers every request to the address
 * its top Via names (RFC 3261 §18.2.2: `received`/`rport` when present, else sent-by), as SIP
 * servers do, where sipp's uas answers a call's messages to the address it first heard the call
 * from — so a call whose next request comes through another dispatcher is answered through that
 * dispatcher. INVITE → 200 (again on a retransmission), ACK → nothing, BYE of a call it has → 200, of
 * a call it never saw → 481 (a call routed to the wrong backend fails, as with uas-481.xml).
 */
import dgram from 'node:dgram';

export interface ViaUas {
  readonly id: string;
  readonly port: number;
  /** INVITEs answered (first time), BYEs answered 200, BYEs answered 481. */
  readonly counts: { invites: number; byes: number; unknownByes: number };
  close(): Promise<void>;
}

const CRLF = '\r\n';
const MAX_CALLS = 100_000;

function header(lines: string[], name: string, compact: string): string[] {
  const re = new RegExp(`^(${name}|${compact})\\s*:`, 'i');
  return lines.filter((l) => re.test(l));
}

function viaTarget(via: string): { host: string; port: number } | null {
  const m = /^[^:]+:\s*SIP\/2\.0\/UDP\s+([^;:\s]+)(?::(\d+))?(.*)$/i.exec(via);
  if (!m) return null;
  const params = m[3] ?? '';
  const received = /;received=([^;\s]+)/i.exec(params)?.[1];
  const rport = /;rport=(\d+)/i.exec(params)?.[1];
  return { host: received ?? m[1]!, port: Number(rport ?? m[2] ?? 5060) };
}

export async function startViaUas(id: string, host = '127.0.0.1'): Promise<ViaUas> {
  const socket = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, host, () => resolve()));
  const counts = { invites: 0, byes: 0, unknownByes: 0 };
  /** Call-ID → To tag of the dialogs it answered. */
  const calls = new Map<string, string>();
  socket.on('message', (msg) => {
    const text = msg.toString('latin1');
    const end = text.indexOf(CRLF + CRLF);
    if (end < 0) return;
    const lines = text.slice(0, end).split(CRLF);
    const method = /^([A-Z]+) \S+ SIP\/2\.0$/.exec(lines[0]!)?.[1];
    if (!method || method === 'ACK') return;
    const vias = header(lines, 'Via', 'v');
    const callId = header(lines, 'Call-ID', 'i')[0]?.replace(/^[^:]+:\s*/, '');
    const target = vias[0] ? viaTarget(vias[0]) : null;
    if (!callId || !target) return;
    let status = '200 OK';
    let tag = calls.get(callId);
    if (method === 'INVITE') {
      if (tag === undefined) {
        if (calls.size >= MAX_CALLS) calls.delete(calls.keys().next().value!);
        tag = `${id}-${calls.size}`;
        calls.set(callId, tag);
        counts.invites++;
      }
    } else if (method === 'BYE') {
      if (tag === undefined) {
        status = '481 Call/Transaction Does Not Exist';
        counts.unknownByes++;
      } else {
        calls.delete(callId);
        counts.byes++;
      }
    }
    const to = header(lines, 'To', 't')[0] ?? 'To: <sip:x@x>';
    const reply = [
      `SIP/2.0 ${status}`,
      ...vias,
      ...header(lines, 'From', 'f'),
      tag !== undefined && !/;tag=/i.test(to) ? `${to};tag=${tag}` : to,
      `Call-ID: ${callId}`,
      ...header(lines, 'CSeq', 'CSeq'),
      `Contact: <sip:${id}@${host}:${(socket.address()).port}>`,
      'Content-Length: 0',
      '',
      '',
    ].join(CRLF);
    socket.send(reply, target.port, target.host);
  });
  return {
    id,
    port: socket.address().port,
    counts,
    close: () => new Promise<void>((r) => socket.close(() => r())),
  };
}
