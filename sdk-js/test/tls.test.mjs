// TLS and authentication together, in Node, against the real binaries: a
// dask-scheduler serving tls:// with the credentials file it creates and
// the files of `dask-rs credentials tls`; two JS workers and a Rust
// dask-worker on tls:// data ports (mutual TLS); a JS client proving the
// client secret inside TLS, its proof bound to the TLS session. A value
// moves JS -> JS, JS -> Rust and Rust -> JS over TLS. Strangers are
// refused: no credentials, no CA, another cluster's CA, plain TCP at the
// TLS port.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';

import { Client, Worker } from '../index.js';
import { findBinDir } from '../lib/local.js';
import { WAIT_MS } from './support/cluster.mjs';

const opts = { timeout: WAIT_MS };
const children = new Set();

/** A program's environment: its own DASK_RS_HOME, no DASK_CREDENTIALS. */
function envWithHome(home) {
  const env = { ...process.env, DASK_RS_HOME: home };
  delete env.DASK_CREDENTIALS;
  return env;
}

/** Starts a program; resolves with the first stdout line `pattern` matches. */
function start(program, args, env, pattern) {
  return new Promise((resolve, reject) => {
    const child = spawn(program, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    const err = [];
    child.stderr.on('data', (c) => err.push(c));
    const timer = setTimeout(() => fail('no answer in time'), WAIT_MS);
    function fail(why) {
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(new Error(`${path.basename(program)}: ${why}\n${Buffer.concat(err)}`));
    }
    child.once('error', (e) => fail(e.message));
    child.once('exit', (code) => fail(`exited with ${code}`));
    createInterface({ input: child.stdout }).on('line', (line) => {
      const m = pattern.exec(line);
      if (!m) return;
      clearTimeout(timer);
      child.removeAllListeners('exit');
      resolve(m);
    });
  });
}

/** Runs a program to its end; its stdout. */
function run(program, args, env) {
  return new Promise((resolve, reject) => {
    const child = spawn(program, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const out = [];
    const err = [];
    child.stdout.on('data', (c) => out.push(c));
    child.stderr.on('data', (c) => err.push(c));
    child.once('error', reject);
    child.once('close', (code) =>
      code === 0 ? resolve(Buffer.concat(out).toString()) : reject(new Error(`${program} failed: ${Buffer.concat(err)}`)),
    );
  });
}

describe('TLS with authentication', { timeout: 5 * WAIT_MS }, () => {
  const bin = findBinDir();
  const home = mkdtempSync(path.join(os.tmpdir(), 'dask-js-tls-'));
  const env = envWithHome(home);
  const credentials = path.join(home, 'credentials.json');
  const tls = { caFile: path.join(home, 'tls', 'ca.pem'), certFile: path.join(home, 'tls', 'cluster.pem') };
  let address;
  let client;
  const workers = [];

  before(async () => {
    assert.ok(bin, 'the dask-rs binaries (DASK_BIN_DIR)');
    await run(path.join(bin, 'dask-rs'), ['credentials', 'tls'], env);
    const scheduler = path.join(bin, 'dask-scheduler');
    const tlsFlags = ['--tls-ca-file', tls.caFile, '--tls-cert', tls.certFile];
    [, address] = await start(
      scheduler,
      ['--host', '127.0.0.1', '--port', '0', '--no-dashboard', ...tlsFlags],
      env,
      /^Scheduler at (\S+)/,
    );
    await start(
      path.join(bin, 'dask-worker'),
      [address, '--nthreads', '1', '--name', 'rust-tls', ...tlsFlags],
      env,
      /^Worker (\S+) at (tls:\/\/\S+)/,
    );
    const a = new Worker({ name: 'js-tls-a', credentials, tls }).register('tls.make', (n) => 'x'.repeat(n));
    const b = new Worker({ name: 'js-tls-b', credentials, tls }).register('tls.length', (s) => s.length);
    for (const w of [a, b]) {
      await w.start(address);
      workers.push(w);
    }
    client = await Client.connect(address, { credentials, tls });
  });

  after(async () => {
    await client?.close();
    for (const w of workers) await w.stop();
    for (const child of children) child.kill('SIGKILL');
  });

  it('serves every data port over TLS and moves values between JS and Rust workers', async () => {
    assert.match(address, /^tls:\/\//);
    for (const w of workers) assert.match(w.address, /^tls:\/\/127\.0\.0\.1:\d+$/);
    const made = client.submit('tls.make', [300_000], { workers: ['js-tls-a'] });
    // JS -> JS: b fetches the value from a's TLS data port.
    assert.equal(await client.submit('tls.length', [made], { workers: ['js-tls-b'] }).result(opts), 300_000);
    // JS -> Rust, then Rust -> JS.
    const echoed = client.submit('conformance.echo', [made], { workers: ['rust-tls'] });
    assert.equal(await client.submit('tls.length', [echoed], { workers: ['js-tls-b'] }).result(opts), 300_000);
    const info = await client.clusterInfo();
    assert.equal(info.workers.length, 3);
    for (const w of info.workers) assert.match(w.address, /^tls:\/\//);
  });

  it('refuses a client without the credentials, the CA, or TLS', async () => {
    const noSecret = await Client.connect(address, { credentials: false, tls, timeout: 10_000 }).catch((e) => e);
    assert.ok(noSecret instanceof Error, 'no credentials: refused');
    assert.match(noSecret.message, /authentication required|3003/);

    const noCa = await Client.connect(address, { credentials }).catch((e) => e);
    assert.ok(noCa instanceof Error);
    assert.match(noCa.message, /TLS address: give the cluster's CA file/);

    const otherHome = mkdtempSync(path.join(os.tmpdir(), 'dask-js-tls-other-'));
    await run(path.join(bin, 'dask-rs'), ['credentials', 'tls'], envWithHome(otherHome));
    const otherCa = { caFile: path.join(otherHome, 'tls', 'ca.pem'), certFile: path.join(otherHome, 'tls', 'cluster.pem') };
    const wrongCa = await Client.connect(address, { credentials, tls: otherCa, timeout: 10_000 }).catch((e) => e);
    assert.ok(wrongCa instanceof Error, 'another cluster\'s CA: refused');
    assert.match(wrongCa.message, /not signed by the CA/);

    const plain = await Client.connect(address.replace('tls://', 'tcp://'), { credentials, timeout: 10_000 }).catch((e) => e);
    assert.ok(plain instanceof Error, 'plain TCP at the TLS port: refused');
    assert.match(plain.message, /TLS/);

    // The cluster keeps serving its own client.
    assert.equal(await client.submit('tls.length', ['still here'], { workers: ['js-tls-b'] }).result(opts), 10);
  });
});
