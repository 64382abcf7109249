/** @module String helpers shared by the protocol inspectors and the session table. */

/**
 * A copy of `s` that does not keep the string it was cut from alive. V8 represents a slice of 13 or
 * more characters as a view into its parent: a key sliced from a request head and stored in the
 * session table would hold the whole head (up to maxHeaderBytes) for as long as the session lives —
 * measured: 20 000 keys of 20 characters cut from 8 KB strings held 157 MiB, copies 4 MiB. The
 * concatenation is flattened into a string of the key's length + 1 by slice(), which then views that.
 */
export function unsliced(s: string): string {
  return (' ' + s).slice(1);
}
