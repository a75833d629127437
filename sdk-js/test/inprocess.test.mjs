// computeInProcess: graphs of JS functions computed in this process, no
// cluster. The same graphs on a real cluster (a JS Worker offering the
// same functions) give the same results and errors.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { Client, RemoteError, RequestError, TaskRef, Worker, computeInProcess } from '../index.js';
import { WAIT_MS, startCluster } from './support/cluster.mjs';

const functions = {
  'js.inc': (x) => x + 1,
  'js.add': (a, b) => a + b,
  'js.sum': (xs) => xs.reduce((s, x) => s + x, 0),
  'js.fail': (why) => {
    throw new RangeError(`failed: ${why}`);
  },
};

/** A graph of `n` tasks, each on up to three earlier ones (seeded). */
function randomGraph(n, seed, prefix) {
  let state = seed;
  const next = (m) => {
    state = (state * 1103515245 + 12345) % 2147483648;
    return state % m;
  };
  const key = (i) => `${prefix}-${i}`;
  const tasks = [];
  for (let i = 0; i < n; i++) {
    const ref = () => (i === 0 ? 1 : new TaskRef(key(next(i))));
    switch (i === 0 ? 0 : next(3)) {
      case 0:
        tasks.push({ key: key(i), function: 'js.inc', args: [ref()] });
        break;
      case 1:
        tasks.push({ key: key(i), function: 'js.add', args: [ref(), ref()] });
        break;
      default:
        tasks.push({ key: key(i), function: 'js.sum', args: [[ref(), ref(), 3]] });
    }
  }
  return tasks;
}

/** The graph's tasks submitted as futures (in order: references come first). */
function submitAll(client, tasks) {
  const futures = new Map();
  const swap = (v) => (v instanceof TaskRef ? futures.get(v.key) : Array.isArray(v) ? v.map(swap) : v);
  for (const t of tasks) futures.set(t.key, client.submit(t.function, t.args.map(swap), { key: t.key }));
  return futures;
}

describe('computeInProcess', { timeout: 5 * WAIT_MS }, () => {
  let cluster;
  let client;
  let worker;

  before(async () => {
    cluster = await startCluster({ workers: 1 });
    client = await Client.connect(cluster.address);
    worker = await Worker.start(cluster.address, { functions, nthreads: 2 });
  });

  after(async () => {
    await client?.close();
    await worker?.stop();
    await cluster?.close();
  });

  it('gives what a cluster gives on random graphs', async () => {
    for (const seed of [1, 2, 3]) {
      const tasks = randomGraph(200, seed, `r${seed}`);
      const wanted = tasks.filter((_, i) => i % 7 === 0 || i === tasks.length - 1).map((t) => t.key);
      const futures = submitAll(client, tasks);
      const expected = await client.gather(wanted.map((k) => futures.get(k)), { timeout: WAIT_MS });
      const got = computeInProcess({ tasks, wanted }, { functions });
      assert.deepEqual(got, expected, `seed ${seed}`);
      client.release([...futures.values()]);
    }
  });

  it('raises the first failure with its cause, as the cluster does', async () => {
    const tasks = [
      { key: 'e-ok', function: 'js.inc', args: [1] },
      { key: 'e-bad', function: 'js.fail', args: ['on purpose'] },
      { key: 'e-below', function: 'js.add', args: [new TaskRef('e-ok'), new TaskRef('e-bad')] },
    ];
    const futures = submitAll(client, tasks);
    const onCluster = await futures.get('e-below').result({ timeout: WAIT_MS }).catch((e) => e);
    assert.ok(onCluster instanceof RemoteError);
    assert.throws(
      () => computeInProcess({ tasks, wanted: ['e-below'] }, { functions }),
      (e) => {
        assert.ok(e instanceof RemoteError);
        assert.equal(e.key, 'e-below');
        assert.equal(e.causeKey, onCluster.causeKey);
        assert.equal(e.remoteType, onCluster.remoteType);
        assert.equal(e.remoteMessage, onCluster.remoteMessage);
        return true;
      },
    );
    client.release([...futures.values()]);
  });
});

describe('computeInProcess alone', () => {
  it('runs dependencies first, binds keyword arguments, takes maps of functions', () => {
    const order = [];
    const logged = new Map([
      ['log', { fn: (name, { tag = '' } = {}) => (order.push(name), `${name}${tag}`) }],
      ['pair', { fn: (a, b) => [a, b], params: ['a', 'b'] }],
    ]);
    const [top] = computeInProcess(
      {
        tasks: [
          { key: 'top', function: 'pair', args: [new TaskRef('left')], kwargs: { b: new TaskRef('right') } },
          { key: 'left', function: 'log', args: ['left'] },
          { key: 'right', function: 'log', args: ['right'], kwargs: { tag: '!' } },
        ],
      },
      { functions: logged },
    );
    assert.deepEqual(top, ['left', 'right!']);
    assert.deepEqual(order.sort(), ['left', 'right']);
  });

  it('runs a long chain without growing the stack', () => {
    const tasks = [{ key: 'c-0', function: 'js.inc', args: [0] }];
    for (let i = 1; i < 20_000; i++) tasks.push({ key: `c-${i}`, function: 'js.inc', args: [new TaskRef(`c-${i - 1}`)] });
    assert.deepEqual(computeInProcess({ tasks }, { functions }), [20_000]);
  });

  it('reruns a failing task as its retries say; a Promise is refused', () => {
    let calls = 0;
    const flaky = () => {
      calls += 1;
      if (calls < 3) throw new Error('not yet');
      return 'done';
    };
    assert.deepEqual(
      computeInProcess({ tasks: [{ key: 'f', function: 'flaky', args: [], retries: 2 }] }, { functions: { flaky } }),
      ['done'],
    );
    assert.equal(calls, 3);
    assert.throws(
      () => computeInProcess({ tasks: [{ key: 'p', function: 'later', args: [] }] }, { functions: { later: async () => 1 } }),
      (e) => e instanceof RemoteError && e.remoteType === 'TypeError' && /returned a Promise/.test(e.remoteMessage),
    );
    assert.throws(
      () => computeInProcess({ tasks: [{ key: 'u', function: 'nowhere', args: [] }] }),
      (e) => e instanceof RemoteError && e.remoteType === 'UnknownFunction',
    );
  });

  it('refuses graphs as a scheduler does', () => {
    assert.throws(
      () => computeInProcess({ tasks: [{ key: 'a', function: 'js.inc', args: [new TaskRef('missing')] }] }, { functions }),
      (e) => e instanceof RequestError && e.codeName === 'unknown-key' && e.code === 4001,
    );
    assert.throws(
      () =>
        computeInProcess(
          {
            tasks: [
              { key: 'x', function: 'js.inc', args: [new TaskRef('y')] },
              { key: 'y', function: 'js.inc', args: [new TaskRef('x')] },
            ],
            wanted: ['x'],
          },
          { functions },
        ),
      (e) => e instanceof RequestError && e.codeName === 'cycle',
    );
  });
});
