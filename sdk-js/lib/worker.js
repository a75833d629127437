// The Worker: serves JS functions to a dask/1 cluster. core's worker
// state machine and this worker's protocol side run in wasm
// (sdk-js/src/worker/); this file owns the sockets, the timer and the
// user's functions, and does what each drain of the wasm side says.

import { randomBytes } from 'node:crypto';
import net from 'node:net';
import os from 'node:os';
import { performance } from 'node:perf_hooks';

import { formatAddress, parseAddress } from './address.js';
import { secretFor } from './credentials.js';
import { channelBinding, connectTls, createTlsServer, explainTlsError, isTlsAddress, tlsSettings } from './tls.js';
import { conformanceFunctions } from './conformance.js';
import { ConnectionError, DaskError } from './errors.js';
import { call, entry, taskError } from './call.js';
import { encode } from './msgpack.js';
import { WasmWorker } from './wasm.js';

let workerCount = 0;

/** How long a worker registers again after losing its scheduler (ms), as dask-worker. */
const DEFAULT_RECONNECT_TIMEOUT_MS = 60_000;

function defaultName() {
  workerCount += 1;
  return `js-worker-${os.hostname()}-${process.pid}-${workerCount}`;
}

/**
 * A worker that runs registered JS functions (sync or async) for a
 * scheduler. It offers the conformance functions too (`conformance.*`).
 *
 * ```js
 * const worker = new Worker({ nthreads: 4 });
 * worker.register('myapp.inc', (x) => x + 1); // not a standard-library name (PROTOCOL.md)
 * await worker.start('tcp://127.0.0.1:8796');
 * ```
 */
export class Worker {
  #functions = new Map();
  #options;
  #wasm = null;
  #server = null;
  #sockets = new Map();
  #timer = null;
  #flushScheduled = false;
  #registered = null;
  #finished;
  #resolveFinished;
  #outcome = null;
  #tls = null;
  #reconnectTimeout;

  /**
   * @param {{name?: string, nthreads?: number, host?: string,
   *          resources?: Record<string, number>, memoryLimit?: number,
   *          conformance?: boolean, credentials?: string | false,
   *          tls?: {caFile?: string, certFile?: string, keyFile?: string},
   *          reconnectTimeout?: number}} [options]
   *   nthreads: runs at once (default 1; async functions overlap, sync
   *   ones run one after another on the event loop); host: where the data
   *   port listens (default 127.0.0.1); conformance: offer the
   *   conformance.* functions (default true); credentials: the cluster's
   *   credentials file (false: none), else found as every dask-rs program
   *   finds it: the worker proves the worker secret to the scheduler and
   *   its peers, and serves its data port only to workers that prove it;
   *   tls: Dask's files: with certFile (and its key) the data port is
   *   tls:// (requiring peers' certificates when caFile is given); caFile
   *   lets it connect to a tls:// scheduler and TLS peers;
   *   reconnectTimeout: after losing its scheduler (a crash, a restart,
   *   a network cut) the worker registers again as a new worker of the
   *   same name, listening anew, every second for this many ms (default
   *   60000, as dask-worker; 0: it ends with the connection), keeping the
   *   results it holds (a scheduler restarted on its journal adopts them).
   */
  constructor(options = {}) {
    this.#options = options;
    const reconnect = options.reconnectTimeout ?? DEFAULT_RECONNECT_TIMEOUT_MS;
    if (!Number.isFinite(reconnect) || reconnect < 0) {
      throw new TypeError('reconnectTimeout must be a number of milliseconds, 0 or more');
    }
    this.#reconnectTimeout = Math.round(reconnect);
    /** The name registered with the scheduler. */
    this.name = options.name ?? defaultName();
    /** The data address peers fetch results from (once started). */
    this.address = null;
    /** The scheduler's id for this worker (once registered). */
    this.id = null;
    if (options.conformance !== false) {
      for (const [name, { fn, ...opts }] of Object.entries(conformanceFunctions)) this.register(name, fn, opts);
    }
    this.#finished = new Promise((resolve) => {
      this.#resolveFinished = resolve;
    });
  }

  /**
   * Creates a worker, registers `functions` ({name: fn}) and starts it.
   * @returns {Promise<Worker>}
   */
  static async start(scheduler, { functions = {}, ...options } = {}) {
    const worker = new Worker(options);
    for (const [name, fn] of Object.entries(functions)) worker.register(name, fn);
    return worker.start(scheduler);
  }

  /**
   * Offers `fn` under `name`. It is called with the task's positional
   * arguments (dependencies' results in place of their Futures) and may
   * return a value or a Promise; a throw or rejection is reported as the
   * task's error (type: the error's name).
   * @param {string} name
   * @param {(...args: any[]) => unknown} fn
   * @param {{params?: string[], exactFloats?: boolean}} [options]
   *   params: parameter names, so keyword arguments bind by name (else
   *   they come as one trailing object); exactFloats: floats arrive as
   *   Float (tell 2.0 from 2).
   * @returns {this}
   */
  register(name, fn, options = {}) {
    const registered = entry(name, fn, options);
    if (this.#wasm) throw new DaskError('register functions before start()');
    this.#functions.set(name, registered);
    return this;
  }

  /** Names of the functions offered, sorted. */
  get functions() {
    return [...this.#functions.keys()].sort();
  }

  /**
   * Listens for peers, connects to the scheduler and registers; resolves
   * once the scheduler accepted the worker.
   * @param {string} scheduler `tcp://HOST:PORT`
   * @returns {Promise<this>}
   */
  async start(scheduler) {
    if (this.#wasm) throw new DaskError('this worker was started already');
    const target = parseAddress(scheduler);
    const nthreads = this.#options.nthreads ?? 1;
    if (!Number.isInteger(nthreads) || nthreads < 1) throw new TypeError('nthreads must be a positive integer');
    this.#tls = tlsSettings(this.#options.tls);
    if (target.tls && !this.#tls?.ca) {
      throw new DaskError(`${scheduler} is a TLS address: give the cluster's CA file (the tls option's caFile)`);
    }
    this.address = await this.#listen();
    const secret = secretFor('worker', this.#options.credentials);
    this.#wasm = new WasmWorker({
      scheduler,
      name: this.name,
      address: this.address,
      nthreads,
      functions: this.functions,
      resources: this.#options.resources,
      memory_limit: this.#options.memoryLimit,
      pid: process.pid,
      worker_secret: secret ?? undefined,
      nonce_seed: secret ? randomBytes(32) : undefined,
      now_ms: performance.now(),
      reconnect_timeout_ms: this.#reconnectTimeout,
    });
    const registered = new Promise((resolve, reject) => {
      this.#registered = { resolve, reject };
    });
    this.#flush();
    await registered;
    return this;
  }

  /**
   * Resolves when the worker has stopped: closed by the scheduler or by
   * stop() (resolves), or its scheduler connection lost or broken and not
   * made again within reconnectTimeout (rejects with ConnectionError).
   */
  async join() {
    const error = await this.#finished;
    if (error) throw new ConnectionError(error);
  }

  /** Leaves the cluster (`close` to the scheduler) and closes every connection. */
  async stop() {
    if (!this.#wasm || this.#outcome !== null) return;
    this.#wasm.stop(performance.now());
    this.#flush();
    await this.#finished;
  }

  // ---- I/O -------------------------------------------------------------------

  /** Listens for peers on a new port; its data address. */
  async #listen() {
    const host = this.#options.host ?? '127.0.0.1';
    const listensTls = Boolean(this.#tls?.cert);
    const server = listensTls
      ? createTlsServer(this.#tls, (socket) => this.#accept(socket, true))
      : net.createServer((socket) => this.#accept(socket, false));
    this.#server = server;
    await new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    return formatAddress(host, server.address().port, listensTls ? 'tls' : 'tcp');
  }

  /**
   * The worker lost its scheduler and registers again as a new worker: a
   * new data port, so no peer's stale record points at it.
   */
  #listenAgain() {
    this.#server?.close();
    this.#listen().then(
      (address) => {
        if (!this.#wasm) return;
        this.address = address;
        this.#wasm.listening(performance.now(), address);
        this.#flush();
      },
      (e) => {
        if (!this.#wasm) return;
        this.#wasm.listenFailed(performance.now(), e.message);
        this.#flush();
      },
    );
  }

  #schedule() {
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    queueMicrotask(() => this.#flush());
  }

  #accept(socket, tls) {
    if (!this.#wasm || this.#outcome !== null) {
      socket.destroy();
      return;
    }
    const conn = this.#wasm.accept(performance.now());
    if (conn === 0) {
      socket.destroy();
      return;
    }
    // A TLS socket comes after its handshake: its binding goes in first.
    if (tls) this.#wasm.channelBinding(conn, channelBinding(socket));
    this.#wire(conn, socket, tls);
  }

  #connect(conn, address) {
    let target;
    try {
      target = parseAddress(address);
    } catch (e) {
      this.#wasm.connClosed(conn, performance.now(), e.message);
      this.#schedule();
      return;
    }
    const tls = isTlsAddress(address);
    let socket;
    try {
      socket = tls ? connectTls(this.#tls, target) : net.connect(target);
    } catch (e) {
      this.#wasm.connClosed(conn, performance.now(), e.message);
      this.#schedule();
      return;
    }
    if (tls) {
      // Before any bytes arrive: the proofs on it cover the binding.
      socket.once('secureConnect', () => this.#wasm?.channelBinding(conn, channelBinding(socket)));
    }
    this.#wire(conn, socket, tls);
  }

  #wire(conn, socket, tls) {
    socket.setNoDelay(true);
    this.#sockets.set(conn, socket);
    let failure = null;
    socket.on('data', (chunk) => {
      if (!this.#wasm) return;
      this.#wasm.receive(conn, performance.now(), chunk);
      this.#schedule();
    });
    socket.on('error', (e) => {
      failure = tls ? new Error(explainTlsError(e)) : e;
    });
    socket.on('close', () => {
      this.#sockets.delete(conn);
      if (!this.#wasm) return;
      this.#wasm.connClosed(conn, performance.now(), failure ? failure.message : 'closed by the other side');
      this.#schedule();
    });
  }

  #flush() {
    this.#flushScheduled = false;
    if (!this.#wasm) return;
    const now = performance.now();
    const out = this.#wasm.drain(now);
    for (const [conn, address] of out.connects) this.#connect(conn, address);
    for (const [conn, bytes] of out.writes) {
      const socket = this.#sockets.get(conn);
      if (!socket || socket.destroyed) continue;
      socket.write(bytes, () => {
        if (socket.writableLength === 0 && this.#wasm) this.#wasm.connDrained(conn);
      });
    }
    for (const conn of out.closes) this.#sockets.get(conn)?.end();
    for (const [runId, fn, args, kwargs] of out.runs) this.#run(runId, fn, args, kwargs);
    if (out.listen) this.#listenAgain();
    this.#setTimer(out.timeout_ms);
    for (const event of out.events) this.#event(event);
  }

  #setTimer(at) {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    if (at === null || at === undefined) return;
    this.#timer = setTimeout(() => {
      this.#timer = null;
      if (!this.#wasm) return;
      this.#wasm.tick(performance.now());
      this.#flush();
    }, Math.max(0, at - performance.now()));
    this.#timer.unref();
  }

  #event(e) {
    switch (e.type) {
      case 'registered':
        this.id = e.id;
        this.#registered?.resolve();
        this.#registered = null;
        return;
      case 'refused':
        this.#registered?.reject(new ConnectionError(e.message));
        this.#registered = null;
        return;
      case 'finished':
        this.#finish(e.error);
        return;
      case 'log':
        process.emitWarning(`dask-rs worker ${this.name}: ${e.message}`);
        return;
      default:
    }
  }

  #finish(error) {
    if (this.#outcome !== null) return;
    this.#outcome = { error };
    this.#registered?.reject(new ConnectionError(error ?? 'the worker stopped before registering'));
    this.#registered = null;
    this.#server?.close();
    if (this.#timer) clearTimeout(this.#timer);
    // Each socket was ended after what is queued on it; once that is
    // written (or after a grace period) nothing is left open.
    const sockets = [...this.#sockets.values()];
    const flushed = sockets.map(
      (s) => new Promise((resolve) => (s.destroyed || s.writableFinished ? resolve() : s.once('finish', resolve).once('close', resolve))),
    );
    const limit = new Promise((resolve) => setTimeout(resolve, 2000).unref());
    Promise.race([Promise.all(flushed), limit]).then(() => {
      for (const s of sockets) s.destroy();
      this.#wasm?.free();
      this.#wasm = null;
      this.#resolveFinished(error ?? null);
    });
  }

  // ---- running tasks ------------------------------------------------------------

  #run(runId, name, argsBytes, kwargsBytes) {
    const registered = this.#functions.get(name);
    const started = performance.now();
    const finish = (value, error) => {
      if (!this.#wasm) return;
      const duration_us = Math.max(0, Math.round((performance.now() - started) * 1000));
      const cmd = { run_id: runId, now_ms: performance.now(), duration_us };
      let bytes = new Uint8Array(0);
      if (error === undefined) {
        try {
          bytes = encode(value);
        } catch (e) {
          error = e;
        }
      }
      if (error !== undefined) cmd.error = taskError(error);
      this.#wasm.taskDone(cmd, bytes);
      this.#schedule();
    };
    // Called from a microtask: a sync function neither runs inside the
    // drain that started it nor delays the runs started with it.
    Promise.resolve()
      .then(() => call(name, registered, argsBytes, kwargsBytes))
      .then(
        (value) => finish(value, undefined),
        (error) => finish(undefined, error ?? new Error('rejected without a reason')),
      );
  }
}
