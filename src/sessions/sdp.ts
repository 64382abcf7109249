/**
 * @module SDP inspection and rewriting for the media relay (issue 6, the ALG of seed 004): which media
 * streams an offer or answer announces (RFC 4566 c= and m=, RFC 3605 a=rtcp), and the same text with
 * the relayed streams pointing at the relay instead.
 *
 * Parsing uses `sdp-transform` for the fields, plus a strict line check of our own, because
 * sdp-transform accepts anything (a body of garbage parses as "no media") and we must not relay what
 * we misread. Rewriting is done on the lines themselves, not with sdp-transform's write(): write()
 * drops lines it does not know, reorders others, and turns the o= session id and version into
 * doubles (a 20-digit version loses its last digits), while an ALG must change nothing but the
 * addresses and ports it relays.
 *
 * What is relayed: an m= line with a non-zero port, a single port (no "/2" port count), a UDP-based
 * transport (RTP/..., UDP/..., udptl), and an IPv4 unicast connection address (media-level c=, else
 * the session-level one). Not relayed, left as written: port 0 (a disabled or rejected stream, RFC
 * 3264 §6), IPv6 (IP6) addresses, TCP transports, 0.0.0.0 (RFC 2543 hold) and multicast addresses.
 */
import sdpTransform from 'sdp-transform';

/** One m= section as announced. */
export interface SdpMedia {
  /** The m= line's position among the m= lines (0-based): the relay keeps one stream per index. */
  readonly index: number;
  readonly type: string;
  readonly port: number;
  readonly protocol: string;
  /** The effective connection address (media-level c=, else session-level), null when none. */
  readonly address: string | null;
  readonly ipVersion: 4 | 6 | null;
  /** a=rtcp port (RFC 3605), else port + 1. */
  readonly rtcpPort: number;
  /** a=rtcp address when given, else `address`. */
  readonly rtcpAddress: string | null;
  /** Whether the relay carries this stream (see the module comment). */
  readonly relayable: boolean;
}

export interface ParsedSdp {
  readonly text: string;
  readonly media: readonly SdpMedia[];
  /** For rewrite(): the lines and where each m= section starts. */
  readonly lines: readonly string[];
  readonly eol: string;
  readonly trailingEol: boolean;
}

export type SdpParseResult = { readonly ok: true; readonly sdp: ParsedSdp } | { readonly ok: false; readonly reason: string };

/** Where a relayed stream is announced instead: the relay's address and RTP port (RTCP = port + 1). */
export interface SdpRelayTarget {
  readonly address: string;
  readonly port: number;
}

const LINE = /^[a-z]=/;
const M_LINE = /^m=([^ ]+) (\d+)(?:\/(\d+))? ([^ ]+)(?: (.*))?$/;
const C_LINE = /^c=IN (IP4|IP6) ([^ ]+)$/;
const RTCP_LINE = /^a=rtcp:(\d+)(?: IN (IP4|IP6) ([^ ]+))?$/;
const RELAYED_PROTOCOL = /^(?:RTP\/|UDP\b|udptl$)/i;

function dottedQuad(s: string): boolean {
  const parts = s.split('.');
  return parts.length === 4 && parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255);
}

function validAddress(version: string, address: string): boolean {
  if (version === 'IP6') return /^[0-9A-Fa-f:.]+$/.test(address) || /^[A-Za-z0-9.-]+$/.test(address);
  // IP4: a dotted quad, optionally /ttl[/count] (multicast), or an FQDN (RFC 4566 §5.7).
  const base = address.split('/')[0]!;
  return dottedQuad(base) || (/^[A-Za-z0-9.-]+$/.test(base) && /[A-Za-z]/.test(base));
}

function unicastIPv4(address: string): boolean {
  if (!dottedQuad(address)) return false;
  const first = Number(address.split('.')[0]);
  return address !== '0.0.0.0' && !(first >= 224 && first <= 239);
}

/**
 * Parses an SDP body (latin1 text, so that rewriting keeps every byte). Never throws: anything that
 * is not a well-formed session description (RFC 4566 §5: v=0 first, `<type>=<value>` lines, valid m=,
 * c= and a=rtcp lines, a connection for every active stream) is { ok: false, reason }.
 */
export function parseSdp(text: string): SdpParseResult {
  const eol = text.includes('\r\n') ? '\r\n' : '\n';
  const lines = text.split(/\r?\n/);
  const trailingEol = lines.length > 1 && lines[lines.length - 1] === '';
  if (trailingEol) lines.pop();
  if (lines[0] !== 'v=0') return { ok: false, reason: 'the first line is not v=0' };
  let sessionC: { version: string; address: string } | null = null;
  type Section = { type: string; port: number; count: number | null; protocol: string; c: { version: string; address: string } | null; rtcp: { port: number; address: string | null } | null };
  const sections: Section[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (!LINE.test(line)) return { ok: false, reason: `line ${i + 1} is not <type>=<value>` };
    const current = sections[sections.length - 1];
    if (line.startsWith('m=')) {
      const m = M_LINE.exec(line);
      const port = m ? Number(m[2]) : NaN;
      if (!m || port > 65535) return { ok: false, reason: `bad m= line ${i + 1}` };
      sections.push({ type: m[1]!, port, count: m[3] === undefined ? null : Number(m[3]), protocol: m[4]!, c: null, rtcp: null });
    } else if (line.startsWith('c=')) {
      const c = C_LINE.exec(line);
      if (!c || !validAddress(c[1]!, c[2]!)) return { ok: false, reason: `bad c= line ${i + 1}` };
      const conn = { version: c[1]!, address: c[2]! };
      if (current) current.c = conn;
      else sessionC = conn;
    } else if (line.startsWith('a=rtcp:') && current) {
      const r = RTCP_LINE.exec(line);
      if (!r || Number(r[1]) > 65535 || (r[2] !== undefined && !validAddress(r[2], r[3]!))) return { ok: false, reason: `bad a=rtcp line ${i + 1}` };
      current.rtcp = { port: Number(r[1]), address: r[3] ?? null };
    }
  }
  // sdp-transform must see the same streams (a cross-check that both readings agree).
  let parsed: sdpTransform.SessionDescription;
  try {
    parsed = sdpTransform.parse(text);
  } catch {
    return { ok: false, reason: 'sdp-transform could not parse it' };
  }
  if (parsed.media.length !== sections.length) return { ok: false, reason: 'm= lines disagree' };
  const media: SdpMedia[] = [];
  for (let i = 0; i < sections.length; i++) {
    const s = sections[i]!;
    const t = parsed.media[i]!;
    if (s.count === null && (t.port !== s.port || t.type !== s.type)) return { ok: false, reason: `m= line ${i + 1} disagrees` };
    const conn = s.c ?? sessionC;
    if (s.port !== 0 && conn === null) return { ok: false, reason: `stream ${i} has no connection address` };
    const address = conn?.address ?? null;
    const ipVersion = conn === null ? null : conn.version === 'IP6' ? 6 : 4;
    const relayable = s.port !== 0 && s.count === null && RELAYED_PROTOCOL.test(s.protocol) && ipVersion === 4 && address !== null && unicastIPv4(address);
    media.push({
      index: i,
      type: s.type,
      port: s.port,
      protocol: s.protocol,
      address,
      ipVersion,
      rtcpPort: s.rtcp?.port ?? s.port + 1,
      rtcpAddress: s.rtcp?.address ?? address,
      relayable,
    });
  }
  return { ok: true, sdp: { text, media, lines, eol, trailingEol } };
}

/**
 * The SDP with stream i announced at `targets[i]` (when given and the stream is relayable): its m=
 * port, its c= address (a media-level c= is added for a stream that used the session-level one, and
 * the session-level c= moves to the relay only when every active stream using it is relayed) and
 * its a=rtcp (port + 1, and the address when a=rtcp carried one). `disable[i]`: the stream's port
 * becomes 0 (no relay port could be had for it). Everything else is kept byte for byte.
 */
export function rewriteSdp(sdp: ParsedSdp, targets: readonly (SdpRelayTarget | null | undefined)[], disable: readonly boolean[] = []): string {
  const out: string[] = [];
  const relayed = (i: number): SdpRelayTarget | null => {
    const m = sdp.media[i];
    const t = targets[i];
    return m && m.relayable && t && !disable[i] ? t : null;
  };
  // Which streams rely on the session-level c=.
  const usesSession: boolean[] = [];
  {
    let section = -1;
    for (const line of sdp.lines) {
      if (line.startsWith('m=')) usesSession[++section] = true;
      else if (line.startsWith('c=') && section >= 0) usesSession[section] = false;
    }
  }
  const sessionUsers = sdp.media.filter((m) => usesSession[m.index] && m.port !== 0 && !disable[m.index]);
  const sessionTarget = sessionUsers.length > 0 && sessionUsers.every((m) => relayed(m.index) !== null) ? relayed(sessionUsers[0]!.index) : null;
  let section = -1;
  for (const line of sdp.lines) {
    if (line.startsWith('m=')) {
      section++;
      const t = relayed(section);
      const m = M_LINE.exec(line)!;
      const port = disable[section] ? 0 : t ? t.port : null;
      out.push(port === null ? line : `m=${m[1]} ${port}${m[3] !== undefined ? `/${m[3]}` : ''} ${m[4]}${m[5] !== undefined ? ` ${m[5]}` : ''}`);
      if (usesSession[section] && !disable[section]) {
        // A stream on the session-level c=: give it its own when its address differs from the session's new one.
        if (t && (!sessionTarget || sessionTarget.address !== t.address)) out.push(`c=IN IP4 ${t.address}`);
      }
      continue;
    }
    if (line.startsWith('c=')) {
      if (section < 0) {
        out.push(sessionTarget ? `c=IN IP4 ${sessionTarget.address}` : line);
      } else {
        const t = relayed(section);
        out.push(t ? `c=IN IP4 ${t.address}` : line);
      }
      continue;
    }
    if (line.startsWith('a=rtcp:') && section >= 0) {
      const t = relayed(section);
      const r = RTCP_LINE.exec(line);
      if (t && r) {
        out.push(r[2] !== undefined ? `a=rtcp:${t.port + 1} IN IP4 ${t.address}` : `a=rtcp:${t.port + 1}`);
        continue;
      }
    }
    out.push(line);
  }
  return out.join(sdp.eol) + (sdp.trailingEol ? sdp.eol : '');
}
