// The Client against a real dask-scheduler and two dask-worker processes
// (the Rust worker's built-in functions): every API call, graphs with
// dependencies, errors, two clients.

import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';

import {
  CancelledError,
  Client,
  ConnectionError,
  Float,
  Future,
  RemoteError,
  RequestError,
  TimeoutError,
} from '../index.js';
import { WAIT_MS, eventually, startCluster } from './support/cluster.mjs';

const opts = { timeout: WAIT_MS };

describe('Client', { timeout: 5 * WAIT_MS }, () => {
  let cluster;
  let client;

  before(async () => {
    cluster = await startCluster({ workers: 2 });
    client = await Client.connect(cluster.address, { name: 'js-test' });
  });

  after(async () => {
    await client?.close();
    await cluster?.close();
  });

  it('connects with the handshake and gets an id', () => {
    assert.equal(typeof client.id, 'number');
    assert.equal(client.connected, true);
    assert.equal(client.address, cluster.address);
  });

  it('refuses bad addresses and unreachable schedulers', async () => {
    await assert.rejects(Client.connect('localhost'), TypeError);
    const server = net.createServer();
    await new Promise((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address();
    await new Promise((r) => server.close(r));
    // A refused connect is no "connection lost": it names what was dialled.
    await assert.rejects(Client.connect(`tcp://127.0.0.1:${port}`), (e) => {
      assert.ok(e instanceof ConnectionError);
      assert.match(e.message, new RegExp(`^cannot connect to tcp://127\\.0\\.0\\.1:${port}: connect ECONNREFUSED`));
      return true;
    });
  });

  it("says a worker's data address was reached where a scheduler was expected", async () => {
    const { workers } = await client.clusterInfo();
    const address = workers[0].address;
    await assert.rejects(Client.connect(address), (e) => {
      assert.ok(e instanceof ConnectionError);
      assert.ok(e.message.startsWith(`${address}: the handshake was refused (a dask/1 scheduler was expected)`), e.message);
      assert.ok(e.message.includes("this is a dask/1 worker's data address"), e.message);
      return true;
    });
  });

  it('submit runs a function; result fetches its value', async () => {
    const f = client.submit('inc', [41]);
    assert.ok(f instanceof Future);
    assert.match(f.key, /^inc-/);
    assert.equal(await f.result(opts), 42);
    assert.equal(f.status, 'finished');
    assert.equal(f.done(), true);
    assert.equal(await f.wait(), 'finished');
    const raw = await f.result({ raw: true, ...opts });
    assert.deepEqual(raw, Uint8Array.from([42]), 'raw: the msgpack bytes');
    f.release();
    assert.equal(f.status, 'released');
  });

  it('keyword arguments and task options reach the scheduler', async () => {
    const f = client.submit('conformance.sleep', [1], {
      kwargs: { value: 'woke' },
      key: 'js-explicit-key',
      priority: 5,
      retries: 1,
    });
    assert.equal(f.key, 'js-explicit-key');
    assert.equal(await f.result(opts), 'woke');
    f.release();
  });

  it('map runs one task per item and gather returns them in order', async () => {
    const futures = client.map('inc', [1, 2, 3, 4, 5]);
    assert.equal(futures.length, 5);
    assert.deepEqual(await client.gather(futures, opts), [2, 3, 4, 5, 6]);
    assert.equal(await client.gather(futures[0], opts), 2, 'one Future gives one value');
    client.release(futures);
  });

  it('a graph with dependencies: futures inside arguments are replaced by results', async () => {
    const a = client.submit('inc', [1]); // 2
    const b = client.submit('inc', [a]); // 3
    const c = client.submit('add', [a, b]); // 5
    const d = client.submit('sum', [[a, b, c]]); // 10, futures nested in an array
    const e = client.submit('conformance.echo', [{ deep: [d, { again: a }] }]);
    assert.deepEqual(await e.result(opts), { deep: [10, { again: 2 }] });
    assert.deepEqual(await client.gather([a, b, c, d], opts), [2, 3, 5, 10]);
    client.release([a, b, c, d, e]);
  });

  it('values of every kind travel through the cluster unchanged', async () => {
    const value = {
      ints: [0, -1, 127, 128, -33, 65536, 2 ** 32, Number.MAX_SAFE_INTEGER, 2n ** 64n - 1n, -(2n ** 63n)],
      floats: [0.5, -2.25, 1e300, new Float(2), -0, Infinity],
      text: ['', 'héllo', '∑😀'],
      bin: new Uint8Array([0, 255, 16]),
      map: new Map([
        [1, 'one'],
        [[2], 'two'],
      ]),
      nested: [[[]], {}],
      flags: [true, false, null],
    };
    const f = client.submit('identity', [value]);
    const back = await f.result({ exactFloats: true, ...opts });
    assert.deepEqual(back.ints, value.ints);
    assert.deepEqual(
      back.floats.map((x) => x.valueOf()),
      [0.5, -2.25, 1e300, 2, -0, Infinity],
    );
    assert.ok(back.floats.every((x) => x instanceof Float), 'floats stay floats');
    assert.deepEqual(back.text, value.text);
    assert.deepEqual(back.bin, value.bin);
    assert.deepEqual(back.map, value.map);
    assert.deepEqual(back.nested, value.nested);
    assert.deepEqual(back.flags, value.flags);
    f.release();
  });

  it('a task error rejects with RemoteError carrying the remote type and message', async () => {
    const f = client.submit('conformance.fail', ['boom']);
    // A dependent submitted with it fails with the same error, naming its cause.
    const g = client.submit('inc', [f]);
    const err = await f.result(opts).catch((e) => e);
    assert.ok(err instanceof RemoteError);
    assert.equal(err.remoteType, 'ConformanceError');
    assert.equal(err.remoteMessage, 'boom');
    assert.equal(err.key, f.key);
    assert.match(err.message, /ConformanceError: boom/);
    assert.equal(f.status, 'erred');
    const err2 = await g.result(opts).catch((e) => e);
    assert.ok(err2 instanceof RemoteError, `${err2}`);
    assert.equal(err2.remoteType, 'ConformanceError');
    assert.equal(err2.causeKey, f.key);
    await assert.rejects(client.gather([g], opts), RemoteError);
  });

  it('the scheduler refusing a graph rejects its futures with RequestError', async () => {
    const other = await Client.connect(cluster.address);
    try {
      const a = client.submit('inc', [1], { key: 'js-dup' });
      await a.result(opts);
      const b = other.submit('inc', [2], { key: 'js-dup' }); // same key, another definition
      const err = await b.result(opts).catch((e) => e);
      assert.ok(err instanceof RequestError, `${err}`);
      assert.equal(err.code, 4002);
      assert.equal(err.codeName, 'duplicate-key');
      assert.equal(b.status, 'failed');
      a.release();
    } finally {
      await other.close();
    }
  });

  it('mistakes in calls are TypeErrors, thrown at once', async () => {
    assert.throws(() => client.submit(42, []), TypeError);
    assert.throws(() => client.submit('inc', 1), TypeError);
    assert.throws(() => client.submit('inc', [], { colour: 'red' }), TypeError);
    assert.throws(() => client.submit('inc', [() => 1]), TypeError);
    assert.throws(() => client.submit('inc', [], { key: '' }), TypeError);
    assert.throws(() => client.map('inc', [1], { key: 'k' }), TypeError);
    await assert.rejects(client.gather(['not a future']), TypeError);
  });

  it('asCompleted yields every future once, as each completes', async () => {
    const futures = client.map('conformance.sleep', [30, 1, 10]);
    const seen = [];
    const it = client.asCompleted(futures);
    for await (const f of it) {
      seen.push(f.key);
      assert.equal(f.done(), true);
      if (seen.length === 1) it.add(client.submit('inc', [100]));
    }
    assert.equal(seen.length, 4);
    assert.equal(new Set(seen).size, 4);
    const pairs = [];
    for await (const [f, value] of client.asCompleted(client.map('inc', [1, 2]), { withResults: true })) {
      pairs.push([f.key.startsWith('inc-'), value]);
    }
    assert.deepEqual(pairs.map(([, v]) => v).sort(), [2, 3]);
  });

  it('cancel ends a future cancelled', async () => {
    const f = client.submit('conformance.sleep', [10_000, 'never']);
    client.cancel([f]);
    await assert.rejects(f.result(opts), CancelledError);
    assert.equal(f.status, 'cancelled');
    const g = client.submit('conformance.sleep', [10_000, 'never']);
    g.cancel({ force: true });
    assert.equal(await g.wait(opts), 'cancelled');
  });

  it('a result wait can time out', async () => {
    const f = client.submit('conformance.sleep', [10_000]);
    await assert.rejects(f.result({ timeout: 50 }), TimeoutError);
    f.cancel();
    f.release();
  });

  it('releasing the last future lets the scheduler forget the key', async () => {
    const f = client.submit('inc', [7], { key: 'js-release-me' });
    await f.result(opts);
    const holders = async () => (await client.whoHas([f]))[f.key] ?? [];
    assert.equal((await holders()).length, 1);
    f.release();
    await eventually(async () => (await holders()).length === 0, 'the key to be forgotten');
  });

  it('scatter stores values; their futures work as arguments', async () => {
    const [x, y] = await client.scatter([{ a: [1, 2] }, 5]);
    assert.equal(x.status, 'finished');
    assert.deepEqual(await x.result(opts), { a: [1, 2] });
    assert.equal(await client.submit('inc', [y]).result(opts), 6);
    const [z] = await client.scatter(['everywhere'], { broadcast: true });
    const holders = await client.whoHas([z]);
    assert.equal(holders[z.key].length, 2, 'broadcast: every worker holds it');
    client.release([x, y, z]);
  });

  it('datasets: publish, list, get from another client, unpublish', async () => {
    const [v] = await client.scatter([[1, 2, 3]]);
    await client.publishDataset('js-ds', [v]);
    await assert.rejects(client.publishDataset('js-ds', [v]), (e) => e instanceof RequestError && e.code === 4005);
    await client.publishDataset('js-ds', [v], { overwrite: true });
    assert.ok((await client.listDatasets()).includes('js-ds'));
    const other = await Client.connect(cluster.address, { name: 'second' });
    try {
      const [w] = await other.getDataset('js-ds');
      assert.equal(w.key, v.key);
      assert.deepEqual(await w.result(opts), [1, 2, 3]);
      await other.unpublishDataset('js-ds');
      assert.ok(!(await client.listDatasets()).includes('js-ds'));
      const err = await other.getDataset('js-ds').catch((e) => e);
      assert.ok(err instanceof RequestError);
      assert.equal(err.code, 4004);
      assert.equal(err.codeName, 'unknown-dataset');
    } finally {
      await other.close();
    }
    v.release();
  });

  it('whoHas and clusterInfo describe the cluster', async () => {
    const f = client.submit('inc', [1]);
    await f.wait(opts);
    const where = await client.whoHas([f]);
    assert.match(where[f.key][0], /^tcp:\/\/127\.0\.0\.1:\d+$/);
    const info = await client.clusterInfo();
    assert.equal(info.workers.length, 2);
    assert.ok(info.workers[0].functions.includes('inc'));
    assert.ok(info.clients >= 1);
    assert.equal(typeof info.tasks, 'object');
    f.release();
  });

  it('says why a key waits (once), lists waiting tasks, and counts progress', async () => {
    const heard = [];
    const stop = client.onWaiting((key, waiting) => heard.push([key, waiting]));
    const stuck = client.submit('js.nowhere', [], { key: 'js-stuck' });
    const after = client.submit('inc', [stuck], { key: 'js-after-stuck' });
    const done = client.submit('inc', [1]);
    assert.equal(await done.result(opts), 2);
    await eventually(() => stuck.waiting !== null && after.waiting !== null, 'key-waiting');
    assert.deepEqual(stuck.waiting, {
      reason: 'no-function',
      message: 'no connected worker offers function `js.nowhere`; it runs when a worker that offers it joins',
      task: null,
    });
    assert.equal(after.waiting.task, 'js-stuck');
    assert.deepEqual(heard.map(([k]) => k).sort(), ['js-after-stuck', 'js-stuck']);
    assert.deepEqual(client.progress([stuck, after, done]), {
      total: 3, finished: 1, erred: 0, failed: 0, pending: 2, waiting: 2,
    });
    const page = await client.waitingKeys({ state: 'no-worker' });
    assert.equal(page.next, null);
    assert.deepEqual(page.tasks.map((t) => [t.key, t.reason]), [['js-stuck', 'no-function']]);
    await assert.rejects(client.waitingKeys({ state: 'memory' }), RequestError);
    stop();
    stuck.cancel();
    after.release();
    done.release();
    stuck.release();
  });

  it('two clients share a key; one closing leaves the other its result', async () => {
    const a = await Client.connect(cluster.address, { name: 'a' });
    const b = await Client.connect(cluster.address, { name: 'b' });
    const fa = a.submit('conformance.sleep', [200, 'shared'], { key: 'js-shared' });
    const fb = b.submit('conformance.sleep', [200, 'shared'], { key: 'js-shared' });
    await a.close();
    assert.equal(fa.status, 'failed', 'a closed client fails its pending futures');
    await assert.rejects(fa.result(opts), ConnectionError);
    assert.throws(() => a.submit('inc', [1]), ConnectionError);
    assert.equal(await fb.result(opts), 'shared');
    await b.close();
  });
});
