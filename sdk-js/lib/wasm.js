// The raw wasm layer: loads dask_sdk_js.wasm (the Rust core compiled to
// wasm32-unknown-unknown, see HACKING.md) and wraps its exports (the ABI
// documented in sdk-js/src/lib.rs) in small classes that take and return
// JS values. No protocol logic lives here: commands go in, bytes and
// events come out.

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { decode, encode } from './msgpack.js';

/** The ABI version this JS expects (sdk-js/src/lib.rs ABI_VERSION). */
export const ABI_VERSION = 2;

const STATUS_OK = 0;
const STATUS_ERROR = 1;
const STATUS_REFUSED = 2;

const wasmUrl = new URL('../dask_sdk_js.wasm', import.meta.url);

function load() {
  let bytes;
  try {
    bytes = readFileSync(wasmUrl);
  } catch (e) {
    throw new Error(
      `dask-rs: cannot read ${fileURLToPath(wasmUrl)} (${e.code ?? e.message}); ` +
        'build it with `npm run build` in sdk-js (see HACKING.md)',
    );
  }
  // Synchronous compile and instantiate: Node allows it for any size, and
  // the module is then ready when this file is imported.
  const instance = new WebAssembly.Instance(new WebAssembly.Module(bytes), {});
  const version = instance.exports.dask_abi_version();
  if (version !== ABI_VERSION) {
    throw new Error(`dask-rs: ${fileURLToPath(wasmUrl)} has ABI version ${version}, this package expects ${ABI_VERSION}; rebuild it`);
  }
  return instance.exports;
}

const x = load();
const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder();

/** The output of the last call, copied out of wasm memory. */
function result() {
  const ptr = x.dask_result_ptr() >>> 0;
  const len = x.dask_result_len() >>> 0;
  return new Uint8Array(x.memory.buffer, ptr, len).slice();
}

/** Copies `bytes` into wasm memory for the duration of `f(ptr, len)`. */
function withBytes(bytes, f) {
  const len = bytes.length;
  const ptr = x.dask_alloc(len) >>> 0;
  if (ptr === 0) throw new RangeError(`dask-rs: wasm memory exhausted (asked for ${len} bytes)`);
  try {
    // A view made now: memory may have grown (and its buffer changed) since.
    new Uint8Array(x.memory.buffer, ptr, len).set(bytes);
    return f(ptr, len);
  } finally {
    x.dask_dealloc(ptr, len);
  }
}

/** An error raised by the wasm side (a bad command, a stale handle). */
export class WasmCallError extends Error {
  constructor(message) {
    super(message);
    this.name = 'WasmCallError';
  }
}

function check(status) {
  if (status === STATUS_OK) return result();
  throw new WasmCallError(fromUtf8.decode(result()));
}

/** A client session (sdk-js/src/client.rs). */
export class WasmClient {
  /** @param {{name?: string, seed: bigint}} config */
  constructor(config) {
    const handle = withBytes(encode(config), (p, n) => x.dask_client_new(p, n)) >>> 0;
    if (handle === 0) throw new WasmCallError(fromUtf8.decode(result()));
    this.handle = handle;
  }

  /** Runs a command map; its reply map. */
  command(cmd) {
    return decode(withBytes(encode(cmd), (p, n) => check(x.dask_client_command(this.handle, p, n))));
  }

  receive(bytes) {
    withBytes(bytes, (p, n) => check(x.dask_client_receive(this.handle, p, n)));
  }

  /** The TLS socket's channel binding (32 bytes), before any bytes are received. */
  channelBinding(binding) {
    withBytes(binding, (p, n) => check(x.dask_client_channel_binding(this.handle, p, n)));
  }

  transportClosed(reason) {
    withBytes(utf8.encode(reason), (p, n) => check(x.dask_client_transport_closed(this.handle, p, n)));
  }

  /** @returns {{transmit: Uint8Array, events: object[], close: boolean}} */
  drain() {
    return decode(check(x.dask_client_drain(this.handle)));
  }

  free() {
    if (this.handle !== 0) x.dask_client_free(this.handle);
    this.handle = 0;
  }
}

/** A worker's protocol side (sdk-js/src/worker/). */
export class WasmWorker {
  constructor(config) {
    const handle = withBytes(encode(config), (p, n) => x.dask_worker_new(p, n)) >>> 0;
    if (handle === 0) throw new WasmCallError(fromUtf8.decode(result()));
    this.handle = handle;
  }

  accept(nowMs) {
    return x.dask_worker_accept(this.handle, nowMs) >>> 0;
  }

  receive(conn, nowMs, bytes) {
    withBytes(bytes, (p, n) => check(x.dask_worker_receive(this.handle, conn, nowMs, p, n)));
  }

  /** A TLS connection's channel binding (32 bytes), before any bytes of it are received. */
  channelBinding(conn, binding) {
    withBytes(binding, (p, n) => check(x.dask_worker_channel_binding(this.handle, conn, p, n)));
  }

  connClosed(conn, nowMs, reason) {
    withBytes(utf8.encode(reason), (p, n) => check(x.dask_worker_conn_closed(this.handle, conn, nowMs, p, n)));
  }

  connDrained(conn) {
    check(x.dask_worker_conn_drained(this.handle, conn));
  }

  /** @param {object} cmd {run_id, now_ms, duration_us, error?}  @param {Uint8Array} value */
  taskDone(cmd, value) {
    withBytes(encode(cmd), (cp, cn) =>
      withBytes(value, (vp, vn) => check(x.dask_worker_task_done(this.handle, cp, cn, vp, vn))),
    );
  }

  tick(nowMs) {
    check(x.dask_worker_tick(this.handle, nowMs));
  }

  stop(nowMs) {
    check(x.dask_worker_stop(this.handle, nowMs));
  }

  /** The new data listener (asked for by a drain's `listen`) is at `address`. */
  listening(nowMs, address) {
    withBytes(utf8.encode(address), (p, n) => check(x.dask_worker_listening(this.handle, nowMs, p, n)));
  }

  /** The new data listener could not be opened. */
  listenFailed(nowMs, error) {
    withBytes(utf8.encode(error), (p, n) => check(x.dask_worker_listen_failed(this.handle, nowMs, p, n)));
  }

  drain(nowMs) {
    return decode(check(x.dask_worker_drain(this.handle, nowMs)));
  }

  free() {
    if (this.handle !== 0) x.dask_worker_free(this.handle);
    this.handle = 0;
  }
}

/** A graph run in this process (sdk-js/src/inprocess.rs). */
export class WasmInProcess {
  /**
   * @param {Uint8Array} graph  msgpack {tasks, wanted}
   * @param {boolean} stopOnError
   * Throws the refusal {code, code_name, message} as a plain object.
   */
  constructor(graph, stopOnError) {
    const handle = withBytes(graph, (p, n) => x.dask_inprocess_new(p, n, stopOnError ? 1 : 0)) >>> 0;
    if (handle === 0) throw decode(result());
    this.handle = handle;
  }

  /** @returns {{done: true} | {task: number, function: string, args: Uint8Array, kwargs: Uint8Array | null, retries: number}} */
  next() {
    return decode(check(x.dask_inprocess_next(this.handle)));
  }

  finished(task, value) {
    withBytes(value, (p, n) => check(x.dask_inprocess_finished(this.handle, task, p, n)));
  }

  /** @param {{error_type: string, message: string, traceback: string}} error */
  failed(task, error) {
    withBytes(encode({ error }), (p, n) => check(x.dask_inprocess_failed(this.handle, task, p, n)));
  }

  /** @returns {Array<{key: string, value?: Uint8Array, error?: object, cause?: string | null, cancelled?: true}>} */
  results() {
    return decode(check(x.dask_inprocess_results(this.handle)));
  }

  free() {
    if (this.handle !== 0) x.dask_inprocess_free(this.handle);
    this.handle = 0;
  }
}

/** A codec refusal: the dask/1 error code and name a receiver would send. */
export class CodecError extends Error {
  constructor({ code, error, message }) {
    super(`${error} (${code}): ${message}`);
    this.name = 'CodecError';
    this.code = code;
    this.codeName = error;
  }
}

/**
 * Runs one of core's codec operations (sdk-js/src/codec.rs): `input` and
 * the output are bytes (msgpack) or JSON text as the operation says.
 * @param {string} op
 * @param {Uint8Array | string} input
 * @returns {Uint8Array}
 */
export function codec(op, input) {
  const bytes = typeof input === 'string' ? utf8.encode(input) : input;
  return withBytes(utf8.encode(op), (op_p, op_n) =>
    withBytes(bytes, (p, n) => {
      const status = x.dask_codec(op_p, op_n, p, n);
      const out = result();
      if (status === STATUS_OK) return out;
      if (status === STATUS_REFUSED) throw new CodecError(JSON.parse(fromUtf8.decode(out)));
      throw new WasmCallError(fromUtf8.decode(out));
    }),
  );
}

/** The module's exports, for tests of the ABI itself. */
export const exports = x;
