// The JS Worker in a real cluster: JS functions served to the JS client
// and to a Rust-built client (the `dask` CLI), dependencies moving between
// the JS worker and a Rust dask-worker both ways, errors, stopping.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { createHmac, randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { Client, ConnectionError, Float, RemoteError, Worker, decode, encode } from '../index.js';
import { findCredentials } from '../lib/credentials.js';
import { findBinDir } from '../lib/local.js';
import { WAIT_MS, eventually, startCluster } from './support/cluster.mjs';

const opts = { timeout: WAIT_MS };

class ParseError extends Error {}

/** Runs a program to its end; {code, stdout, stderr}. */
function run(command, args) {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const out = [];
    const err = [];
    child.stdout.on('data', (c) => out.push(c));
    child.stderr.on('data', (c) => err.push(c));
    const timer = setTimeout(() => child.kill('SIGKILL'), WAIT_MS);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() });
    });
  });
}

describe('Worker', { timeout: 5 * WAIT_MS }, () => {
  let cluster;
  let client;
  let worker;
  let rustWorker;
  let inFlight = 0;
  let maxInFlight = 0;

  before(async () => {
    cluster = await startCluster({ workers: 1 });
    client = await Client.connect(cluster.address);
    rustWorker = (await client.clusterInfo()).workers[0].name;
    worker = new Worker({ nthreads: 2, name: 'js-worker-under-test' });
    worker
      .register('js.double', (x) => 2 * x)
      .register('js.greet', async (who) => `hello, ${who}`)
      .register('js.kwargs', (...args) => args)
      .register('js.bound', (a, b = 'default') => [a, b], { params: ['a', 'b'] })
      .register('js.kind', (x) => (x instanceof Float ? 'float' : typeof x), { exactFloats: true })
      .register('js.parse', (text) => {
        throw new ParseError(`cannot parse ${text}`);
      })
      .register('js.reject', async () => {
        throw new RangeError('async failure');
      })
      .register('js.unencodable', () => Symbol('nope'))
      .register('js.bytes', (n) => new Uint8Array(n).fill(7))
      .register('js.busy', async (ms) => {
        inFlight += 1;
        maxInFlight = Math.max(maxInFlight, inFlight);
        await new Promise((r) => setTimeout(r, ms));
        inFlight -= 1;
        return ms;
      });
    await worker.start(cluster.address);
  });

  after(async () => {
    await client?.close();
    await worker?.stop();
    await cluster?.close();
  });

  it('registers with the scheduler, offering its functions and the conformance ones', async () => {
    assert.equal(typeof worker.id, 'number');
    assert.match(worker.address, /^tcp:\/\/127\.0\.0\.1:\d+$/);
    const info = await client.clusterInfo();
    const me = info.workers.find((w) => w.name === 'js-worker-under-test');
    assert.ok(me, 'listed by the scheduler');
    assert.equal(me.address, worker.address);
    assert.equal(me.nthreads, 2);
    for (const f of ['js.double', 'js.greet', 'conformance.echo', 'conformance.add']) {
      assert.ok(me.functions.includes(f), f);
    }
    assert.deepEqual(worker.functions, [...worker.functions].sort());
  });

  it('runs sync and async JS functions for a JS client', async () => {
    assert.equal(await client.submit('js.double', [21]).result(opts), 42);
    assert.equal(await client.submit('js.greet', ['node']).result(opts), 'hello, node');
    const big = await client.submit('js.bytes', [100_000]).result(opts);
    assert.equal(big.length, 100_000);
  });

  it('passes keyword arguments as a trailing object, or by name with params', async () => {
    assert.deepEqual(await client.submit('js.kwargs', [1], { kwargs: { k: 2 } }).result(opts), [1, { k: 2 }]);
    assert.deepEqual(await client.submit('js.kwargs', [1]).result(opts), [1]);
    assert.deepEqual(await client.submit('js.bound', [1], { kwargs: { b: 2 } }).result(opts), [1, 2]);
    assert.deepEqual(await client.submit('js.bound', [], { kwargs: { a: 'x' } }).result(opts), ['x', 'default']);
    const err = await client.submit('js.bound', [1], { kwargs: { c: 3 } }).result(opts).catch((e) => e);
    assert.equal(err.remoteType, 'TypeError');
    assert.match(err.remoteMessage, /unexpected keyword argument "c"/);
  });

  it('exactFloats tells an integral float from an integer', async () => {
    assert.equal(await client.submit('js.kind', [new Float(2)]).result(opts), 'float');
    assert.equal(await client.submit('js.kind', [2]).result(opts), 'number');
  });

  it('a throw or rejection becomes RemoteError with the error class and message', async () => {
    const e1 = await client.submit('js.parse', ['x']).result(opts).catch((e) => e);
    assert.ok(e1 instanceof RemoteError);
    assert.equal(e1.remoteType, 'ParseError');
    assert.equal(e1.remoteMessage, 'cannot parse x');
    assert.match(e1.traceback, /worker\.test\.mjs/, 'the JS stack is the traceback');
    const e2 = await client.submit('js.reject', []).result(opts).catch((e) => e);
    assert.equal(e2.remoteType, 'RangeError');
    const e3 = await client.submit('js.unencodable', []).result(opts).catch((e) => e);
    assert.equal(e3.remoteType, 'TypeError', 'a result with no msgpack form');
  });

  it('never runs more than nthreads tasks at once', async () => {
    maxInFlight = 0;
    const futures = client.map('js.busy', [50, 50, 50, 50, 50, 50]);
    assert.deepEqual(await client.gather(futures, opts), [50, 50, 50, 50, 50, 50]);
    assert.ok(maxInFlight >= 1 && maxInFlight <= 2, `max ${maxInFlight} at once`);
    client.release(futures);
  });

  it('dependencies move between the JS worker and a Rust worker, both ways', async () => {
    const onRust = { workers: [rustWorker] };
    const onJs = { workers: ['js-worker-under-test'] };
    const a = client.submit('inc', [1], onRust); // 2, on the Rust worker
    const b = client.submit('js.double', [a], onJs); // 4: the JS worker fetches a from the Rust one
    const c = client.submit('inc', [b], onRust); // 5: the Rust worker fetches b from the JS one
    assert.equal(await c.result(opts), 5);
    const where = await client.whoHas([a, b]);
    assert.ok(where[b.key].includes(worker.address));
    assert.ok(where[a.key].includes(worker.address), 'the fetched copy is announced (add-keys)');
    client.release([a, b, c]);
  });

  it('a peer that half-closes after its get-data still gets the reply', async () => {
    const x = client.submit('js.double', [21], { workers: ['js-worker-under-test'] });
    assert.equal(await x.result(opts), 42);
    const { hostname, port } = new URL(worker.address.replace('tcp:', 'http:'));
    const secret = findCredentials().worker;
    const frameOf = (messages) => {
      const payload = encode(messages);
      const frame = Buffer.alloc(4 + payload.length);
      frame.writeUInt32BE(payload.length, 0);
      frame.set(payload, 4);
      return frame;
    };
    for (let round = 0; round < 5; round += 1) {
      // A peer proving the worker secret (dask/1.1): hello, then, once the
      // worker's reply (its nonce) is in, auth-proof and get-data in one
      // frame, then our write side shut: the worker gets the request and
      // the end of the stream together.
      const nonce = randomBytes(32);
      const hello = { op: 'hello', protocol: 'dask', version: [1, 1], role: 'peer', auth: { method: 'hmac-sha256', nonce } };
      const bytes = await new Promise((resolve, reject) => {
        const socket = net.connect(Number(port), hostname);
        const chunks = [];
        const timer = setTimeout(() => socket.destroy(new Error('no close from the worker')), WAIT_MS);
        let proven = false;
        socket.on('data', (c) => {
          chunks.push(c);
          const got = Buffer.concat(chunks);
          if (proven || got.length < 4 || got.length < 4 + got.readUInt32BE(0)) return;
          proven = true;
          const reply = decode(got.subarray(4, 4 + got.readUInt32BE(0)))[0];
          const proof = createHmac('sha256', secret)
            .update('dask/1 auth connector\0peer\0')
            .update(nonce)
            .update(reply.auth.nonce)
            .digest();
          socket.end(frameOf([
            { op: 'auth-proof', proof },
            { op: 'get-data', request: round, keys: [x.key, 'nope'] },
          ]));
        });
        socket.once('error', reject);
        socket.once('close', () => {
          clearTimeout(timer);
          resolve(Buffer.concat(chunks));
        });
        socket.write(frameOf([hello]));
      });
      const messages = [];
      for (let at = 0; at + 4 <= bytes.length; ) {
        const n = bytes.readUInt32BE(at);
        messages.push(...decode(bytes.subarray(at + 4, at + 4 + n)));
        at += 4 + n;
      }
      assert.equal(messages[0]?.op, 'hello', `round ${round}: ${JSON.stringify(messages)}`);
      const data = messages[1];
      assert.equal(data?.op, 'data', `round ${round}: no data reply before the close`);
      assert.equal(data.request, round);
      assert.deepEqual(data.missing, ['nope']);
      assert.equal(data.data[x.key], 42);
    }
    // The worker still serves.
    assert.equal(await client.submit('js.double', [x], { workers: ['js-worker-under-test'] }).result(opts), 84);
    client.release([x]);
  });

  it('serves a JS function to a Rust-built client (the dask CLI)', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'dask-js-'));
    const graph = path.join(dir, 'graph.json');
    writeFileSync(
      graph,
      JSON.stringify({
        tasks: [
          { key: 'greeting', function: 'js.greet', args: ['rust'] },
          { key: 'twice', function: 'js.double', args: [{ $ref: 'n' }] },
          { key: 'n', function: 'inc', args: [20] },
        ],
        wanted: ['greeting', 'twice'],
      }),
    );
    const bin = findBinDir();
    const dask = bin ? path.join(bin, 'dask-rs') : 'dask-rs';
    const { code, stdout, stderr } = await run(dask, ['submit', '--scheduler', cluster.address, graph]);
    assert.equal(code, 0, stderr);
    assert.match(stdout, /^greeting = "hello, rust"$/m);
    assert.match(stdout, /^twice = 42$/m);
  });

  it('a second worker with the same name is refused', async () => {
    const twin = new Worker({ name: 'js-worker-under-test' });
    const err = await twin.start(cluster.address).catch((e) => e);
    assert.ok(err instanceof ConnectionError, `${err}`);
    assert.match(err.message, /3004|name/);
    await assert.rejects(twin.join(), ConnectionError);
  });

  it('stop() leaves the cluster; join() then resolves', async () => {
    const extra = await Worker.start(cluster.address, { functions: { 'js.one': () => 1 } });
    const names = async () => (await client.clusterInfo()).workers.map((w) => w.name);
    assert.ok((await names()).includes(extra.name));
    await extra.stop();
    await extra.join();
    await eventually(async () => !(await names()).includes(extra.name), 'the worker to leave');
  });

  it('a scheduler closing the worker ends it cleanly', async () => {
    const own = await startCluster({ workers: 0 });
    const lonely = await Worker.start(own.address);
    await own.close(); // dask-scheduler sends close to its workers on SIGTERM
    await lonely.join();
  });

  it('a lost scheduler connection ends the worker with ConnectionError', async () => {
    // A proxy in between, cut mid-session.
    const target = new URL(cluster.address.replace('tcp:', 'http:'));
    const pipes = [];
    const proxy = net.createServer((inbound) => {
      const outbound = net.connect(Number(target.port), target.hostname);
      inbound.pipe(outbound).pipe(inbound);
      pipes.push(inbound, outbound);
      for (const s of [inbound, outbound]) s.on('error', () => {});
    });
    await new Promise((r) => proxy.listen(0, '127.0.0.1', r));
    const cut = await Worker.start(`tcp://127.0.0.1:${proxy.address().port}`);
    for (const s of pipes) s.destroy();
    proxy.close();
    const err = await cut.join().catch((e) => e);
    assert.ok(err instanceof ConnectionError, `${err}`);
  });

  it('rejects bad registrations before starting', async () => {
    const w = new Worker();
    assert.throws(() => w.register('', () => 1), TypeError);
    assert.throws(() => w.register('f', 42), TypeError);
    await assert.rejects(w.start('nowhere'), TypeError);
    await assert.rejects(new Worker({ nthreads: 0 }).start(cluster.address), TypeError);
  });
});
