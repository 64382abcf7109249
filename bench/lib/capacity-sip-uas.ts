/**
 * @module A SIP user agent server over UDP with a real, fixed capacity that reports its own load
 * (issue 17's SIP arm of bench/overload): an INVITE takes one of `workers` for `serviceMs` (timer work)
 * before its 200 OK, waiting in a FIFO queue beyond; a 100 Trying goes out at once so the caller does
 * not retransmit. ACK is absorbed; BYE is answered 200 at once (ending a call costs nothing here). A
 * retransmitted INVITE is answered again if already answered, else ignored. A datagram `FLUSH` (the
 * bench, between runs) drops the queued INVITEs and is answered `FLUSHED <count>`. Load vectors as
 * lib/capacity-backend.ts (work done plus work waiting over what the workers could do, capped at 1).
 */
import dgram from 'node:dgram';
import { runIfMain } from './main.js';
import { WorkMeter, type LoadReportTarget } from './capacity-backend.js';
import type { LoadReporter } from './load-reporter.js';

export interface CapacitySipUasOptions {
  readonly port: number;
  readonly workers: number;
  readonly serviceMs: number;
  readonly report?: LoadReportTarget;
}

interface Job {
  readonly request: string;
  readonly port: number;
  readonly address: string;
  readonly key: string;
}

/** The value of header `name` (first occurrence, compact form `short` accepted), or null. */
export function header(message: string, name: string, short: string): string | null {
  const re = new RegExp(`^(?:${name}|${short})[ \\t]*:[ \\t]*(.*)$`, 'im');
  const m = re.exec(message);
  return m ? m[1]!.trim() : null;
}

/** A response to `request` (its Via lines, From, To with `toTag` added, Call-ID, CSeq copied). */
export function response(request: string, status: string, toTag: string | null, contact: string | null): string {
  const lines = request.split('\r\n');
  const vias = lines.filter((l) => /^(via|v)[ \t]*:/i.test(l));
  const to = header(request, 'To', 't') ?? '';
  const out = [
    `SIP/2.0 ${status}`,
    ...vias,
    `From: ${header(request, 'From', 'f') ?? ''}`,
    `To: ${toTag === null || /;tag=/i.test(to) ? to : `${to};tag=${toTag}`}`,
    `Call-ID: ${header(request, 'Call-ID', 'i') ?? ''}`,
    `CSeq: ${header(request, 'CSeq', '') ?? ''}`,
    ...(contact ? [`Contact: ${contact}`] : []),
    'Content-Length: 0',
    '',
    '',
  ];
  return out.join('\r\n');
}

export function startCapacitySipUas(opts: CapacitySipUasOptions): Promise<{ port: number; close(): void }> {
  const socket = dgram.createSocket('udp4');
  const queue: Job[] = [];
  let head = 0;
  let busy = 0;
  /** INVITEs answered (Call-ID + CSeq → the 200 sent), for retransmissions; bounded. */
  const answered = new Map<string, string>();
  const waiting = new Set<string>();
  let port = opts.port;
  const meter = new WorkMeter(
    () => busy,
    () => queue.length - head,
  );
  const account = meter.account;
  const send = (text: string, p: number, a: string): void => socket.send(text, p, a);
  const run = (): void => {
    while (busy < opts.workers && head < queue.length) {
      account();
      const job = queue[head]!;
      queue[head++] = undefined as unknown as Job;
      if (head > 1024 && head * 2 > queue.length) {
        queue.splice(0, head);
        head = 0;
      }
      busy++;
      setTimeout(() => {
        account();
        busy--;
        waiting.delete(job.key);
        const ok = response(job.request, '200 OK', `uas${process.pid}`, `<sip:uas@127.0.0.1:${port}>`);
        answered.set(job.key, ok);
        if (answered.size > 100_000) answered.delete(answered.keys().next().value!);
        send(ok, job.port, job.address);
        run();
      }, opts.serviceMs);
    }
  };
  socket.on('message', (msg, rinfo) => {
    const text = msg.toString('latin1');
    if (text.startsWith('FLUSH')) {
      // The bench, between runs: drop the INVITEs still queued (their callers gave up long ago), answer
      // how many, so that a run does not start behind the previous run's backlog.
      account();
      const dropped = queue.length - head;
      for (let i = head; i < queue.length; i++) waiting.delete(queue[i]!.key);
      queue.length = 0;
      head = 0;
      return send(`FLUSHED ${dropped}`, rinfo.port, rinfo.address);
    }
    const method = /^([A-Z]+) /.exec(text)?.[1];
    if (method === undefined || method === 'ACK') return;
    if (method === 'INVITE') {
      const key = `${header(text, 'Call-ID', 'i')} ${header(text, 'CSeq', '')}`;
      const done = answered.get(key);
      if (done !== undefined) return send(done, rinfo.port, rinfo.address);
      if (waiting.has(key)) return;
      waiting.add(key);
      send(response(text, '100 Trying', null, null), rinfo.port, rinfo.address);
      account();
      queue.push({ request: text, port: rinfo.port, address: rinfo.address, key });
      run();
      return;
    }
    send(response(text, '200 OK', `uas${process.pid}`, null), rinfo.port, rinfo.address);
  });
  const reporter: LoadReporter | null = opts.report ? meter.report(opts.report, opts.workers, opts.serviceMs, 1) : null;
  return new Promise((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(opts.port, '127.0.0.1', () => {
      port = socket.address().port;
      resolve({
        port,
        close() {
          reporter?.close();
          socket.close();
        },
      });
    });
  });
}

runIfMain(import.meta.url, async () => {
  const b = await startCapacitySipUas(JSON.parse(process.argv[2] ?? '{}') as CapacitySipUasOptions);
  process.stdout.write(`listening ${b.port}\n`);
  process.on('SIGTERM', () => {
    b.close();
    process.exit(0);
  });
});
