// The raw wasm layer: bad input from JS or the network is an error or a
// closed session, never a trap (a trapped module would take every client
// and worker of the process down with it).

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';

import { encode } from '../index.js';
import { WasmCallError, WasmClient, WasmWorker, exports as wasm } from '../lib/wasm.js';

const seed = 1n;

/** dask_client_command on bytes as they are; its status. */
function rawCommand(handle, bytes) {
  const ptr = wasm.dask_alloc(bytes.length) >>> 0;
  new Uint8Array(wasm.memory.buffer, ptr, bytes.length).set(bytes);
  try {
    return wasm.dask_client_command(handle, ptr, bytes.length);
  } finally {
    wasm.dask_dealloc(ptr, bytes.length);
  }
}

function workerConfig() {
  return {
    scheduler: 'tcp://127.0.0.1:1',
    name: 'abi',
    address: 'tcp://127.0.0.1:2',
    nthreads: 1,
    functions: ['f'],
    now_ms: 0,
  };
}

describe('wasm ABI', () => {
  it('stale handles and bad configurations are errors', () => {
    assert.equal(wasm.dask_client_drain(12345), 1, 'status 1: no such client');
    assert.equal(wasm.dask_worker_accept(12345, 0), 0);
    assert.throws(() => new WasmClient('not a map'), WasmCallError);
    assert.throws(() => new WasmWorker({ name: 'missing fields' }), WasmCallError);
    const c = new WasmClient({ seed });
    c.free();
    c.free();
    assert.throws(() => c.drain(), WasmCallError);
  });

  it('garbage commands are refused without harm', () => {
    const c = new WasmClient({ name: 'abi', seed });
    const commands = [
      {},
      { cmd: 'fly' },
      { cmd: 'submit', tasks: 'no' },
      { cmd: 'submit', tasks: [{ function: 'f', args: 1 }] },
      { cmd: 'submit', tasks: [{ function: 'f', args: [], kwargs: [] }] },
      { cmd: 'gather', keys: [1, 2] },
      { cmd: 'release', keys: 'x' },
      { cmd: 'scatter', values: 5 },
    ];
    for (const cmd of commands) assert.throws(() => c.command(cmd), WasmCallError, JSON.stringify(cmd));
    for (let i = 0; i < 500; i++) {
      // Raw bytes straight into the export, not through the encoder.
      const bytes = i % 2 === 0 ? randomBytes(i % 40) : Buffer.concat([Buffer.from([0x81, 0xa3, 0x63, 0x6d, 0x64]), randomBytes(i % 40)]);
      assert.equal(rawCommand(c.handle, bytes), 1, bytes.toString('hex'));
    }
    assert.ok(c.drain().transmit.length > 0, 'still works: the hello is queued');
    c.free();
  });

  it('random bytes from a scheduler close the session with an error, never trap', () => {
    for (let i = 0; i < 300; i++) {
      const c = new WasmClient({ seed });
      c.drain();
      // A length prefix that fits, then noise: a protocol error.
      const noise = randomBytes(1 + (i % 64));
      const frame = Buffer.concat([Buffer.from([0, 0, 0, noise.length]), noise]);
      c.receive(i % 2 === 0 ? frame : randomBytes(i % 100));
      const out = c.drain();
      if (out.close) assert.ok(out.events.some((e) => e.type === 'closed'));
      c.free();
    }
  });

  it('random bytes on a worker connection close that connection, never trap', () => {
    const w = new WasmWorker(workerConfig());
    w.drain(0);
    for (let i = 0; i < 300; i++) {
      const conn = w.accept(i);
      assert.ok(conn > 1);
      w.receive(conn, i, randomBytes(1 + (i % 200)));
      w.receive(conn, i, encode([1, 2, 3]));
      w.drain(i);
      w.connClosed(conn, i, 'done');
    }
    // Noise whose length prefix is over frame_bytes_max (random bytes alone
    // start a frame still being received one time in 16).
    w.receive(1, 400, Buffer.concat([Buffer.from([0xff]), randomBytes(63)]));
    const out = w.drain(400);
    assert.ok(out.events.some((e) => e.type === 'finished'), 'a scheduler sending noise ends the worker');
    assert.throws(() => w.taskDone({ run_id: 1 }, new Uint8Array(0)), WasmCallError, 'now_ms is required');
    w.free();
  });
});
