// Compiled (not run) by test/types.test.mjs: a sample using the whole typed API.
import { Client, Worker, LocalCluster, RemoteError, Float, Future, TaskRef, computeInProcess, encode, decode } from 'dask-rs';

async function main(): Promise<void> {
  const [twelve] = computeInProcess(
    { tasks: [{ key: 'a', function: 'inc', args: [1] }, { key: 'b', function: 'add', args: [new TaskRef('a'), 10] }], wanted: ['b'] },
    { functions: { inc: (x: number) => x + 1, add: { fn: (a: number, b: number) => a + b, params: ['a', 'b'] } } },
  );
  console.log(twelve);
  const cluster = await LocalCluster.start({ workers: 2 });
  const client = await cluster.client({ name: 'ts' });
  const f: Future = client.submit('inc', [1], { priority: 1 });
  const v = await f.result();
  const raw: Uint8Array = await f.result({ raw: true });
  const xs = client.map('inc', [1, 2]);
  const all = await client.gather(xs);
  for await (const g of client.asCompleted(xs)) console.log(g.key, g.status);
  for await (const [g, r] of client.asCompleted(xs, { withResults: true })) console.log(g.key, r);
  try {
    await f.result();
  } catch (e) {
    if (e instanceof RemoteError) console.log(e.remoteType, e.remoteMessage);
  }
  const w = await Worker.start(cluster.address, { functions: { double: (x: number) => 2 * x } });
  w.register('f', async (a: number) => a, { params: ['a'] });
  await w.stop();
  const [s] = await client.scatter([new Float(2), 3n, new Map([[1, 'x']])]);
  await client.publishDataset('d', [s]);
  const other: Client = await Client.connect(cluster.address, { timeout: 5000, reconnectTimeout: 0, submitPartBytes: 1 << 20 });
  const [d] = await other.getDataset('d');
  console.log(await other.listDatasets(), await other.whoHas([d]), d.status === 'finished');
  await other.close();
  const info = await client.clusterInfo();
  console.log(info.workers[0].functions, v, raw, all, decode(encode({ a: [1] })));
  await client.close();
  await cluster.close();
}
main();
