// A dask/1 worker in Node, like dask-worker: serves the conformance
// functions and a few JS ones until the scheduler closes it.
//
//   node examples/worker.mjs tcp://127.0.0.1:8796 [--nthreads N | N] [--name NAME]
//        [--tls-ca-file CA --tls-cert CERT [--tls-key KEY]]
//
// (The scheduler address may also come from $DASK_SCHEDULER_ADDRESS, the
// TLS files from $DASK_TLS_CA_FILE, $DASK_TLS_CERT and $DASK_TLS_KEY;
// the credentials are found as every dask-rs program finds them.)
// This is the worker scripts/ci/conformance.sh runs the conformance cases
// against.

import { Worker } from '../index.js';

const args = process.argv.slice(2);
const option = (flag) => {
  const at = args.indexOf(flag);
  if (at < 0) return undefined;
  const [, value] = args.splice(at, 2);
  return value;
};
const nthreads = Number(option('--nthreads') ?? args[1] ?? process.env.DASK_NTHREADS ?? 1);
const name = option('--name') ?? process.env.DASK_WORKER_NAME;
const caFile = option('--tls-ca-file') ?? process.env.DASK_TLS_CA_FILE;
const certFile = option('--tls-cert') ?? process.env.DASK_TLS_CERT;
const keyFile = option('--tls-key') ?? process.env.DASK_TLS_KEY;
const tls = caFile || certFile ? { caFile, certFile, keyFile } : undefined;
const scheduler = args[0] ?? process.env.DASK_SCHEDULER_ADDRESS;
if (!scheduler) {
  console.error('usage: node examples/worker.mjs tcp://HOST:PORT [--nthreads N] [--name NAME]');
  process.exit(2);
}

const worker = new Worker({ nthreads, name, tls });
worker.register('js.double', (x) => 2 * x);
worker.register('js.greet', async (who) => `hello, ${who}`);
worker.register('js.concat', (...parts) => parts.join(''));

try {
  await worker.start(scheduler);
} catch (e) {
  console.error(`worker: cannot register with ${scheduler}: ${e.message}`);
  process.exit(1);
}
console.log(`Worker ${worker.name} at ${worker.address}, connected to ${scheduler}`);
const stop = () => worker.stop();
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
try {
  await worker.join();
} catch (e) {
  console.error(`worker: ${e.message}`);
  process.exit(1);
}
