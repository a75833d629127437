// index.d.ts against a usage sample: the types compile, under --strict,
// for code that uses every part of the API. Needs the dev dependency
// typescript (`npm ci`); skipped, saying so, without it.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { it } from 'node:test';
import { fileURLToPath } from 'node:url';

const pkg = fileURLToPath(new URL('..', import.meta.url));
const tsc = fileURLToPath(new URL('../node_modules/typescript/bin/tsc', import.meta.url));

it('index.d.ts types a sample that uses the whole API', { skip: existsSync(tsc) ? false : 'typescript is not installed (npm ci)' }, () => {
  const args = ['--noEmit', '--strict', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022'];
  for (const file of ['index.d.ts', 'test/support/usage.mts']) {
    try {
      execFileSync(process.execPath, [tsc, ...args, file], { cwd: pkg, encoding: 'utf8' });
    } catch (e) {
      assert.fail(`${file}:\n${e.stdout}${e.stderr}`);
    }
  }
});
