// The Client: one TCP connection to a scheduler, driven by core's client
// session in wasm. This file moves bytes between the socket and the
// session and turns the session's replies and events into Promises; the
// session makes every protocol decision (handshake, request ids, key
// names, reference counts, batching).

import net from 'node:net';
import { randomBytes } from 'node:crypto';

import { parseAddress } from './address.js';
import { secretFor } from './credentials.js';
import { channelBinding, connectTls, explainTlsError, tlsSettings } from './tls.js';
import { ConnectionError, LostError, RequestError, TimeoutError, errorOfState } from './errors.js';
import { AsCompleted, Future, TERMINAL, finalizer, withTimeout } from './future.js';
import { decode } from './msgpack.js';
import { WasmCallError, WasmClient } from './wasm.js';

export { AsCompleted, Future } from './future.js';

/** Times a gather asks again for keys being computed again (dask/1.1). */
const GATHER_RECOMPUTED_ROUNDS_MAX = 3;
/** Scheduler states of a missing key worth asking again for. */
const ON_ITS_WAY = ['released', 'waiting', 'no-worker', 'queued', 'processing', 'memory'];
const TASK_OPTIONS = new Set(['key', 'kwargs', 'priority', 'retries', 'resources', 'workers']);
const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
const CLOSE_TIMEOUT_MS = 5_000;
/** How long a lost connection is tried again (as the Rust client: 60 s). */
const DEFAULT_RECONNECT_TIMEOUT_MS = 60_000;
const RECONNECT_RETRY_MS = 100;
/** Times a gather cut by a lost connection is sent again once resumed. */
const GATHER_RESUMED_ROUNDS_MAX = 3;


/** A command error from wasm is the caller's mistake: a TypeError. */
function asTypeError(e) {
  return e instanceof WasmCallError ? new TypeError(e.message.replace(/^command: /, '')) : e;
}

/** A connection to a dask/1 scheduler. Make one with `await Client.connect(address)`. */
export class Client {
  #wasm;
  #socket = null;
  #target = null;
  #tls = null;
  #connectTimeout = DEFAULT_CONNECT_TIMEOUT_MS;
  #reconnectTimeout;
  #reconnecting = null;
  #giveUpAt = null;
  #resumeWaiters = [];
  #keys = new Map();
  #requests = new Map();
  #flushScheduled = false;
  #ended = false;
  #closedReason = null;
  #onConnected = null;
  #socketClosed;
  #waitingListeners = new Set();

  /** @internal use Client.connect */
  constructor(address, options = {}) {
    this.address = address;
    this.name = options.name ?? null;
    /** The id the scheduler gave this client (once connected). */
    this.id = null;
    /** The last non-fatal error the scheduler sent that named no request. */
    this.lastServerError = null;
    const secret = secretFor('client', options.credentials);
    this.#reconnectTimeout = options.reconnectTimeout ?? DEFAULT_RECONNECT_TIMEOUT_MS;
    this.#wasm = new WasmClient({
      name: this.name ?? undefined,
      seed: randomBytes(8).readBigUInt64LE(),
      client_secret: secret ?? undefined,
      nonce: secret ? randomBytes(32) : undefined,
      tls: address.startsWith('tls://'),
      // The session survives a lost connection when its scheduler keeps a
      // journal: this client connects again and resumes it.
      resumable: this.#reconnectTimeout > 0,
      part_bytes: options.submitPartBytes,
    });
  }

  /**
   * Connects to the scheduler at `address` (`tcp://HOST:PORT`, or
   * `tls://HOST:PORT` with the `tls` option's files) and completes the
   * dask/1 handshake.
   * @param {string} address
   * It proves the cluster's client secret (dask/1.1 authentication) from
   * the credentials file found as every dask-rs program finds it
   * (`credentials`: a path, or false for none; else DASK_CREDENTIALS,
   * else the file dask-scheduler created on this machine); over TLS the
   * proofs are bound to the TLS session.
   * A scheduler that keeps a journal (`dask-scheduler --journal DIR`)
   * gives the client a session: when the connection is lost, the client
   * connects again to the same address for `reconnectTimeout` ms (default
   * 60 s; 0: never) and resumes the session, so its futures get their
   * outcomes; requests cut by the loss (a gather) are sent again. If the
   * scheduler kept no session, the futures end lost (LostError).
   * A graph (one `submit` or `map`) of more than 128 KiB of encoding
   * goes as several messages of at most `submitPartBytes` (default
   * 4 MiB), the first of 64 KiB, so no graph is too large for one (spec:
   * "A graph larger than a frame").
   * @param {{name?: string, timeout?: number, credentials?: string | false,
   *          reconnectTimeout?: number, submitPartBytes?: number,
   *          tls?: {caFile: string, certFile?: string, keyFile?: string}}} [options]
   *   timeout in ms (default 10 s); tls: Dask's files (the cluster's CA,
   *   and this client's certificate for a scheduler that requires one)
   * @returns {Promise<Client>}
   */
  static async connect(address, options = {}) {
    const target = parseAddress(address);
    const tls = target.tls ? tlsSettings(options.tls) : null;
    if (target.tls && !tls) {
      throw new ConnectionError(`${address} is a TLS address: give the cluster's CA file (the tls option's caFile)`);
    }
    const client = new Client(address, options);
    await client.#open(target, tls, options.timeout ?? DEFAULT_CONNECT_TIMEOUT_MS);
    return client;
  }

  async #open(target, tls, timeout) {
    this.#target = target;
    this.#tls = tls;
    this.#connectTimeout = timeout;
    const { host, port } = target;
    const socket = tls ? connectTls(tls, { host, port }) : net.connect({ host, port });
    let failure = null;
    let reached = false;
    // Before the session hears of the close: a refused connect is named so.
    socket.once('close', () => {
      if (!this.#wasm || reached || !failure) return;
      // Nothing was reached (refused, unreachable): not a lost connection.
      this.#onConnected?.reject(new ConnectionError(`cannot connect to ${this.address}: ${failure.message}`));
      this.#onConnected = null;
    });
    this.#attach(socket, (e) => {
      failure = e;
    });
    socket.once('connect', () => {
      reached = !tls;
    });
    if (tls) {
      socket.once('secureConnect', () => {
        reached = true;
        // Before any bytes arrive: the proofs cover the binding.
        this.#wasm?.channelBinding(channelBinding(socket));
      });
    }
    const connected = new Promise((resolve, reject) => {
      this.#onConnected = { resolve, reject };
    });
    this.#flush(); // the hello, written once the socket connects
    try {
      await withTimeout(connected, timeout, `connecting to ${this.address}`);
    } catch (e) {
      this.#destroy();
      throw e instanceof TimeoutError ? new ConnectionError(e.message) : e;
    }
  }

  /**
   * Makes `socket` this client's connection: its bytes go to the session,
   * its end tells the session (which may then want to reconnect).
   * `onError` sees its error first.
   */
  #attach(socket, onError = () => {}) {
    socket.setNoDelay(true);
    this.#socket = socket;
    this.#ended = false;
    this.#socketClosed = new Promise((resolve) => socket.once('close', resolve));
    let failure = null;
    socket.on('data', (chunk) => {
      if (!this.#wasm || socket !== this.#socket) return;
      this.#wasm.receive(chunk);
      this.#flush();
    });
    socket.on('error', (e) => {
      failure = this.#tls ? new Error(explainTlsError(e)) : e;
      onError(failure);
    });
    socket.on('close', () => {
      if (!this.#wasm || socket !== this.#socket) return;
      const by = this.id !== null ? 'the scheduler' : 'the peer';
      this.#wasm.transportClosed(failure ? failure.message : `${by} closed the connection`);
      this.#flush();
    });
  }

  /**
   * The connection was lost and the session can be resumed (its scheduler
   * keeps a journal): connects again to the same address until
   * `reconnectTimeout` ms have passed since the loss, and resumes the
   * session on the first connection made; gives up (the session closes)
   * after that. A resumed connection that fails before its handshake
   * completes comes back here (the session wants to reconnect again).
   */
  #reconnect() {
    if (this.#reconnecting) return;
    this.#giveUpAt ??= Date.now() + this.#reconnectTimeout;
    this.#reconnecting = this.#redial().finally(() => {
      this.#reconnecting = null;
    });
  }

  async #redial() {
    const { host, port } = this.#target;
    while (this.#wasm && this.#closedReason === null) {
      const left = this.#giveUpAt - Date.now();
      if (left <= 0) break;
      const socket = await this.#dial(host, port, Math.min(left, this.#connectTimeout));
      if (!this.#wasm || this.#closedReason !== null) {
        socket?.destroy();
        return;
      }
      if (socket) {
        this.#wasm.command({ cmd: 'resume', nonce: randomBytes(32) });
        // Before any bytes arrive: the proofs cover the binding.
        if (this.#tls) this.#wasm.channelBinding(channelBinding(socket));
        this.#attach(socket);
        this.#flush();
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, RECONNECT_RETRY_MS));
    }
    if (this.#wasm && this.#closedReason === null) {
      this.#wasm.command({ cmd: 'give_up' });
      this.#flush();
    }
  }

  /** A socket connected to host:port, or null when it could not be (within `timeout` ms). */
  #dial(host, port, timeout) {
    return new Promise((resolve) => {
      const socket = this.#tls ? connectTls(this.#tls, { host, port }) : net.connect({ host, port });
      const done = (ok) => {
        clearTimeout(timer);
        socket.removeAllListeners();
        if (!ok) socket.destroy();
        resolve(ok ? socket : null);
      };
      const timer = setTimeout(() => done(false), timeout);
      socket.once(this.#tls ? 'secureConnect' : 'connect', () => done(true));
      socket.once('error', () => done(false));
      socket.once('close', () => done(false));
    });
  }

  /** Resolves once the session is connected again, or closed. */
  #resumed() {
    if (!this.#wasm || this.#closedReason !== null || this.#giveUpAt === null) return Promise.resolve();
    return new Promise((resolve) => this.#resumeWaiters.push(resolve));
  }

  #wakeResumeWaiters() {
    const waiters = this.#resumeWaiters;
    this.#resumeWaiters = [];
    for (const w of waiters) w();
  }

  /** Whether the session is open (false while a lost connection is being resumed). */
  get connected() {
    return this.#wasm !== null && this.#closedReason === null && this.id !== null && this.#giveUpAt === null;
  }

  // ---- I/O ----------------------------------------------------------------

  #schedule() {
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    // Everything asked for in this turn of the event loop goes out in one
    // frame (the session batches what is queued).
    queueMicrotask(() => this.#flush());
  }

  #flush() {
    this.#flushScheduled = false;
    if (!this.#wasm) return;
    const { transmit, events, close, reconnect } = this.#wasm.drain();
    if (transmit.length > 0 && this.#socket && !this.#socket.destroyed && !this.#ended) {
      this.#socket.write(transmit);
    }
    for (const event of events) this.#event(event);
    if (close && this.#socket && !this.#ended) {
      this.#ended = true;
      this.#socket.end();
    }
    if (reconnect && this.#wasm) this.#reconnect();
  }

  #event(e) {
    switch (e.type) {
      case 'connected':
        this.id = e.client_id;
        this.#giveUpAt = null;
        this.#onConnected?.resolve();
        this.#onConnected = null;
        this.#wakeResumeWaiters();
        return;
      case 'key_waiting': {
        const rec = this.#keys.get(e.key);
        if (!rec || rec.info.state !== 'pending') return;
        rec.waiting = { reason: e.reason, message: e.message, task: e.task ?? null };
        for (const listener of this.#waitingListeners) listener(e.key, rec.waiting);
        return;
      }
      case 'key': {
        const rec = this.#keys.get(e.key);
        if (!rec) return;
        // A finished key's `value` (dask/1.1 inline result) stays in info.
        rec.info = e;
        if (e.state !== 'pending') rec.waiting = null;
        if (TERMINAL.has(e.state)) {
          const waiters = rec.waiters;
          rec.waiters = [];
          for (const w of waiters) w(e);
        }
        return;
      }
      case 'dataset': {
        const req = this.#requests.get(e.request);
        this.#requests.delete(e.request);
        // The session took a reference per key: Futures take them over now,
        // before any event about these keys is handled.
        const futures = this.#adopt(e.keys, e.states);
        if (req) req.resolve(futures);
        else for (const f of futures) f.release();
        return;
      }
      case 'request_failed': {
        const req = this.#requests.get(e.request);
        this.#requests.delete(e.request);
        req?.reject(e.code == null ? new ConnectionError(e.message) : new RequestError(e));
        return;
      }
      case 'server_error':
        this.lastServerError = e.message;
        return;
      case 'closed':
        this.#closedReason = e.reason;
        this.#onConnected?.reject(new ConnectionError(`${this.address}: ${e.reason}`));
        this.#onConnected = null;
        this.#wakeResumeWaiters();
        return;
      default: {
        const req = this.#requests.get(e.request);
        this.#requests.delete(e.request);
        req?.resolve(e);
      }
    }
  }

  #request(command) {
    const { request } = this.#command(command);
    const reply = new Promise((resolve, reject) => this.#requests.set(request, { resolve, reject }));
    this.#schedule();
    return reply;
  }

  #command(command) {
    if (!this.#wasm) throw new ConnectionError(`client is closed: ${this.#closedReason ?? 'closed'}`);
    try {
      return this.#wasm.command(command);
    } catch (e) {
      throw asTypeError(e);
    }
  }

  // ---- keys and futures -----------------------------------------------------

  #adopt(keys, states) {
    return keys.map((key, i) => {
      let rec = this.#keys.get(key);
      if (!rec) {
        rec = { info: { state: states[i] }, count: 0, waiters: [] };
        this.#keys.set(key, rec);
      } else if (states[i] === 'pending') {
        rec.info = { state: 'pending' }; // wanted anew after it failed
      }
      rec.count += 1;
      const future = new Future(this, key);
      finalizer.register(future, { client: this, key }, future);
      return future;
    });
  }

  /** @internal */
  _state(key) {
    return this.#keys.get(key)?.info.state ?? 'released';
  }

  /** @internal why the key waits, or null */
  _waiting(key) {
    return this.#keys.get(key)?.waiting ?? null;
  }

  /** @internal resolves to the key's final state info */
  _waitKey(key) {
    const rec = this.#keys.get(key);
    if (!rec) return Promise.resolve({ state: 'released' });
    if (TERMINAL.has(rec.info.state)) return Promise.resolve(rec.info);
    return new Promise((resolve) => rec.waiters.push(resolve));
  }

  /** @internal one reference to `key` is given back */
  _dropRef(key) {
    const rec = this.#keys.get(key);
    if (!rec) return;
    rec.count -= 1;
    if (rec.count > 0) return;
    this.#keys.delete(key);
    for (const w of rec.waiters) w({ state: 'released' });
    if (!this.#wasm) return;
    this.#wasm.command({ cmd: 'release', keys: [key] });
    this.#schedule();
  }

  #futuresOf(futures, what) {
    const list = Array.isArray(futures) ? futures : [futures];
    for (const f of list) {
      if (!(f instanceof Future)) throw new TypeError(`${what} takes Futures`);
      if (f.client !== this) throw new TypeError(`${what}: future ${f.key} belongs to another client`);
    }
    return list;
  }

  /** @internal the values of futures, in order (waits; the first error rejects) */
  async _results(futures, { raw = false, exactFloats = false } = {}) {
    for (const f of futures) {
      const info = await this._waitKey(f.key);
      const error = errorOfState(f.key, info);
      if (error) throw error;
    }
    const keys = [...new Set(futures.map((f) => f.key))];
    const data = {};
    // dask/1.1 inline results: a small result came with key-finished.
    for (const key of keys) {
      const value = this.#keys.get(key)?.info.value;
      if (value !== undefined) data[key] = value;
    }
    let asked = keys.filter((k) => data[k] === undefined);
    for (let round = 0; asked.length > 0; round++) {
      const reply = await this.#gather(asked);
      Object.assign(data, reply.data);
      // dask/1.1: a key lost with its holder and being computed again
      // (its status says so) is wanted again, waited for and asked again.
      const status = reply.status ?? {};
      const again = reply.missing.filter((k) => ON_ITS_WAY.includes(status[k]));
      const gone = reply.missing.find((k) => !again.includes(k));
      if (gone !== undefined || (again.length > 0 && round === GATHER_RECOMPUTED_ROUNDS_MAX)) {
        throw new LostError(gone ?? again[0], 'it is not in memory on any worker');
      }
      if (again.length === 0) break;
      this.#wasm.command({ cmd: 'want_again', keys: again });
      this.#schedule();
      for (const key of again) {
        const error = errorOfState(key, await this._waitKey(key));
        if (error) throw error;
      }
      asked = again;
    }
    const decoded = new Map();
    for (const key of keys) {
      const bytes = data[key];
      decoded.set(key, raw ? bytes : decode(bytes, { exactFloats }));
    }
    return futures.map((f) => decoded.get(f.key));
  }

  /**
   * A gather; one cut by a lost connection is sent again once the session
   * is resumed (its keys checked first: they may have ended lost).
   */
  async #gather(keys) {
    for (let round = 0; ; round++) {
      try {
        return await this.#request({ cmd: 'gather', keys });
      } catch (e) {
        if (!(e instanceof ConnectionError) || round === GATHER_RESUMED_ROUNDS_MAX) throw e;
        await this.#resumed();
        if (this.#closedReason !== null || !this.#wasm) throw e;
        for (const key of keys) {
          const error = errorOfState(key, await this._waitKey(key));
          if (error) throw error;
        }
      }
    }
  }

  // ---- the API ----------------------------------------------------------------

  /**
   * Runs `fn` (a function name some worker offers) on `args`; a Future of
   * its result. Futures inside args are replaced by their results.
   * @param {string} fn
   * @param {unknown[]} [args]
   * @param {{key?: string, kwargs?: object, priority?: number, retries?: number,
   *          resources?: Record<string, number>, workers?: string[]}} [options]
   * @returns {Future}
   */
  submit(fn, args = [], options = {}) {
    return this.#submit([{ fn, args, options }])[0];
  }

  /**
   * Runs `fn` once per item of `items` (each item is the one argument), in
   * one graph; one Future per item, in order.
   * @returns {Future[]}
   */
  map(fn, items, options = {}) {
    if (options.key !== undefined) throw new TypeError('map: keys are generated (no key option)');
    return this.#submit(Array.from(items, (item) => ({ fn, args: [item], options })));
  }

  #submit(tasks) {
    const specs = tasks.map(({ fn, args, options }) => {
      if (typeof fn !== 'string' || fn.length === 0) throw new TypeError('the function is named by a non-empty string');
      if (!Array.isArray(args)) throw new TypeError('args must be an array');
      for (const name of Object.keys(options)) {
        if (!TASK_OPTIONS.has(name)) throw new TypeError(`unknown task option ${JSON.stringify(name)}`);
      }
      const spec = { function: fn, args };
      for (const name of TASK_OPTIONS) {
        if (options[name] !== undefined) spec[name] = options[name];
      }
      return spec;
    });
    const reply = this.#command({ cmd: 'submit', tasks: specs });
    this.#schedule();
    return this.#adopt(reply.keys, reply.states);
  }

  /**
   * The results of futures: an array for an array, one value for a Future.
   * @param {Future | Future[]} futures
   * @param {{timeout?: number, raw?: boolean, exactFloats?: boolean}} [options]
   */
  async gather(futures, options = {}) {
    const list = this.#futuresOf(futures, 'gather');
    const values = await withTimeout(this._results(list, options), options.timeout, 'gather');
    return Array.isArray(futures) ? values : values[0];
  }

  /**
   * Futures as they complete, as an async iterator.
   * @param {Iterable<Future>} futures
   * @param {{withResults?: boolean, raw?: boolean, exactFloats?: boolean}} [options]
   */
  asCompleted(futures = [], options = {}) {
    return new AsCompleted(this, this.#futuresOf([...futures], 'asCompleted'), options);
  }

  /** Cancels futures' keys (for every client with force); they end cancelled. */
  cancel(futures, { force = false } = {}) {
    const keys = this.#futuresOf(futures, 'cancel').map((f) => f.key);
    this.#command({ cmd: 'cancel', keys, force });
    this.#schedule();
  }

  /** Releases futures (same as calling release() on each). */
  release(futures) {
    for (const f of this.#futuresOf(futures, 'release')) f.release();
  }

  /**
   * Stores values on workers; one Future per value (resolves once stored).
   * @param {unknown[]} values
   * @param {{workers?: string[], broadcast?: boolean}} [options]
   * @returns {Promise<Future[]>}
   */
  async scatter(values, { workers, broadcast = false } = {}) {
    if (!Array.isArray(values)) throw new TypeError('scatter takes an array of values');
    const reply = this.#command({ cmd: 'scatter', values, workers, broadcast });
    this.#schedule();
    const futures = this.#adopt(reply.keys, reply.states);
    for (const f of futures) {
      const error = errorOfState(f.key, await this._waitKey(f.key));
      if (error) {
        for (const g of futures) g.release();
        throw error;
      }
    }
    return futures;
  }

  /** Publishes futures under `name`; the dataset keeps them alive until unpublished. */
  async publishDataset(name, futures, { overwrite = false } = {}) {
    const keys = this.#futuresOf(futures, 'publishDataset').map((f) => f.key);
    await this.#request({ cmd: 'publish_dataset', name, keys, overwrite });
  }

  /** Futures for the keys of a published dataset. @returns {Promise<Future[]>} */
  async getDataset(name) {
    return this.#request({ cmd: 'get_dataset', name });
  }

  /** Removes a dataset. */
  async unpublishDataset(name) {
    await this.#request({ cmd: 'unpublish_dataset', name });
  }

  /** Names of the published datasets, sorted. @returns {Promise<string[]>} */
  async listDatasets() {
    return (await this.#request({ cmd: 'list_datasets' })).names;
  }

  /** Data addresses of the workers holding each future's key. */
  async whoHas(futures) {
    const keys = this.#futuresOf(futures, 'whoHas').map((f) => f.key);
    return (await this.#request({ cmd: 'who_has', keys })).who_has;
  }

  /** The scheduler's description of the cluster: {workers, tasks, clients}. */
  async clusterInfo() {
    const { info } = await this.#request({ cmd: 'cluster_info' });
    delete info.request;
    return info;
  }

  /**
   * Calls `listener(key, {reason, message, task})` when a held key cannot
   * progress because a task it needs cannot run on any connected worker
   * (once per key and submit; dask/1.1 `key-waiting`). Returns a function
   * that removes it.
   */
  onWaiting(listener) {
    this.#waitingListeners.add(listener);
    return () => this.#waitingListeners.delete(listener);
  }

  /**
   * Counts of `futures` by state, as this client knows them now:
   * `{total, finished, erred, failed, pending, waiting}` (`waiting`: pending
   * keys the scheduler said cannot run now). What a progress bar draws.
   */
  progress(futures) {
    const p = { total: 0, finished: 0, erred: 0, failed: 0, pending: 0, waiting: 0 };
    for (const f of this.#futuresOf(futures, 'progress')) {
      p.total += 1;
      const state = f.status;
      if (state === 'pending') {
        p.pending += 1;
        if (f.waiting) p.waiting += 1;
      } else if (state === 'finished') p.finished += 1;
      else if (state === 'erred') p.erred += 1;
      else p.failed += 1;
    }
    return p;
  }

  /**
   * One page of the tasks that wait on the scheduler, with why each waits:
   * `{tasks: [{key, state, reason, message}], next}` (`next`: the cursor of
   * the following page, null at the end). Needs a dask/1.1 scheduler.
   * @param {{state?: 'waiting'|'no-worker'|'queued', cursor?: number, limit?: number}} [options]
   */
  async waitingKeys({ state, cursor, limit } = {}) {
    const reply = await this.#request({ cmd: 'waiting_keys', state, cursor, limit });
    return { tasks: reply.tasks, next: reply.next ?? null };
  }

  /** Closes the connection (`close` to the scheduler, which releases this client's keys). */
  async close() {
    if (!this.#wasm) return;
    if (this.#closedReason === null) {
      this.#wasm.command({ cmd: 'close' });
      this.#flush();
    }
    if (this.#socket && !this.#socket.destroyed) {
      this.#socket.end();
      let timer;
      await Promise.race([
        this.#socketClosed,
        new Promise((resolve) => {
          timer = setTimeout(resolve, CLOSE_TIMEOUT_MS);
        }),
      ]);
      clearTimeout(timer);
    }
    this.#destroy();
  }

  #destroy() {
    this.#socket?.destroy();
    this.#wasm?.free();
    this.#wasm = null;
    this.#closedReason ??= 'closed';
    for (const [, rec] of this.#keys) {
      const waiters = rec.waiters;
      rec.waiters = [];
      if (!TERMINAL.has(rec.info.state)) rec.info = { state: 'failed', message: 'the client is closed' };
      for (const w of waiters) w(rec.info);
    }
    for (const [, req] of this.#requests) req.reject(new ConnectionError('the client is closed'));
    this.#requests.clear();
    this.#wakeResumeWaiters();
  }
}
