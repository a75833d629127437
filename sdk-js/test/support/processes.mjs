// Real dask-scheduler and dask-worker processes for the tests that stop,
// kill and restart them (binaries from $DASK_BIN_DIR, else the
// repository's target/release, as LocalCluster finds them).

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

import { findBinDir } from '../../lib/local.js';
import { WAIT_MS } from './cluster.mjs';

const bin = findBinDir();
const children = new Set();
const dirs = [];

/** A TCP port free now on 127.0.0.1. */
export async function freePort() {
  const server = net.createServer();
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address();
  await new Promise((r) => server.close(r));
  return port;
}

/**
 * Starts `name` with `args`; resolves once its output matches `pattern`
 * (the child's `output` has what it printed until then).
 */
export function start(name, args, pattern) {
  const child = spawn(path.join(bin, name), args, { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  child.once('exit', () => children.delete(child));
  return new Promise((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(() => reject(new Error(`${name} did not print ${pattern}: ${seen}`)), WAIT_MS);
    const read = (chunk) => {
      seen += chunk;
      if (pattern.test(seen)) {
        clearTimeout(timer);
        child.output = seen;
        resolve(child);
      }
    };
    child.stdout.on('data', read);
    child.stderr.on('data', read);
    child.once('exit', (code) => reject(new Error(`${name} exited (${code}): ${seen}`)));
  });
}

/** A dask-scheduler on 127.0.0.1:port (with `--journal journal` when given). */
export function scheduler(port, journal) {
  const args = ['--host', '127.0.0.1', '--port', String(port), '--dashboard-address', '127.0.0.1:0'];
  if (journal) args.push('--journal', journal);
  return start('dask-scheduler', args, /(?=[\s\S]*Scheduler at tcp:\/\/)(?=[\s\S]*Dashboard at \S+\n)/);
}

/** The value of a scalar metric of a scheduler started by `scheduler` (its dashboard's /metrics). */
export async function metric(schedulerProcess, name) {
  const url = new URL(/Dashboard at (\S+)/.exec(schedulerProcess.output)[1]);
  const token = url.searchParams.get('token');
  const reply = await fetch(new URL('/metrics', url), { headers: { authorization: `Bearer ${token}` } });
  assert.equal(reply.status, 200);
  const line = (await reply.text()).split('\n').find((l) => l.startsWith(`${name} `));
  assert.ok(line, `no ${name} in /metrics`);
  return Number(line.split(' ')[1]);
}

/** A dask-worker (2 threads) of the scheduler on 127.0.0.1:port. */
export function worker(port) {
  return start('dask-worker', [`tcp://127.0.0.1:${port}`, '--nthreads', '2', '--reconnect-timeout', '60'], /Worker .* at /);
}

export async function kill(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await exited;
}

export function journalDir() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'dask-js-journal-'));
  dirs.push(dir);
  return dir;
}

/** Kills every process started here and removes the journals. */
export async function killAll() {
  for (const child of [...children]) await kill(child);
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
}
