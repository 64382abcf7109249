/**
 * @module The live event stream: Server-Sent Events at /api/v1/events (issue 14). Each event of the
 * ring goes out as `id: <n>`, `event: <type>`, `data: <json>`; a client reconnecting with
 * `Last-Event-ID` (or `?lastEventId=`) gets what it missed first, from the ring (older events are
 * gone, or the ring is younger than the id — the dispatcher restarted: the stream then starts with an
 * `event: gap` and replays all it holds). A client that reads too slowly is dropped once
 * its unsent output passes SSE_MAX_BUFFER_BYTES, rather than buffered without bound.
 */
import type http from 'node:http';
import { realClock, type Clock } from '../core/clock.js';
import { ApiError } from './api-http.js';
import type { EventRing, RingEvent } from './events-ring.js';

/** Unsent bytes allowed per client before it is dropped. */
export const SSE_MAX_BUFFER_BYTES = 256 * 1024;
/** A comment line this often keeps proxies and idle timeouts from closing a quiet stream. */
export const SSE_KEEPALIVE_MS = 15_000;
/** The reconnection delay suggested to EventSource clients. */
export const SSE_RETRY_MS = 1000;

function frame(e: RingEvent): string {
  return `id: ${e.id}\nevent: ${e.type}\ndata: ${JSON.stringify({ id: e.id, type: e.type, at: e.at, data: e.data })}\n\n`;
}

function lastEventId(req: http.IncomingMessage, url: URL): number {
  const raw = req.headers['last-event-id'] ?? url.searchParams.get('lastEventId') ?? undefined;
  if (raw === undefined || raw === '') return -1;
  const text = Array.isArray(raw) ? raw[0]! : raw;
  if (!/^\d{1,15}$/.test(text)) {
    throw new ApiError(400, 'bad request', [{ path: req.headers['last-event-id'] !== undefined ? 'header.last-event-id' : 'query.lastEventId', message: `expected an event id, received "${text.slice(0, 40)}"` }]);
  }
  return Number(text);
}

/**
 * Serves one SSE client until it goes away or the server closes. Without Last-Event-ID the stream
 * starts with the events after the newest one (the recent ones are at /api/v1/events/recent);
 * with it, every retained event after that id is replayed first.
 */
export function serveEventStream(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  ring: EventRing,
  { maxBufferBytes = SSE_MAX_BUFFER_BYTES, clock = realClock }: { maxBufferBytes?: number; clock?: Clock } = {},
): void {
  const url = new URL(req.url ?? '/', 'http://x');
  const after = lastEventId(req, url);
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-store',
    'x-accel-buffering': 'no',
  });
  if (req.method === 'HEAD') {
    res.end();
    return;
  }
  req.socket.setNoDelay(true);
  let stopped = false;
  const stop = (): void => {
    if (stopped) return;
    stopped = true;
    unsubscribe();
    keepalive.cancel();
  };
  const send = (chunk: string): void => {
    if (stopped) return;
    res.write(chunk);
    if (res.writableLength > maxBufferBytes) {
      stop();
      res.destroy();
    }
  };
  let head = `retry: ${SSE_RETRY_MS}\n: holdfast events, last id ${ring.lastId}\n\n`;
  if (after >= 0) {
    // Older than the ring (overwritten), or newer than it (a restarted dispatcher's fresh ring).
    const restarted = after > ring.lastId;
    if ((after + 1 < ring.firstId && after < ring.lastId) || restarted) {
      head += `event: gap\ndata: ${JSON.stringify({ after, firstId: ring.firstId, lastId: ring.lastId })}\n\n`;
    }
    for (const e of ring.since(restarted ? 0 : after)) head += frame(e);
  }
  const unsubscribe = ring.onEvent((e) => send(frame(e)));
  const keepalive = clock.setInterval(() => send(': keepalive\n\n'), SSE_KEEPALIVE_MS);
  res.on('close', stop);
  send(head);
}
