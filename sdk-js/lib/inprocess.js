// A graph computed in this process with JS functions: no scheduler, no
// worker, no socket. The in-process scheduler's plan and state machine run
// in wasm (sdk-js/src/inprocess.rs): they choose the order (few results
// held at once), keep the results as msgpack and splice them into the
// arguments of the tasks that need them; this file calls the functions,
// one at a time, on the calling thread.

import { call, entry, taskError } from './call.js';
import { conformanceFunctions } from './conformance.js';
import { RemoteError, RequestError } from './errors.js';
import { decode, encode } from './msgpack.js';
import { WasmInProcess } from './wasm.js';

/** The registry from the `functions` option. */
function registry(functions, conformance) {
  const out = new Map();
  if (conformance) {
    for (const [name, { fn, ...opts }] of Object.entries(conformanceFunctions)) out.set(name, entry(name, fn, opts));
  }
  const pairs = functions instanceof Map ? functions.entries() : Object.entries(functions);
  for (const [name, given] of pairs) {
    const { fn, ...opts } = typeof given === 'function' ? { fn: given } : given;
    out.set(name, entry(name, fn, opts));
  }
  return out;
}

/**
 * Computes `graph` in this process, each task on the calling thread in
 * turn (synchronously: a function returning a Promise fails its task), and
 * returns the results of the wanted keys in order.
 *
 * ```js
 * const [b] = computeInProcess(
 *   { tasks: [{ key: 'a', function: 'inc', args: [1] },
 *             { key: 'b', function: 'add', args: [new TaskRef('a'), 10] }],
 *     wanted: ['b'] },
 *   { functions: { inc: (x) => x + 1, add: (a, b) => a + b } },
 * ); // 12
 * ```
 *
 * @param {{tasks: Array<{key: string, function: string, args?: unknown[],
 *          kwargs?: object, priority?: number, retries?: number}>,
 *          wanted?: string[]}} graph  as a graph file (`wanted` absent:
 *   every key no task depends on); a TaskRef(key) in the arguments stands
 *   for that task's result.
 * @param {{functions?: Record<string, Function | {fn: Function, params?: string[], exactFloats?: boolean}>
 *          | Map<string, Function | object>, conformance?: boolean, exactFloats?: boolean}} [options]
 *   functions: by name, plain or with the Worker.register options;
 *   conformance: also the conformance.* functions; exactFloats: results
 *   with floats as Float.
 * @returns {unknown[]}
 * @throws {RemoteError} the first task that failed (its key, or the key
 *   it stopped, with causeKey); nothing starts after it.
 * @throws {RequestError} the graph is refused (unknown key, cycle...).
 */
export function computeInProcess(graph, { functions = {}, conformance = false, exactFloats = false } = {}) {
  const registered = registry(functions, conformance);
  let run;
  try {
    run = new WasmInProcess(encode({ tasks: graph.tasks ?? [], ...(graph.wanted ? { wanted: graph.wanted } : {}) }), true);
  } catch (refusal) {
    if (refusal instanceof Error) throw refusal;
    throw new RequestError(refusal);
  }
  try {
    for (;;) {
      const next = run.next();
      if (next.done) break;
      runTask(run, next, registered.get(next.function));
    }
    return run.results().map((r) => {
      if (r.value !== undefined && r.value !== null) return decode(r.value, { exactFloats });
      if (r.error) {
        throw new RemoteError({
          key: r.key,
          errorType: r.error.error_type,
          message: r.error.message,
          traceback: r.error.traceback,
          cause: r.cause ?? null,
        });
      }
      return null;
    });
  } finally {
    run.free();
  }
}

/** Runs one task (again after an error, as often as its retries say) and reports it. */
function runTask(run, next, registered) {
  let error;
  for (let attempt = 0; attempt <= next.retries; attempt++) {
    try {
      const value = call(next.function, registered, next.args, next.kwargs);
      if (value !== null && typeof value === 'object' && typeof value.then === 'function') {
        throw new TypeError(`${next.function}() returned a Promise: computeInProcess calls functions synchronously`);
      }
      run.finished(next.task, encode(value));
      return;
    } catch (e) {
      error = e;
    }
  }
  run.failed(next.task, taskError(error ?? new Error('thrown without a reason')));
}
