/**
 * @module When is a draining node idle? When its application has no established TCP connection on
 * its listening port: the dispatcher stopped sending new sessions at the planned failure (flag 3),
 * so once the ones in progress have closed, nothing is lost by stopping. Read from /proc/net/tcp and
 * /proc/net/tcp6, which list every socket with its local address and state.
 */
import { readProc, type ProcReader } from './load-collector.js';

/** The `st` column of /proc/net/tcp for ESTABLISHED (include/net/tcp_states.h: TCP_ESTABLISHED = 1). */
const TCP_ESTABLISHED = '01';

/**
 * Counts the ESTABLISHED sockets whose local port is `port` in the text of /proc/net/tcp or tcp6.
 * Each line after the header: `sl local_address rem_address st ...`, addresses as HEXADDR:HEXPORT.
 * Sockets in other states (LISTEN, TIME_WAIT, CLOSE_WAIT...) do not count: they carry no request.
 */
export function countEstablished(text: string, port: number): number {
  let count = 0;
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 4 || f[3] !== TCP_ESTABLISHED) continue;
    const local = f[1]!;
    const colon = local.lastIndexOf(':');
    if (colon === -1) continue;
    if (parseInt(local.slice(colon + 1), 16) === port) count++;
  }
  return count;
}

/**
 * Established connections on local port `port`, IPv4 and IPv6 together; null when neither table can
 * be read (not Linux): the caller then cannot tell idleness and waits for its deadline.
 */
export async function establishedConnections(port: number, read: ProcReader = readProc): Promise<number | null> {
  const [v4, v6] = await Promise.all([read('net/tcp'), read('net/tcp6')]);
  if (v4 === null && v6 === null) return null;
  return (v4 === null ? 0 : countEstablished(v4, port)) + (v6 === null ? 0 : countEstablished(v6, port));
}
