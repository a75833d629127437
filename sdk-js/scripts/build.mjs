// npm run build: compiles the Rust side (crate dask-sdk-js) to
// wasm32-unknown-unknown and copies the module into this package as
// dask_sdk_js.wasm, where lib/wasm.js loads it. Needs cargo and the
// wasm32-unknown-unknown target (`rustup target add wasm32-unknown-unknown`).
// Honours CARGO_TARGET_DIR. See HACKING.md.

import { spawnSync } from 'node:child_process';
import { copyFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const pkg = path.resolve(here, '..');
const repo = path.resolve(pkg, '..');
const targetDir = process.env.CARGO_TARGET_DIR ? path.resolve(repo, process.env.CARGO_TARGET_DIR) : path.join(repo, 'target');

const args = ['build', '-p', 'dask-sdk-js', '--target', 'wasm32-unknown-unknown', '--release'];
if (process.env.DASK_CARGO_LOCKED !== '0') args.push('--locked');
const result = spawnSync('cargo', args, {
  cwd: repo,
  stdio: 'inherit',
  env: {
    ...process.env,
    // The workspace's release profile keeps line tables for profiling the
    // binaries; the wasm module ships without debug info and symbol names.
    CARGO_PROFILE_RELEASE_DEBUG: '0',
    CARGO_PROFILE_RELEASE_STRIP: 'true',
  },
});
if (result.error) {
  console.error(`cannot run cargo: ${result.error.message}`);
  process.exit(1);
}
if (result.status !== 0) process.exit(result.status ?? 1);

const built = path.join(targetDir, 'wasm32-unknown-unknown', 'release', 'dask_sdk_js.wasm');
const dest = path.join(pkg, 'dask_sdk_js.wasm');
copyFileSync(built, dest);
// stderr: `npm pack --json` runs this as prepack and its stdout must stay JSON.
console.error(`${path.relative(repo, dest)}: ${statSync(dest).size} bytes`);
