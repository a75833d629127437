// The value mapping (README "Values"): edge values round-trip, what cannot
// be encoded is refused with a clear error, malformed bytes never decode,
// and what the JS encoder writes is what core reads.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { Ext, Float, TaskRef, codec, decode, encode } from '../index.js';

const hex = (v) => Buffer.from(encode(v)).toString('hex');
const roundTrip = (v, options) => decode(encode(v), options);

describe('value codec', () => {
  it('integers take their smallest form; beyond 2^53 they are BigInt', () => {
    const cases = [
      [0, '00'],
      [127, '7f'],
      [128, 'cc80'],
      [255, 'ccff'],
      [256, 'cd0100'],
      [65536, 'ce00010000'],
      [2 ** 32, 'cf0000000100000000'],
      [-1, 'ff'],
      [-32, 'e0'],
      [-33, 'd0df'],
      [-129, 'd1ff7f'],
      [-32769, 'd2ffff7fff'],
      [-(2 ** 31) - 1, 'd3ffffffff7fffffff'],
      [Number.MAX_SAFE_INTEGER, 'cf001fffffffffffff'],
      [Number.MIN_SAFE_INTEGER, 'd3ffe0000000000001'],
    ];
    for (const [v, h] of cases) {
      assert.equal(hex(v), h, `${v}`);
      assert.equal(roundTrip(v), v);
    }
    for (const big of [2n ** 53n, 2n ** 64n - 1n, -(2n ** 63n), -(2n ** 53n)]) {
      assert.equal(roundTrip(big), big, `${big}`);
    }
    // A BigInt that fits a safe integer comes back as a number.
    assert.equal(roundTrip(5n), 5);
    assert.equal(hex(5n), '05');
    assert.throws(() => encode(2n ** 64n), RangeError);
    assert.throws(() => encode(-(2n ** 63n) - 1n), RangeError);
  });

  it('floats are float 64; integral ones need Float to stay floats', () => {
    assert.equal(hex(1.5), 'cb3ff8000000000000');
    assert.equal(hex(2 ** 53), 'cb4340000000000000', 'past the safe range a number is a float');
    assert.equal(hex(new Float(1)), 'cb3ff0000000000000');
    assert.equal(roundTrip(new Float(1)), 1);
    assert.ok(roundTrip(new Float(1), { exactFloats: true }) instanceof Float);
    assert.ok(Object.is(roundTrip(-0), -0));
    assert.ok(Number.isNaN(roundTrip(NaN)));
    assert.equal(hex(NaN), 'cb7ff8000000000000');
    assert.equal(roundTrip(Infinity), Infinity);
    assert.equal(roundTrip(-Infinity), -Infinity);
    assert.equal(roundTrip(5e-324), 5e-324);
    assert.equal(decode(Uint8Array.from([0xca, 0x3f, 0xc0, 0, 0])), 1.5, 'float 32 is read');
    assert.equal(new Float(2.5) + 1, 3.5, 'Float works as a number');
  });

  it('strings, binaries, arrays, objects and Maps round-trip', () => {
    for (const s of ['', 'a', 'é☃😀', 'x'.repeat(31), 'x'.repeat(32), 'y'.repeat(70000)]) {
      assert.equal(roundTrip(s), s);
    }
    const bin = Uint8Array.from({ length: 300 }, (_, i) => i % 256);
    assert.deepEqual(roundTrip(bin), bin);
    assert.deepEqual(roundTrip(new Uint8Array(0)), new Uint8Array(0));
    assert.deepEqual(roundTrip(Buffer.from('hi')), new Uint8Array([104, 105]), 'a Buffer is binary');
    assert.deepEqual(roundTrip(new Uint8Array([1, 2]).buffer), new Uint8Array([1, 2]), 'an ArrayBuffer too');
    const nested = { a: [1, [2, [3, { b: null, c: true, d: false }]]], e: {}, f: [] };
    assert.deepEqual(roundTrip(nested), nested);
    assert.deepEqual(roundTrip(Array.from({ length: 70000 }, (_, i) => i)).length, 70000);
    const m = new Map([
      [1, 'one'],
      [[2], new Uint8Array([2])],
      [null, 0],
    ]);
    assert.deepEqual(roundTrip(m), m, 'non-string keys make a Map');
    assert.deepEqual(roundTrip(new Map([['k', 1]])), { k: 1 }, 'string keys make an object');
    assert.deepEqual(roundTrip(new Map([['k', 1]]), { mapsAsObjects: false }), new Map([['k', 1]]));
    const proto = decode(encode(new Map([['__proto__', 1]])));
    assert.equal(Object.getPrototypeOf(proto), Object.prototype, '__proto__ is a key, not the prototype');
    assert.deepEqual(Object.keys(proto), ['__proto__']);
    assert.equal(roundTrip(undefined), null);
    assert.deepEqual(roundTrip({ u: undefined }), { u: null });
  });

  it('ext values and task references', () => {
    const ext = roundTrip(new Ext(-1, new Uint8Array(4)));
    assert.ok(ext instanceof Ext);
    assert.equal(ext.type, -1);
    assert.equal(hex(new Ext(5, new Uint8Array([1, 2, 3]))), 'c70305010203');
    const ref = roundTrip(new TaskRef('données'));
    assert.ok(ref instanceof TaskRef);
    assert.equal(ref.key, 'données');
    assert.equal(hex(new TaskRef('x')), 'd40178');
  });

  it('what has no msgpack form is refused', () => {
    for (const v of [() => 1, Symbol('s'), new Date(0), new Set([1]), new Int32Array(1), new (class Point {})()]) {
      assert.throws(() => encode(v), TypeError, String(v?.constructor?.name ?? typeof v));
    }
    const cyclic = [];
    cyclic.push(cyclic);
    assert.throws(() => encode(cyclic), RangeError);
    let deep = 1;
    for (let i = 0; i < 100; i++) deep = [deep];
    assert.doesNotThrow(() => encode(deep), '100 levels is the limit');
    assert.throws(() => encode([deep]), RangeError);
  });

  it('malformed bytes never decode', () => {
    const bad = [
      [],
      [0xc1],
      [0x92, 0x01],
      [0xa3, 0x61],
      [0xa2, 0xc3, 0x28],
      [0xd4, 0x01],
      [0xd4, 0x01, 0xff],
      [0xdd, 0xff, 0xff, 0xff, 0xff],
      [0x01, 0x02],
      [0xcf, 0, 0],
    ];
    for (const b of bad) {
      assert.throws(() => decode(Uint8Array.from(b)), SyntaxError, Buffer.from(b).toString('hex'));
    }
    let deep = new Uint8Array(2000).fill(0x91);
    assert.throws(() => decode(deep), RangeError);
    deep = Uint8Array.from([...new Uint8Array(500).fill(0x91), 0x01]);
    assert.equal(decode(deep).flat(Infinity)[0], 1, '500 levels decode (spliced arguments nest deeper than one value)');
  });

  it('core reads whatever the JS encoder writes, as the same value', () => {
    const values = [
      0,
      -1,
      2n ** 64n - 1n,
      -(2n ** 63n),
      1.5,
      new Float(3),
      'é',
      new Uint8Array([0, 255]),
      [1, [2]],
      { b: 1, a: [true, null] },
      new Map([[1, 'one']]),
      new Ext(5, new Uint8Array([1])),
      new TaskRef('k'),
    ];
    for (const v of values) {
      const bytes = encode(v);
      const json = Buffer.from(codec('value_decode', bytes)).toString();
      assert.deepEqual(Buffer.from(codec('value_encode', json)), Buffer.from(bytes), json);
    }
  });
});
