// Calling a registered JS function for a task, as the Worker and the
// in-process run both do: arguments decoded from msgpack (with the
// function's options), keyword arguments bound by name or passed as one
// trailing object, a thrown value reported by its type and message.

import { decode } from './msgpack.js';

/** The error type reported for a thrown value: its name, or its class's. */
export function errorType(err) {
  if (!(err instanceof Error)) return 'Error';
  if (err.name && err.name !== 'Error') return err.name;
  return err.constructor?.name || 'Error';
}

/** `{error_type, message, traceback}` of a thrown value. */
export function taskError(err) {
  return {
    error_type: errorType(err),
    message: err instanceof Error ? err.message : String(err),
    traceback: err instanceof Error ? (err.stack ?? '') : '',
  };
}

/**
 * Binds positional and keyword arguments to `params`, as Python does.
 * @returns {unknown[]}
 */
function bind(name, params, args, kwargs) {
  if (args.length > params.length) {
    throw new TypeError(`${name}() takes at most ${params.length} arguments (${args.length} given)`);
  }
  const bound = [...args];
  for (const [k, v] of Object.entries(kwargs)) {
    const at = params.indexOf(k);
    if (at < 0) throw new TypeError(`${name}() got an unexpected keyword argument ${JSON.stringify(k)}`);
    if (at < bound.length && bound[at] !== undefined) {
      throw new TypeError(`${name}() got multiple values for argument ${JSON.stringify(k)}`);
    }
    while (bound.length < at) bound.push(undefined);
    bound[at] = v;
  }
  return bound;
}

/**
 * A registry entry for `fn`.
 * @param {string} name
 * @param {(...args: any[]) => unknown} fn
 * @param {{params?: string[], exactFloats?: boolean}} [options]
 */
export function entry(name, fn, options = {}) {
  if (typeof name !== 'string' || name.length === 0) throw new TypeError('a function name is a non-empty string');
  if (typeof fn !== 'function') throw new TypeError(`${name}: not a function`);
  return { fn, params: options.params ?? null, exactFloats: options.exactFloats === true };
}

/**
 * Calls `name`'s entry (undefined: an UnknownFunction error) with the
 * task's msgpack args and kwargs (null: none); what the function returns
 * (a value or a Promise), or a throw.
 */
export function call(name, registered, argsBytes, kwargsBytes) {
  if (!registered) {
    throw Object.assign(new Error(`this worker has no function named ${JSON.stringify(name)}`), { name: 'UnknownFunction' });
  }
  const options = { exactFloats: registered.exactFloats };
  const args = decode(argsBytes, options);
  const kwargs = kwargsBytes === null || kwargsBytes === undefined ? {} : decode(kwargsBytes, options);
  if (kwargs instanceof Map) throw new TypeError('kwargs keys must be strings');
  if (registered.params) return registered.fn(...bind(name, registered.params, args, kwargs));
  return Object.keys(kwargs).length > 0 ? registered.fn(...args, kwargs) : registered.fn(...args);
}

