// Clusters for the tests: real dask-scheduler and dask-worker processes
// (binaries from $DASK_BIN_DIR, else the repository's target/release),
// and a bound for every wait so a broken build fails instead of hanging.

import { LocalCluster } from '../../index.js';

/** Generous: a loaded CI machine is slow, but a hang must end. */
export const WAIT_MS = 60_000;

export async function startCluster(options = {}) {
  return LocalCluster.start({ workers: 1, threadsPerWorker: 2, ...options });
}

/** Resolves when `check()` is true, polling; rejects after WAIT_MS. */
export async function eventually(check, what) {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
