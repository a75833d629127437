// The value codec: msgpack <-> JS values, for task arguments and results
// (and the msgpack maps exchanged with the wasm module). It knows values
// only; every dask/1 *message* is encoded and decoded by the Rust core in
// wasm. The mapping is documented in README.md ("Values").

/** The msgpack ext type of a task reference (its payload: the key in UTF-8). */
export const TASK_REF_EXT = 1;

/** Deepest nesting of arrays and maps in one encoded value (dask/1's limit). */
export const VALUE_DEPTH_MAX = 100;

/** Deepest nesting the decoder accepts (task arguments with their
 * dependencies' values spliced in may nest deeper than one value). */
export const DECODE_DEPTH_MAX = 1000;

/**
 * Objects that stand for a task reference implement this symbol as a getter
 * returning the key (a Future does), and are encoded as ext type 1.
 */
export const taskRefKey = Symbol.for('dask.taskRefKey');

/** A msgpack ext value of a type this package gives no meaning to. */
export class Ext {
  /** @param {number} type -128..127  @param {Uint8Array} data */
  constructor(type, data) {
    if (!Number.isInteger(type) || type < -128 || type > 127) {
      throw new RangeError(`ext type must be an integer in -128..127, got ${type}`);
    }
    if (!(data instanceof Uint8Array)) throw new TypeError('ext data must be a Uint8Array');
    this.type = type;
    this.data = data;
  }
}

/** A reference to another task's result, by key (msgpack ext type 1). */
export class TaskRef {
  /** @param {string} key */
  constructor(key) {
    if (typeof key !== 'string' || key.length === 0) throw new TypeError('a task key is a non-empty string');
    this.key = key;
  }

  get [taskRefKey]() {
    return this.key;
  }
}

/**
 * A number that is encoded as a msgpack float even when it is integral
 * (a plain integral number is encoded as an integer). Decoding with
 * `{exactFloats: true}` gives every float as a Float.
 */
export class Float {
  /** @param {number} value */
  constructor(value) {
    this.value = Number(value);
  }

  valueOf() {
    return this.value;
  }

  toString() {
    return String(this.value);
  }

  toJSON() {
    return this.value;
  }
}

const MAX_U64 = (1n << 64n) - 1n;
const MIN_I64 = -(1n << 63n);
const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder('utf-8', { fatal: true });

class Writer {
  constructor(initial = 256) {
    this.buf = new Uint8Array(initial);
    this.view = new DataView(this.buf.buffer);
    this.pos = 0;
  }

  reserve(n) {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }

  u8(b) {
    this.reserve(1);
    this.buf[this.pos++] = b;
  }

  u8u8(a, b) {
    this.reserve(2);
    this.buf[this.pos++] = a;
    this.buf[this.pos++] = b;
  }

  u8u16(a, b) {
    this.reserve(3);
    this.buf[this.pos] = a;
    this.view.setUint16(this.pos + 1, b);
    this.pos += 3;
  }

  u8u32(a, b) {
    this.reserve(5);
    this.buf[this.pos] = a;
    this.view.setUint32(this.pos + 1, b);
    this.pos += 5;
  }

  bytes(b) {
    this.reserve(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }

  result() {
    return this.buf.slice(0, this.pos);
  }
}

function writeUint(w, v) {
  if (v < 0x80) w.u8(v);
  else if (v <= 0xff) w.u8u8(0xcc, v);
  else if (v <= 0xffff) w.u8u16(0xcd, v);
  else if (v <= 0xffffffff) w.u8u32(0xce, v);
  else {
    w.reserve(9);
    w.buf[w.pos] = 0xcf;
    w.view.setBigUint64(w.pos + 1, BigInt(v));
    w.pos += 9;
  }
}

function writeNegative(w, v) {
  if (v >= -32) w.u8(v & 0xff);
  else if (v >= -0x80) w.u8u8(0xd0, v & 0xff);
  else if (v >= -0x8000) {
    w.reserve(3);
    w.buf[w.pos] = 0xd1;
    w.view.setInt16(w.pos + 1, v);
    w.pos += 3;
  } else if (v >= -0x80000000) {
    w.reserve(5);
    w.buf[w.pos] = 0xd2;
    w.view.setInt32(w.pos + 1, v);
    w.pos += 5;
  } else {
    w.reserve(9);
    w.buf[w.pos] = 0xd3;
    w.view.setBigInt64(w.pos + 1, BigInt(v));
    w.pos += 9;
  }
}

function writeBigInt(w, v) {
  if (v > MAX_U64 || v < MIN_I64) {
    throw new RangeError(`integer ${v} is outside msgpack's range (-2^63 .. 2^64-1)`);
  }
  // Smallest form, as for numbers: the value decides, not its JS type.
  if (v >= 0n) {
    if (v <= 0xffffffffn) writeUint(w, Number(v));
    else {
      w.reserve(9);
      w.buf[w.pos] = 0xcf;
      w.view.setBigUint64(w.pos + 1, v);
      w.pos += 9;
    }
  } else if (v >= -0x80000000n) writeNegative(w, Number(v));
  else {
    w.reserve(9);
    w.buf[w.pos] = 0xd3;
    w.view.setBigInt64(w.pos + 1, v);
    w.pos += 9;
  }
}

const CANONICAL_NAN = [0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0];

function writeFloat(w, v) {
  if (Number.isNaN(v)) {
    // One NaN, whatever payload bits it carried (dask/1's canonical form).
    w.bytes(CANONICAL_NAN);
    return;
  }
  w.reserve(9);
  w.buf[w.pos] = 0xcb;
  w.view.setFloat64(w.pos + 1, v);
  w.pos += 9;
}

function writeLength(w, len, fix, fixMax, m8, m16, m32) {
  if (fix !== null && len <= fixMax) w.u8(fix | len);
  else if (m8 !== null && len <= 0xff) w.u8u8(m8, len);
  else if (len <= 0xffff) w.u8u16(m16, len);
  else if (len <= 0xffffffff) w.u8u32(m32, len);
  else throw new RangeError(`length ${len} is over msgpack's 2^32-1`);
}

function writeString(w, s) {
  const bytes = utf8Encoder.encode(s);
  writeLength(w, bytes.length, 0xa0, 31, 0xd9, 0xda, 0xdb);
  w.bytes(bytes);
}

function writeBinary(w, b) {
  writeLength(w, b.length, null, 0, 0xc4, 0xc5, 0xc6);
  w.bytes(b);
}

function writeExt(w, type, data) {
  const len = data.length;
  const fixed = { 1: 0xd4, 2: 0xd5, 4: 0xd6, 8: 0xd7, 16: 0xd8 }[len];
  if (fixed !== undefined) w.u8(fixed);
  else writeLength(w, len, null, 0, 0xc7, 0xc8, 0xc9);
  w.u8(type & 0xff);
  w.bytes(data);
}

function kindOf(v) {
  if (v === null) return 'null';
  if (typeof v !== 'object') return typeof v;
  return v.constructor?.name ?? 'object';
}

function isPlainObject(v) {
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

function writeValue(w, v, depth) {
  switch (typeof v) {
    case 'undefined':
      w.u8(0xc0);
      return;
    case 'boolean':
      w.u8(v ? 0xc3 : 0xc2);
      return;
    case 'number':
      if (Number.isSafeInteger(v) && !Object.is(v, -0)) {
        if (v >= 0) writeUint(w, v);
        else writeNegative(w, v);
      } else writeFloat(w, v);
      return;
    case 'bigint':
      writeBigInt(w, v);
      return;
    case 'string':
      writeString(w, v);
      return;
    case 'object':
      break;
    default:
      throw new TypeError(`cannot encode a ${typeof v} as msgpack`);
  }
  if (v === null) {
    w.u8(0xc0);
    return;
  }
  if (v instanceof Uint8Array) {
    writeBinary(w, v);
    return;
  }
  if (v instanceof ArrayBuffer) {
    writeBinary(w, new Uint8Array(v));
    return;
  }
  if (v instanceof Float) {
    writeFloat(w, v.value);
    return;
  }
  if (v instanceof Ext) {
    writeExt(w, v.type, v.data);
    return;
  }
  const refKey = v[taskRefKey];
  if (typeof refKey === 'string') {
    writeExt(w, TASK_REF_EXT, utf8Encoder.encode(refKey));
    return;
  }
  if (depth >= VALUE_DEPTH_MAX) {
    throw new RangeError(`value nested deeper than ${VALUE_DEPTH_MAX} levels (or cyclic)`);
  }
  if (Array.isArray(v)) {
    writeLength(w, v.length, 0x90, 15, null, 0xdc, 0xdd);
    for (const item of v) writeValue(w, item, depth + 1);
    return;
  }
  if (v instanceof Map) {
    writeLength(w, v.size, 0x80, 15, null, 0xde, 0xdf);
    for (const [key, item] of v) {
      writeValue(w, key, depth + 1);
      writeValue(w, item, depth + 1);
    }
    return;
  }
  if (isPlainObject(v)) {
    const keys = Object.keys(v);
    writeLength(w, keys.length, 0x80, 15, null, 0xde, 0xdf);
    for (const key of keys) {
      writeString(w, key);
      writeValue(w, v[key], depth + 1);
    }
    return;
  }
  throw new TypeError(`cannot encode a ${kindOf(v)} as msgpack (see README "Values")`);
}

/**
 * Encodes a JS value as msgpack (smallest integer and length forms,
 * floats as float 64).
 * @param {unknown} value
 * @returns {Uint8Array}
 */
export function encode(value) {
  const w = new Writer();
  writeValue(w, value, 0);
  return w.result();
}

class Reader {
  constructor(bytes, options) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.pos = 0;
    this.exactFloats = options.exactFloats === true;
    this.mapsAsObjects = options.mapsAsObjects !== false;
  }

  need(n) {
    if (this.pos + n > this.bytes.length) throw new SyntaxError('msgpack: truncated value');
  }

  take(n) {
    this.need(n);
    const out = this.bytes.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  u8() {
    this.need(1);
    return this.bytes[this.pos++];
  }

  u16() {
    this.need(2);
    const v = this.view.getUint16(this.pos);
    this.pos += 2;
    return v;
  }

  u32() {
    this.need(4);
    const v = this.view.getUint32(this.pos);
    this.pos += 4;
    return v;
  }

  int(v) {
    return v >= -BigInt(Number.MAX_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  }

  float(v) {
    return this.exactFloats ? new Float(v) : v;
  }

  str(n) {
    try {
      return utf8Decoder.decode(this.take(n));
    } catch (e) {
      if (e instanceof SyntaxError) throw e;
      throw new SyntaxError('msgpack: string is not valid UTF-8');
    }
  }

  ext(n) {
    this.need(1);
    const type = this.view.getInt8(this.pos);
    this.pos += 1;
    const data = this.take(n);
    if (type === TASK_REF_EXT) {
      let key;
      try {
        key = utf8Decoder.decode(data);
      } catch {
        throw new SyntaxError('msgpack: task reference is not UTF-8');
      }
      if (key.length === 0) throw new SyntaxError('msgpack: task reference with an empty key');
      return new TaskRef(key);
    }
    return new Ext(type, data.slice());
  }

  array(n, depth) {
    const out = new Array(n);
    for (let i = 0; i < n; i++) out[i] = this.value(depth + 1);
    return out;
  }

  map(n, depth) {
    const keys = new Array(n);
    const values = new Array(n);
    let allStrings = true;
    for (let i = 0; i < n; i++) {
      keys[i] = this.value(depth + 1);
      values[i] = this.value(depth + 1);
      if (typeof keys[i] !== 'string') allStrings = false;
    }
    if (!allStrings || !this.mapsAsObjects) {
      const m = new Map();
      for (let i = 0; i < n; i++) m.set(keys[i], values[i]);
      return m;
    }
    const o = {};
    for (let i = 0; i < n; i++) {
      // defineProperty: a "__proto__" key is data, not the prototype.
      Object.defineProperty(o, keys[i], { value: values[i], enumerable: true, writable: true, configurable: true });
    }
    return o;
  }

  value(depth) {
    const m = this.u8();
    if (m <= 0x7f) return m;
    if (m >= 0xe0) return m - 0x100;
    if (m >= 0xa0 && m <= 0xbf) return this.str(m & 0x1f);
    if ((m >= 0x80 && m <= 0x9f) || m === 0xdc || m === 0xdd || m === 0xde || m === 0xdf) {
      if (depth >= DECODE_DEPTH_MAX) throw new RangeError(`msgpack: nested deeper than ${DECODE_DEPTH_MAX} levels`);
      const n = m <= 0x9f ? m & 0x0f : m === 0xdc || m === 0xde ? this.u16() : this.u32();
      const isMap = m <= 0x8f || m === 0xde || m === 0xdf;
      // Each element takes at least one byte: a length past the input is a lie.
      if (n > this.bytes.length - this.pos) throw new SyntaxError('msgpack: truncated value');
      return isMap ? this.map(n, depth) : this.array(n, depth);
    }
    switch (m) {
      case 0xc0:
        return null;
      case 0xc2:
        return false;
      case 0xc3:
        return true;
      case 0xcc:
        return this.u8();
      case 0xcd:
        return this.u16();
      case 0xce:
        return this.u32();
      case 0xcf: {
        this.need(8);
        const v = this.view.getBigUint64(this.pos);
        this.pos += 8;
        return this.int(v);
      }
      case 0xd0: {
        this.need(1);
        return this.view.getInt8(this.pos++);
      }
      case 0xd1: {
        this.need(2);
        const v = this.view.getInt16(this.pos);
        this.pos += 2;
        return v;
      }
      case 0xd2: {
        this.need(4);
        const v = this.view.getInt32(this.pos);
        this.pos += 4;
        return v;
      }
      case 0xd3: {
        this.need(8);
        const v = this.view.getBigInt64(this.pos);
        this.pos += 8;
        return this.int(v);
      }
      case 0xca: {
        this.need(4);
        const v = this.view.getFloat32(this.pos);
        this.pos += 4;
        return this.float(v);
      }
      case 0xcb: {
        this.need(8);
        const v = this.view.getFloat64(this.pos);
        this.pos += 8;
        return this.float(v);
      }
      case 0xd9:
        return this.str(this.u8());
      case 0xda:
        return this.str(this.u16());
      case 0xdb:
        return this.str(this.u32());
      case 0xc4:
        return this.take(this.u8()).slice();
      case 0xc5:
        return this.take(this.u16()).slice();
      case 0xc6:
        return this.take(this.u32()).slice();
      case 0xd4:
        return this.ext(1);
      case 0xd5:
        return this.ext(2);
      case 0xd6:
        return this.ext(4);
      case 0xd7:
        return this.ext(8);
      case 0xd8:
        return this.ext(16);
      case 0xc7:
        return this.ext(this.u8());
      case 0xc8:
        return this.ext(this.u16());
      case 0xc9:
        return this.ext(this.u32());
      default:
        throw new SyntaxError(`msgpack: reserved byte 0x${m.toString(16)}`);
    }
  }
}

/**
 * Decodes exactly one msgpack value.
 * @param {Uint8Array} bytes
 * @param {{exactFloats?: boolean, mapsAsObjects?: boolean}} [options]
 *   exactFloats: floats come back as {@link Float} (so 2.0 is told from 2);
 *   mapsAsObjects (default true): maps whose keys are all strings become
 *   plain objects, other maps always become Maps.
 */
export function decode(bytes, options = {}) {
  if (!(bytes instanceof Uint8Array)) throw new TypeError('decode takes a Uint8Array');
  const r = new Reader(bytes, options);
  const value = r.value(0);
  if (r.pos !== bytes.length) throw new SyntaxError('msgpack: bytes after the value');
  return value;
}
