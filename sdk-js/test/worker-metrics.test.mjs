// What a JS worker tells the scheduler in its heartbeats, seen in the
// scheduler's /metrics: the time and bytes it fetched from peers (dask/1.1
// transfer totals; the JS worker runs the same worker machine as the Rust
// one). A value made on a Rust dask-worker and needed by a task on the JS
// worker moves once, and counts.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { Client, Worker } from '../index.js';
import { WAIT_MS, eventually } from './support/cluster.mjs';
import { freePort, killAll, metric, scheduler, worker } from './support/processes.mjs';

const BYTES = 300_000;

describe('JS worker metrics', { timeout: 3 * WAIT_MS }, () => {
  let s;
  let address;
  let js;

  before(async () => {
    const port = await freePort();
    s = await scheduler(port);
    await worker(port);
    address = `tcp://127.0.0.1:${port}`;
    js = new Worker({ nthreads: 1, name: 'js-fetcher' });
    js.register('js.len', (bytes) => bytes.length);
    await js.start(address);
  });

  after(async () => {
    await js?.stop();
    await killAll();
  });

  it('counts what the JS worker fetched from a Rust worker in the transfer counters', async () => {
    const client = await Client.connect(address, { name: 'js-transfer' });
    try {
      const rust = (await client.clusterInfo()).workers.find((w) => w.name !== 'js-fetcher').name;
      const blob = client.submit('conformance.bytes', [BYTES], { workers: [rust] });
      const size = client.submit('js.len', [blob], { workers: ['js-fetcher'] });
      assert.equal(await size.result({ timeout: WAIT_MS }), BYTES);
      const bytes = () => metric(s, 'dask_worker_transfer_bytes_total');
      await eventually(async () => (await bytes()) >= BYTES, 'the JS worker to tell what it fetched');
      assert.ok((await bytes()) < 2 * BYTES, 'the value moved once');
      assert.ok((await metric(s, 'dask_worker_transfer_seconds_total')) > 0);
    } finally {
      await client.close();
    }
  });
});
