import { LocalCluster } from 'dask-rs';

const cluster = await LocalCluster.start({ workers: 2 }); // a dask-scheduler and two dask-workers
const client = await cluster.client();
const xs = client.map('inc', [1, 2, 3, 4]); // four tasks, in parallel
const total = client.submit('sum', [xs]); // waits for all four
console.log('total', await total.result()); // 14
for await (const f of client.asCompleted(xs)) console.log(f.key, await f.result());
await client.close();
await cluster.close();
