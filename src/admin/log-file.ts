/**
 * @module The log file destination (`logging.file`): pino writes each line here synchronously.
 * `reopen()` (SIGUSR1, after logrotate renamed the file) opens the path again, so new lines land in
 * the new file. A write that fails (disk full, EIO, a file removed under a read-only mount) drops
 * the line and counts it, on the `holdfast:log:drop` channel and in `dropped`: logging never throws
 * into the code that logs, and never waits for the disk to have room.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { channels, type LogDropEvent } from '../core/diagnostics.js';

export class LogFile {
  private fd: number;
  /** Lines dropped because a write failed, since start. */
  dropped = 0;
  /** The errno code of the last failed write or reopen (ENOSPC...), null while writes succeed. */
  lastError: string | null = null;

  /** Opens (creates, appends to) `path`; throws when it cannot be opened at start: say so early. */
  constructor(readonly path: string) {
    this.fd = openSync(path, 'a', 0o640);
  }

  /** pino's destination contract: one call per line (the line ends with '\n'). */
  write(line: string): boolean {
    if (this.fd < 0) return this.drop('EBADF');
    try {
      const bytes = Buffer.byteLength(line);
      let written = writeSync(this.fd, line);
      // A short write (the disk filled up mid-line): the rest is retried once, then the line is
      // dropped. The partial line stays in the file; the next line starts after it.
      if (written < bytes) written += writeSync(this.fd, Buffer.from(line).subarray(written));
      if (written < bytes) return this.drop('ENOSPC');
      this.lastError = null;
      return true;
    } catch (err) {
      return this.drop((err as NodeJS.ErrnoException).code ?? 'EIO');
    }
  }

  /**
   * Opens the path again (logrotate renamed or removed the old file). The old descriptor is closed
   * only once the new one is open; when the path cannot be opened, lines are dropped (and counted)
   * until the next reopen succeeds. Returns the errno code of a failure, or null.
   */
  reopen(): string | null {
    let fd: number;
    try {
      fd = openSync(this.path, 'a', 0o640);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'EIO';
      this.lastError = code;
      return code;
    }
    const old = this.fd;
    this.fd = fd;
    if (old >= 0) closeQuietly(old);
    return null;
  }

  close(): void {
    if (this.fd >= 0) closeQuietly(this.fd);
    this.fd = -1;
  }

  private drop(code: string): boolean {
    this.dropped++;
    this.lastError = code;
    if (channels.logDrop.hasSubscribers) channels.logDrop.publish({ reason: code } satisfies LogDropEvent);
    return false;
  }
}

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // already gone: nothing to release
  }
}
