// LocalCluster: a dask-scheduler and dask-worker processes on this
// machine (127.0.0.1), for scripts and tests.

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import { Client } from './client.js';
import { DaskError } from './errors.js';

const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 5_000;

// Children of every cluster, killed if this process exits without close().
const live = new Set();
process.on('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

/**
 * Where the dask-scheduler and dask-worker binaries are: `binDir`, else
 * $DASK_BIN_DIR, else the repository's target/release when this package
 * sits in a dask-rs checkout, else the first directory of PATH holding
 * dask-scheduler; null when none does.
 */
export function findBinDir(binDir, env = process.env) {
  if (binDir) return binDir;
  if (env.DASK_BIN_DIR) return env.DASK_BIN_DIR;
  const repoTarget = fileURLToPath(new URL('../../target/release/', import.meta.url));
  if (existsSync(path.join(repoTarget, 'dask-scheduler'))) return repoTarget;
  for (const dir of (env.PATH ?? '').split(path.delimiter)) {
    if (dir && existsSync(path.join(dir, 'dask-scheduler'))) return dir;
  }
  return null;
}

/** What LocalCluster says when it finds no binaries. */
export const NO_BINARIES =
  'LocalCluster runs the dask-rs binaries dask-scheduler and dask-worker, and found none ' +
  '(no binDir option, no $DASK_BIN_DIR, no dask-rs checkout around this package, none on PATH). ' +
  'Install them from a dask-rs checkout with `make install PREFIX=$HOME/.local` (puts them in ' +
  '$HOME/.local/bin; see its README), or pass binDir / set DASK_BIN_DIR to the directory holding them.';

function program(binDir, name) {
  return path.join(binDir, name);
}

/**
 * Starts a program and resolves with the first stdout line `match`
 * accepts (its match), rejecting if it exits or stays silent too long.
 */
function startProcess(command, args, match, what) {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    live.add(child);
    child.once('exit', () => live.delete(child));
    const stderr = [];
    child.stderr.on('data', (chunk) => {
      stderr.push(chunk);
      if (stderr.length > 50) stderr.shift();
    });
    let settled = false;
    const fail = (message) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      child.kill('SIGKILL');
      const tail = Buffer.concat(stderr).toString().trim();
      reject(new DaskError(`${what}: ${message}${tail ? `\n${tail}` : ''}`));
    };
    const timer = setTimeout(() => fail(`no answer within ${START_TIMEOUT_MS} ms`), START_TIMEOUT_MS);
    child.once('error', (e) => fail(`cannot start ${command}: ${e.message} (pass binDir or set DASK_BIN_DIR to the directory of the dask-rs binaries)`));
    child.once('exit', (code, signal) => fail(`exited (${signal ?? `status ${code}`})`));
    const lines = createInterface({ input: child.stdout });
    lines.on('line', (line) => {
      const m = match(line);
      if (!m || settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ child, match: m });
    });
    // Keep draining output so the child never blocks on a full pipe.
    child.stdout.resume();
  });
}

async function stopProcess(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  let timer;
  const late = new Promise((resolve) => {
    timer = setTimeout(() => {
      child.kill('SIGKILL');
      resolve();
    }, STOP_TIMEOUT_MS);
  });
  await Promise.race([exited, late]);
  clearTimeout(timer);
  await exited;
}

/**
 * A scheduler and workers as child processes on 127.0.0.1.
 *
 * ```js
 * const cluster = await LocalCluster.start({ workers: 2 });
 * const client = await cluster.client();
 * ...
 * await client.close();
 * await cluster.close();
 * ```
 */
export class LocalCluster {
  #scheduler;
  #workers = [];
  #binDir;
  #threads;

  /** @internal use LocalCluster.start */
  constructor(scheduler, address, binDir, threads) {
    this.#scheduler = scheduler;
    this.#binDir = binDir;
    this.#threads = threads;
    /** The scheduler's address, tcp://127.0.0.1:PORT. */
    this.address = address;
  }

  /**
   * Starts dask-scheduler (on a free port) and `workers` dask-worker
   * processes; resolves once every worker has registered.
   * @param {{workers?: number, threadsPerWorker?: number, binDir?: string}} [options]
   */
  static async start({ workers = 1, threadsPerWorker = 1, binDir } = {}) {
    const dir = findBinDir(binDir);
    if (dir === null) throw new DaskError(NO_BINARIES);
    const { child, match } = await startProcess(
      program(dir, 'dask-scheduler'),
      ['--host', '127.0.0.1', '--port', '0'],
      (line) => /^Scheduler at (tcp:\/\/\S+)/.exec(line),
      'dask-scheduler',
    );
    const cluster = new LocalCluster(child, match[1], dir, threadsPerWorker);
    try {
      await Promise.all(Array.from({ length: workers }, () => cluster.addWorker()));
    } catch (e) {
      await cluster.close();
      throw e;
    }
    return cluster;
  }

  /**
   * Starts one more dask-worker; resolves to its data address once it
   * registered.
   * @param {{nthreads?: number, name?: string}} [options]
   */
  async addWorker({ nthreads = this.#threads, name } = {}) {
    const args = [this.address, '--nthreads', String(nthreads)];
    if (name) args.push('--name', name);
    const { child, match } = await startProcess(
      program(this.#binDir, 'dask-worker'),
      args,
      (line) => /^Worker (\S+) at (tcp:\/\/\S+)/.exec(line),
      'dask-worker',
    );
    this.#workers.push(child);
    return match[2];
  }

  /** A client connected to this cluster. */
  client(options) {
    return Client.connect(this.address, options);
  }

  /** Stops the workers, then the scheduler. */
  async close() {
    await Promise.all(this.#workers.map(stopProcess));
    this.#workers = [];
    await stopProcess(this.#scheduler);
  }
}
