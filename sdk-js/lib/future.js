// Future and AsCompleted: handles to keys' results on the cluster, kept by a
// Client (client.js), which owns the connection and the session.

import { DaskError, TimeoutError } from './errors.js';
import { taskRefKey } from './msgpack.js';

export const TERMINAL = new Set(['finished', 'erred', 'cancelled', 'lost', 'failed', 'released']);

// A Future dropped without release() still gives its reference back.
export const finalizer = new FinalizationRegistry(({ client, key }) => client._dropRef(key));

/** Rejects with TimeoutError after `ms` (no limit when ms is undefined). */
export function withTimeout(promise, ms, what) {
  if (ms === undefined || ms === null || ms === Infinity) return promise;
  let timer;
  const limit = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(`${what} took longer than ${ms} ms`)), ms);
  });
  return Promise.race([promise, limit]).finally(() => clearTimeout(timer));
}

/**
 * A handle to one key's result on the cluster. It holds one reference:
 * call `release()` when done with it (a Future that is garbage-collected
 * releases itself). A Future passed inside task arguments makes that task
 * depend on it.
 */
export class Future {
  #client;
  #released = false;

  /** @internal */
  constructor(client, key) {
    this.#client = client;
    /** @type {string} */
    this.key = key;
  }

  /** The client this future belongs to. */
  get client() {
    return this.#client;
  }

  /** pending, finished, erred, cancelled, lost, failed (request refused or connection closed), or released. */
  get status() {
    return this.#released ? 'released' : this.#client._state(this.key);
  }

  /** Whether the key reached a final state. */
  done() {
    return TERMINAL.has(this.status);
  }

  /**
   * Why the key cannot progress now, when the scheduler said (a task it
   * needs cannot run on any connected worker; dask/1.1 `key-waiting`):
   * `{reason, message, task}`, or null. It still runs when a suitable
   * worker joins.
   */
  get waiting() {
    return this.#released ? null : this.#client._waiting(this.key);
  }

  /**
   * Waits until the key reaches a final state; resolves to that status
   * (never rejects, except with TimeoutError past `timeout` ms).
   */
  async wait({ timeout } = {}) {
    if (this.#released) return 'released';
    const info = await withTimeout(this.#client._waitKey(this.key), timeout, `waiting for ${this.key}`);
    return info.state;
  }

  /**
   * The result: waits, then fetches it from the worker holding it. Rejects
   * with RemoteError (the task raised), CancelledError, LostError,
   * RequestError or ConnectionError.
   * @param {{timeout?: number, raw?: boolean, exactFloats?: boolean}} [options]
   *   raw: the msgpack bytes instead of the decoded value.
   */
  async result(options = {}) {
    if (this.#released) throw new DaskError(`future ${this.key} was released`);
    const [value] = await withTimeout(this.#client._results([this], options), options.timeout, `result of ${this.key}`);
    return value;
  }

  /** Cancels the key for this client (for every client with force). */
  cancel({ force = false } = {}) {
    this.#client.cancel([this], { force });
  }

  /** Gives this future's reference back; the scheduler may free the result once no one holds it. */
  release() {
    if (this.#released) return;
    this.#released = true;
    finalizer.unregister(this);
    this.#client._dropRef(this.key);
  }

  get [taskRefKey]() {
    return this.key;
  }

  toString() {
    return `Future(${this.key}, ${this.status})`;
  }

  [Symbol.for('nodejs.util.inspect.custom')]() {
    return this.toString();
  }
}

/**
 * Futures in the order they complete (finish, err, are cancelled...), as
 * an async iterator: `for await (const f of client.asCompleted(futures))`.
 * With `withResults`, yields `[future, result]` pairs and throws the first
 * error it meets.
 */
export class AsCompleted {
  #client;
  #options;
  #pending = 0;
  #ready = [];
  #head = 0; // #ready[#head..] are not yielded yet (no O(n) shift per item)
  #wake = null;

  /** @internal */
  constructor(client, futures, options) {
    this.#client = client;
    this.#options = options;
    for (const f of futures) this.add(f);
  }

  /** Adds a future to wait for (also while iterating). */
  add(future) {
    if (!(future instanceof Future)) throw new TypeError('asCompleted takes Futures');
    this.#pending += 1;
    const done = () => {
      this.#pending -= 1;
      this.#ready.push(future);
      this.#wake?.();
    };
    future.wait().then(done, done);
  }

  /** Futures not yielded yet. */
  get count() {
    return this.#pending + this.#ready.length - this.#head;
  }

  async next() {
    while (this.#head === this.#ready.length) {
      if (this.#pending === 0) return { done: true, value: undefined };
      await new Promise((resolve) => {
        this.#wake = resolve;
      });
      this.#wake = null;
    }
    const future = this.#ready[this.#head];
    this.#ready[this.#head] = undefined;
    this.#head += 1;
    if (this.#head === this.#ready.length) {
      this.#ready = [];
      this.#head = 0;
    }
    if (!this.#options.withResults) return { done: false, value: future };
    return { done: false, value: [future, await future.result(this.#options)] };
  }

  async return() {
    this.#ready = [];
    this.#head = 0;
    this.#pending = 0;
    return { done: true, value: undefined };
  }

  [Symbol.asyncIterator]() {
    return this;
  }
}
