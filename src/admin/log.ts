/**
 * @module Logging: the pino logger holdfast writes with, and the subscriber that turns diagnostics
 * channel events (backend transitions, backend errors, refused requests) into log lines.
 */
import diagnostics_channel from 'node:diagnostics_channel';
import pino from 'pino';
import type { Logger as PinoLogger } from 'pino';
import { PinoPretty } from 'pino-pretty';
import { Writable } from 'node:stream';
import type { Config } from '../config/schema.js';
import { realClock, type Clock, type TimerHandle } from '../core/clock.js';
import {
  channels,
  type BackendErrorEvent,
  type BackendStateEvent,
  type HttpRefuseEvent,
  type MembershipEvent,
} from '../core/diagnostics.js';
import { LogFile } from './log-file.js';

export type Logger = PinoLogger;

/**
 * At most one backend-error line per (service, backend, kind) per window. A dead backend under load
 * fails hundreds of times a second; one line a second with a count says the same thing.
 */
export const ERROR_LOG_WINDOW_MS = 1000;

/**
 * Builds the logger. Both formats write synchronously: log volume is low (transitions, rate-limited
 * errors) and a crash must not swallow the lines that explain it. 'pretty' runs pino-pretty as an
 * in-process stream rather than a worker-thread transport, for the same reason and to spare a thread.
 */
export function createLogger(cfg: Config['logging'], destination?: NodeJS.WritableStream): Logger {
  const options = { level: cfg.level };
  if (cfg.format === 'pretty') {
    // Colours only on our own terminal (pino-pretty's default decides that for stdout).
    const pretty = destination ? PinoPretty({ sync: true, destination, colorize: false }) : PinoPretty({ sync: true, destination: 1 });
    return pino(options, pretty);
  }
  return pino(options, destination ?? pino.destination({ dest: 1, sync: true }));
}

/**
 * The logger of a process and, when `logging.file` is set, the file it writes to (for SIGUSR1's
 * reopen and the dropped-line count). Throws the open error when the file cannot be opened at start.
 */
export function createLogOutput(cfg: Config['logging']): { logger: Logger; file: LogFile | null } {
  if (cfg.file === undefined) return { logger: createLogger(cfg), file: null };
  const file = new LogFile(cfg.file);
  if (cfg.format === 'pretty') {
    const sink = new Writable({
      write(chunk: Buffer | string, _encoding, callback) {
        file.write(chunk.toString());
        callback();
      },
    });
    return { logger: createLogger(cfg, sink), file };
  }
  // pino calls write(line) on any object that has it: the file is its destination, no stream between.
  return { logger: pino({ level: cfg.level }, file), file };
}

interface ErrorWindow {
  readonly event: BackendErrorEvent;
  suppressed: number;
  timer: TimerHandle;
}

/**
 * Subscribes `logger` to the diagnostics channels; returns the unsubscribe function.
 *
 * Backend errors are rate-limited per (service, backend, kind): the first error logs at once and
 * opens a window of ERROR_LOG_WINDOW_MS; errors inside it are only counted. When the window ends
 * with a count, one line reports it (`suppressed`) and a new window opens; a quiet window closes.
 * The count therefore appears even when the flood stops, and never more than one line per second.
 */
export function subscribeLogs(logger: Logger, clock: Clock = realClock): () => void {
  const windows = new Map<string, ErrorWindow>();

  const onState = (message: unknown): void => {
    const e = message as BackendStateEvent;
    const fields = { service: e.service, backend: e.backend, from: e.from, to: e.to, reason: e.reason };
    if (e.to === 'down') logger.warn(fields, `backend ${e.service}/${e.backend} down: ${e.reason}`);
    else logger.info(fields, `backend ${e.service}/${e.backend} ${e.to}`);
  };

  const endWindow = (key: string): void => {
    const w = windows.get(key);
    if (!w) return;
    if (w.suppressed === 0) {
      windows.delete(key);
      return;
    }
    logError(w.event, w.suppressed);
    w.suppressed = 0;
    w.timer = clock.setTimeout(() => endWindow(key), ERROR_LOG_WINDOW_MS);
  };

  const logError = (e: BackendErrorEvent, suppressed: number): void => {
    const fields = { service: e.service, backend: e.backend, kind: e.kind };
    if (suppressed === 0) logger.warn(fields, `backend ${e.service}/${e.backend} error: ${e.kind}`);
    else
      logger.warn(
        { ...fields, suppressed },
        `backend ${e.service}/${e.backend} error: ${e.kind} (${suppressed} more in the last ${ERROR_LOG_WINDOW_MS} ms)`,
      );
  };

  const onError = (message: unknown): void => {
    const e = message as BackendErrorEvent;
    const key = `${e.service}\u0000${e.backend}\u0000${e.kind}`;
    const w = windows.get(key);
    if (w) {
      w.suppressed++;
      return;
    }
    logError(e, 0);
    windows.set(key, { event: e, suppressed: 0, timer: clock.setTimeout(() => endWindow(key), ERROR_LOG_WINDOW_MS) });
  };

  const onRefuse = (message: unknown): void => {
    // Refusals can come in floods from a misbehaving client: skip building the line when unused.
    if (!logger.isLevelEnabled('debug')) return;
    const e = message as HttpRefuseEvent;
    logger.debug({ service: e.service, status: e.status, reason: e.reason }, `refused request: ${e.status} ${e.reason}`);
  };

  const onMembership = (message: unknown): void => {
    const e = message as MembershipEvent;
    const fields = { dispatchers: e.dispatchers, detail: e.detail };
    if (e.type === 'lost' || e.type === 'stale' || (e.type === 'view' && e.detail !== undefined)) logger.warn(fields, `membership: ${e.type}${e.detail ? `: ${e.detail}` : ''}`);
    else logger.info(fields, `membership: ${e.type}, ${e.dispatchers} dispatchers`);
  };

  const subscriptions: [diagnostics_channel.Channel, (message: unknown) => void][] = [
    [channels.membership, onMembership],
    [channels.backendState, onState],
    [channels.backendError, onError],
    [channels.httpRefuse, onRefuse],
  ];
  for (const [channel, fn] of subscriptions) diagnostics_channel.subscribe(channel.name, fn);

  let subscribed = true;
  return () => {
    if (!subscribed) return;
    subscribed = false;
    for (const [channel, fn] of subscriptions) diagnostics_channel.unsubscribe(channel.name, fn);
    // Report what is still being counted rather than losing it.
    for (const w of windows.values()) {
      w.timer.cancel();
      if (w.suppressed > 0) logError(w.event, w.suppressed);
    }
    windows.clear();
  };
}
