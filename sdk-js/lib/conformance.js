// The conformance functions every dask/1 worker offers
// (spec/PROTOCOL.md#conformance-functions), as JS. They take their
// arguments with exactFloats, so an integer and an integral float stay
// apart, as the spec's results require.

import { setTimeout as sleep } from 'node:timers/promises';

import { Float } from './msgpack.js';

/** Largest binary conformance.bytes makes: one frame (256 MiB). */
const FRAME_BYTES_MAX = 256 * 1024 * 1024;
const I64_MIN = -(1n << 63n);
const I64_MAX = (1n << 63n) - 1n;

function named(name, message) {
  const e = new Error(message);
  e.name = name;
  return e;
}

function kind(v) {
  if (v === null || v === undefined) return 'nil';
  if (v instanceof Float) return 'float';
  if (typeof v === 'number' || typeof v === 'bigint') return 'integer';
  if (typeof v === 'string') return 'string';
  if (typeof v === 'boolean') return 'boolean';
  if (v instanceof Uint8Array) return 'binary';
  if (Array.isArray(v)) return 'array';
  return 'map';
}

/** An integer argument (numbers decoded from msgpack integers, or BigInt). */
function isInt(v) {
  return typeof v === 'bigint' || (typeof v === 'number' && Number.isInteger(v));
}

function number(fn, v) {
  if (isInt(v) || v instanceof Float) return v;
  throw new TypeError(`${fn}() needs numbers, got ${kind(v)}`);
}

function required(fn, name, v) {
  if (v === undefined) throw new TypeError(`${fn}() missing required argument ${JSON.stringify(name)}`);
  return v;
}

function echo(x) {
  return required('conformance.echo', 'x', x);
}

function add(a, b) {
  const fn = 'conformance.add';
  const x = number(fn, required(fn, 'a', a));
  const y = number(fn, required(fn, 'b', b));
  if (isInt(x) && isInt(y)) {
    const sum = BigInt(x) + BigInt(y);
    if (sum < I64_MIN || sum > I64_MAX) {
      throw named('OverflowError', `${fn}(): integer result is outside the 64-bit range`);
    }
    return sum >= BigInt(Number.MIN_SAFE_INTEGER) && sum <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(sum) : sum;
  }
  return new Float(Number(x) + Number(y));
}

function fail(message) {
  required('conformance.fail', 'message', message);
  throw named('ConformanceError', typeof message === 'string' ? message : String(message));
}

async function sleepFn(ms, value = null) {
  const fn = 'conformance.sleep';
  const n = Number(number(fn, required(fn, 'ms', ms)));
  if (!Number.isFinite(n) || n < 0) throw named('ValueError', `${fn}() needs a finite, non-negative duration, got ${n}`);
  // setTimeout fires at once past 2^31 - 1 ms: refuse rather than not sleep.
  if (n > 2147483647) throw named('ValueError', `${fn}() sleeps at most 2147483647 ms, got ${n}`);
  await sleep(n);
  return value;
}

function bytes(n) {
  const fn = 'conformance.bytes';
  required(fn, 'n', n);
  if (!isInt(n)) throw new TypeError(`${fn}() needs an integer, got ${kind(n)}`);
  if (n < 0) throw named('ValueError', `${fn}() needs a non-negative count, got ${n}`);
  if (n > FRAME_BYTES_MAX) {
    throw named('ValueTooLarge', `${fn}() of ${n} elements would not fit in one frame (limit ${FRAME_BYTES_MAX})`);
  }
  const out = new Uint8Array(Number(n));
  for (let i = 0; i < out.length; i++) out[i] = i % 251;
  return out;
}

/** name -> {fn, params, exactFloats}, as Worker.register takes them. */
export const conformanceFunctions = {
  'conformance.echo': { fn: echo, params: ['x'], exactFloats: true },
  'conformance.add': { fn: add, params: ['a', 'b'], exactFloats: true },
  'conformance.fail': { fn: fail, params: ['message'], exactFloats: true },
  'conformance.sleep': { fn: sleepFn, params: ['ms', 'value'], exactFloats: true },
  'conformance.bytes': { fn: bytes, params: ['n'], exactFloats: true },
};
