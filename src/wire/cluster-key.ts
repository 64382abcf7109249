/**
 * @module Loads the shared cluster key that authenticates every control message (envelope.ts):
 * from HOLDFAST_CLUSTER_KEY (hex) when set, else from `cluster.keyFile` (raw bytes, owner-only
 * permissions). Dispatcher and agent both load it here, so both read a key file the same way.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { ClusterKeyError } from '../core/errors.js';

/** The environment variable that overrides `cluster.keyFile`. */
export const CLUSTER_KEY_ENV = 'HOLDFAST_CLUSTER_KEY';
/**
 * 256 bits: HMAC-SHA256's full strength (RFC 2104 §3: keys shorter than the hash output weaken it).
 */
export const CLUSTER_KEY_MIN_BYTES = 32;
/** A key file larger than this is certainly not a key (a mistyped path to a log or a device). */
export const CLUSTER_KEY_FILE_MAX_BYTES = 4096;

const HEX_RE = /^[0-9a-fA-F]*$/;

/**
 * Returns the cluster key. HOLDFAST_CLUSTER_KEY wins: at least 64 hex characters (32 bytes),
 * surrounding whitespace ignored. Otherwise `cfg.keyFile` is read as raw bytes (at least 32; e.g.
 * `head -c 32 /dev/urandom > key && chmod 600 key`); a file that group or others can access is
 * refused, as ssh refuses a private key. A relative path is taken from the working directory.
 * Throws ClusterKeyError naming the source and what was wrong, never echoing key material.
 */
export function loadClusterKey(cfg: { keyFile?: string }, env: NodeJS.ProcessEnv = process.env): Buffer {
  const hex = env[CLUSTER_KEY_ENV]?.trim();
  if (hex !== undefined && hex !== '') return keyFromHex(hex);
  if (cfg.keyFile !== undefined) return keyFromFile(cfg.keyFile);
  throw new ClusterKeyError(
    `no cluster key: set ${CLUSTER_KEY_ENV} (at least ${CLUSTER_KEY_MIN_BYTES * 2} hex characters) or cluster.keyFile`,
  );
}

function keyFromHex(hex: string): Buffer {
  if (!HEX_RE.test(hex)) throw new ClusterKeyError(`${CLUSTER_KEY_ENV}: expected hex digits only (0-9, a-f)`);
  if (hex.length % 2 !== 0) {
    throw new ClusterKeyError(`${CLUSTER_KEY_ENV}: expected an even number of hex digits, received ${hex.length}`);
  }
  if (hex.length < CLUSTER_KEY_MIN_BYTES * 2) {
    throw new ClusterKeyError(
      `${CLUSTER_KEY_ENV}: expected at least ${CLUSTER_KEY_MIN_BYTES * 2} hex characters (${CLUSTER_KEY_MIN_BYTES} bytes), received ${hex.length}`,
    );
  }
  return Buffer.from(hex, 'hex');
}

function keyFromFile(path: string): Buffer {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : String(code ?? err);
    throw new ClusterKeyError(`cluster.keyFile ${path}: cannot open (${why})`, path, { cause: err });
  }
  try {
    // fstat on the opened descriptor: the file checked is the file read.
    const st = fstatSync(fd);
    if (!st.isFile()) throw new ClusterKeyError(`cluster.keyFile ${path}: expected a regular file`, path);
    if (process.platform !== 'win32' && (st.mode & 0o077) !== 0) {
      const mode = (st.mode & 0o777).toString(8).padStart(4, '0');
      throw new ClusterKeyError(
        `cluster.keyFile ${path}: permissions ${mode} are too open; the key must be readable by its owner only (chmod 600 ${path})`,
        path,
      );
    }
    if (st.size > CLUSTER_KEY_FILE_MAX_BYTES) {
      throw new ClusterKeyError(`cluster.keyFile ${path}: expected at most ${CLUSTER_KEY_FILE_MAX_BYTES} bytes, found ${st.size}`, path);
    }
    const buf = Buffer.alloc(CLUSTER_KEY_FILE_MAX_BYTES + 1);
    try {
      let n = 0;
      for (;;) {
        const r = readSync(fd, buf, n, buf.length - n, null);
        if (r === 0) break;
        n += r;
        if (n === buf.length) {
          throw new ClusterKeyError(`cluster.keyFile ${path}: expected at most ${CLUSTER_KEY_FILE_MAX_BYTES} bytes`, path);
        }
      }
      if (n < CLUSTER_KEY_MIN_BYTES) {
        throw new ClusterKeyError(`cluster.keyFile ${path}: expected at least ${CLUSTER_KEY_MIN_BYTES} bytes, found ${n}`, path);
      }
      const key = Buffer.alloc(n); // its own memory, not a slice of the shared pool
      buf.copy(key, 0, 0, n);
      return key;
    } finally {
      buf.fill(0); // leave no stray copy of the key in the scratch buffer
    }
  } catch (err) {
    if (err instanceof ClusterKeyError) throw err;
    throw new ClusterKeyError(`cluster.keyFile ${path}: cannot read (${String((err as NodeJS.ErrnoException).code ?? err)})`, path, { cause: err });
  } finally {
    closeSync(fd);
  }
}
