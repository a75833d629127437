// The package as a user gets it: `npm pack` (whose prepack builds the
// wasm module), the tarball installed into a fresh project, the README's
// example run there, and the message when the binaries are nowhere.

import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

import { NO_BINARIES, findBinDir } from '../lib/local.js';
import { WAIT_MS } from './support/cluster.mjs';

const pkg = fileURLToPath(new URL('..', import.meta.url));
const quickstart = readFileSync(path.join(pkg, 'examples', 'quickstart.mjs'), 'utf8');

describe('the npm package', { timeout: 4 * WAIT_MS }, () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'dask-rs-pkg-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('the README shows the quickstart example as it is', () => {
    const readme = readFileSync(path.join(pkg, 'README.md'), 'utf8');
    assert.ok(readme.includes(quickstart.trim()), 'README.md and examples/quickstart.mjs differ');
    assert.ok(quickstart.trim().split('\n').length <= 10, 'the quickstart is ten lines');
  });

  it('packs, installs into a new project and runs the quickstart there', () => {
    const npm = (args, cwd) => execFileSync('npm', [...args, '--no-audit', '--no-fund', '--loglevel=error'], { cwd, encoding: 'utf8', timeout: WAIT_MS });
    const packed = JSON.parse(npm(['pack', '--json', '--pack-destination', dir], pkg));
    const files = packed[0].files.map((f) => f.path).sort();
    for (const f of ['README.md', 'dask_sdk_js.wasm', 'index.d.ts', 'index.js', 'lib/client.js', 'lib/worker.js', 'package.json']) {
      assert.ok(files.includes(f), `${f} is in the package`);
    }
    assert.ok(!files.some((f) => f.startsWith('test/') || f.startsWith('src/')), `only what users need: ${files}`);
    const project = path.join(dir, 'project');
    execFileSync('mkdir', [project]);
    writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'user-project', private: true, type: 'module' }));
    npm(['install', '--offline', path.join(dir, packed[0].filename)], project);
    writeFileSync(path.join(project, 'main.mjs'), quickstart);
    const binDir = findBinDir();
    const out = execFileSync(process.execPath, ['main.mjs'], {
      cwd: project,
      encoding: 'utf8',
      timeout: WAIT_MS,
      env: { ...process.env, ...(binDir ? { DASK_BIN_DIR: binDir } : {}) },
    });
    const lines = out.trim().split('\n');
    assert.equal(lines[0], 'total 14');
    assert.deepEqual(lines.slice(1).map((l) => Number(l.split(' ')[1])).sort(), [2, 3, 4, 5]);

    // Without the binaries anywhere it looks, LocalCluster says how to get
    // them (it said `spawn dask-scheduler ENOENT`).
    const env = { ...process.env, PATH: path.dirname(process.execPath) };
    delete env.DASK_BIN_DIR;
    const missing = spawnSync(process.execPath, ['main.mjs'], { cwd: project, encoding: 'utf8', timeout: WAIT_MS, env });
    assert.notEqual(missing.status, 0);
    assert.ok(missing.stderr.includes(NO_BINARIES), missing.stderr);
  });
});
