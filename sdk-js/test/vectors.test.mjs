// The golden vectors of spec/vectors, decoded and encoded through the wasm
// build of dask-core (the same checks as core/tests/vectors.rs, see
// spec/vectors/README.md). They are read from the repository; the package
// does not ship them.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';

import { CodecError, codec } from '../index.js';
import { JObject, equal, parse, stringify } from './support/json.mjs';

const vectorsDir = new URL('../../spec/vectors/', import.meta.url);
const load = (name) => parse(readFileSync(new URL(name, vectorsDir), 'utf8'));
const fromHex = (hex) => Uint8Array.from(Buffer.from(hex, 'hex'));
const toHex = (bytes) => Buffer.from(bytes).toString('hex');
const jsonOut = (bytes) => parse(Buffer.from(bytes).toString('utf8'));
const jsonIn = (v) => stringify(v);
const show = (v) => stringify(v).slice(0, 300);

/** The error code a codec call is refused with (null if it succeeds). */
function refusal(f) {
  try {
    f();
    return null;
  } catch (e) {
    if (!(e instanceof CodecError)) throw e;
    return e.code;
  }
}

function cases(doc, list = 'cases') {
  const items = doc.get(list);
  assert.ok(Array.isArray(items) && items.length > 0, `${list}: no cases`);
  return items;
}

describe('spec/vectors through wasm', () => {
  it('values.json: JSON form -> canonical msgpack, every encoding -> JSON form', () => {
    let checked = 0;
    for (const c of cases(load('values.json'))) {
      const d = c.get('description');
      const [canonical, ...others] = c.get('msgpack');
      assert.equal(toHex(codec('value_encode', jsonIn(c.get('json')))), canonical, d);
      for (const hex of [canonical, ...others]) {
        const back = jsonOut(codec('value_decode', fromHex(hex)));
        assert.ok(equal(back, c.get('json')), `${d}: ${hex} decodes to ${show(back)}`);
        checked++;
      }
    }
    assert.ok(checked > 100, `only ${checked} encodings`);
  });

  it('messages.json: every op encodes canonically and decodes from every accepted form', () => {
    const ops = new Set();
    for (const c of cases(load('messages.json'))) {
      const d = c.get('description');
      const json = c.get('json');
      ops.add(json.get('op'));
      const [canonical, ...others] = c.get('msgpack');
      assert.equal(toHex(codec('message_encode', jsonIn(json))), canonical, d);
      for (const hex of [canonical, ...others]) {
        const back = jsonOut(codec('message_decode', fromHex(hex)));
        assert.ok(equal(back, json), `${d}: ${hex} decodes to ${show(back)}`);
      }
    }
    assert.ok(ops.size >= 30, `only ${ops.size} ops`);
  });

  it('frames.json: frames encode canonically and decode whole or byte by byte', () => {
    for (const c of cases(load('frames.json'))) {
      const d = c.get('description');
      const max = c.get('frame_bytes_max');
      const decodeWith = (hex, bytewise) => {
        const request = new JObject([
          ['hex', hex],
          ['bytewise', bytewise],
          ...(max !== undefined ? [['frame_bytes_max', max]] : []),
        ]);
        return jsonOut(codec('frame_decode', jsonIn(request)));
      };
      if (c.has('stream')) {
        for (const bytewise of [false, true]) {
          const out = decodeWith(c.get('stream'), bytewise);
          assert.equal(out.get('error'), null, d);
          assert.ok(equal(out.get('batches'), c.get('batches')), `${d}: ${show(out.get('batches'))}`);
        }
        continue;
      }
      const [canonical, ...others] = c.get('frame');
      assert.equal(toHex(codec('frame_encode', jsonIn(c.get('messages')))), canonical, d);
      for (const hex of [canonical, ...others]) {
        for (const bytewise of [false, true]) {
          const out = decodeWith(hex, bytewise);
          assert.equal(out.get('error'), null, `${d}: ${hex}`);
          assert.equal(out.get('pending'), false, `${d}: ${hex} leaves bytes`);
          assert.ok(equal(out.get('batches'), [c.get('messages')]), `${d}: ${show(out.get('batches'))}`);
        }
      }
    }
  });

  it('invalid.json: every bad frame is refused with its code and yields nothing', () => {
    for (const c of cases(load('invalid.json'))) {
      const d = c.get('description');
      for (const bytewise of [false, true]) {
        const entries = [
          ['hex', c.get('frame')],
          ['bytewise', bytewise],
        ];
        if (c.has('frame_bytes_max')) entries.push(['frame_bytes_max', c.get('frame_bytes_max')]);
        const out = jsonOut(codec('frame_decode', jsonIn(new JObject(entries))));
        assert.deepEqual(out.get('batches'), [], `${d}: no message of a bad frame`);
        if (c.get('incomplete') === true) {
          assert.equal(out.get('error'), null, `${d}: waits for more bytes`);
        } else {
          const error = out.get('error');
          assert.ok(error instanceof JObject, `${d}: not refused (bytewise ${bytewise})`);
          assert.equal(error.get('code').text, c.get('code').text, d);
          assert.equal(error.get('error'), c.get('error'), d);
        }
      }
    }
  });

  it('handshake.json: the acceptor replies or refuses, the connector proceeds or fails', () => {
    const doc = load('handshake.json');
    for (const c of cases(doc, 'accept')) {
      const d = c.get('description');
      const request = new JObject(c.entries.filter(([k]) => ['first', 'role', 'serves', 'id', 'speaks'].includes(k)));
      if (c.has('reply')) {
        const out = jsonOut(codec('handshake_accept', jsonIn(request)));
        assert.ok(equal(out.get('reply'), c.get('reply')), `${d}: ${show(out)}`);
      } else {
        assert.equal(refusal(() => codec('handshake_accept', jsonIn(request))), Number(c.get('code').text), d);
      }
    }
    for (const c of cases(doc, 'connect')) {
      const d = c.get('description');
      const offer = c.get('offer');
      const ours = jsonOut(codec('handshake_offer', jsonIn(new JObject([['role', offer.get('role')]]))));
      assert.ok(equal(ours, offer), `${d}: what dask-rs offers: ${show(ours)}`);
      const request = new JObject([
        ['offer', offer],
        ['reply', c.get('reply')],
        ['expect_role', c.get('expect_role')],
      ]);
      if (c.has('version')) {
        const out = jsonOut(codec('handshake_connect', jsonIn(request)));
        assert.ok(equal(out.get('version'), c.get('version')), d);
        assert.ok(equal(out.get('features'), c.get('features')), d);
      } else {
        assert.equal(refusal(() => codec('handshake_connect', jsonIn(request))), Number(c.get('code').text), d);
      }
    }
  });

  it('the JS value codec agrees with core on every value vector', async () => {
    const { decode, encode } = await import('../index.js');
    for (const c of cases(load('values.json'))) {
      const d = c.get('description');
      const [canonical, ...others] = c.get('msgpack');
      for (const hex of [canonical, ...others]) {
        // exactFloats keeps 1.0 a float, so every value re-encodes canonically.
        const value = decode(fromHex(hex), { exactFloats: true });
        assert.equal(toHex(encode(value)), canonical, `${d}: ${hex}`);
      }
    }
  });
});
