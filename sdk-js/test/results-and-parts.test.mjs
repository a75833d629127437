// The Client's share of issue 19 against real processes: a small result
// comes with key-finished (dask/1.1 inline results), so result() needs no
// gather (shown with the worker stopped: a gather would wait on it); and a
// graph over submitPartBytes goes as several update-graphs (counted by the
// scheduler's /metrics), its results exact.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { Client, TimeoutError } from '../index.js';
import { WAIT_MS, eventually } from './support/cluster.mjs';
import { freePort, killAll, metric, scheduler, worker } from './support/processes.mjs';

describe('Client results and large graphs', { timeout: 4 * WAIT_MS }, () => {
  let s;
  let w;
  let address;

  before(async () => {
    const port = await freePort();
    s = await scheduler(port);
    w = await worker(port);
    address = `tcp://127.0.0.1:${port}`;
  });

  after(killAll);

  it('takes a small result from key-finished, without asking the worker', async () => {
    const client = await Client.connect(address, { name: 'js-inline' });
    try {
      const small = client.submit('inc', [41]);
      // Over the inline bound (4 KiB): its result is fetched from the worker.
      const large = client.submit('sleep', [0, 'x'.repeat(10_000)]);
      assert.equal(await small.wait({ timeout: WAIT_MS }), 'finished');
      assert.equal(await large.wait({ timeout: WAIT_MS }), 'finished');
      w.kill('SIGSTOP');
      try {
        assert.equal(await small.result({ timeout: 2000 }), 42);
        assert.deepEqual(await client.gather([small, small], { timeout: 2000 }), [42, 42]);
        // The control: a gather needs the stopped worker, and waits.
        await assert.rejects(large.result({ timeout: 1000 }), TimeoutError);
      } finally {
        w.kill('SIGCONT');
      }
      assert.equal((await large.result({ timeout: WAIT_MS })).length, 10_000);
    } finally {
      await client.close();
    }
  });

  it('sends a graph over submitPartBytes as several update-graphs, and its results are exact', async () => {
    const items = Array.from({ length: 400 }, (_, i) => i);
    // Accepted graphs, as the scheduler's dashboard publishes them (every 0.5 s).
    const graphs = () => metric(s, 'dask_scheduler_graphs_total');
    const client = await Client.connect(address, { name: 'js-parts', submitPartBytes: 2000 });
    try {
      const before = await graphs();
      const ys = client.map('inc', items);
      const total = client.submit('sum', [ys]);
      assert.equal(await total.result({ timeout: WAIT_MS }), (400 * 401) / 2);
      assert.deepEqual(await client.gather(ys, { timeout: WAIT_MS }), items.map((i) => i + 1));
      // Whole, the map and the sum would be 2 graphs.
      await eventually(async () => (await graphs()) - before >= 6, 'the map to arrive as 5 or more update-graphs');
    } finally {
      await client.close();
    }
  });
});
