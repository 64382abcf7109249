/**
 * @module The identity takeover contract (survey, seed 000, "network identity takeover"): what a
 * dispatcher does with a group's VIP when its election makes it master (`acquire`) or backup
 * (`release`). Two modes implement it: loopback.ts (bind the services on a 127/8 VIP, no
 * privileges) and linux.ts (`ip addr` + gratuitous ARP). `Serial` keeps the calls in order.
 */

/**
 * Both calls are idempotent and may be called in any order, any number of times; each runs after
 * the previous one has settled, so release() right after acquire() undoes what acquire() did.
 */
export interface IdentityTakeover {
  /** Makes this node answer on the VIP. Rejects with TakeoverError when it cannot. */
  acquire(): Promise<void>;
  /** Stops answering on the VIP. Rejects with TakeoverError when a step failed (what could be undone was). */
  release(): Promise<void>;
}

/** Runs async steps one after the other, whatever each one's outcome. */
export class Serial {
  #tail: Promise<unknown> = Promise.resolve();

  run<T>(step: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(step, step);
    this.#tail = result.catch(() => {});
    return result;
  }
}
