// The cluster's credentials, found as every dask-rs program finds them
// (dask-net's credentials.rs): the `credentials` option, else the file
// named by DASK_CREDENTIALS, else the default file that dask-scheduler
// creates on its first start ($DASK_RS_HOME/credentials.json, else
// ~/.dask-rs/credentials.json). A named file must exist; the default one
// may be absent (then the program holds none, and a scheduler that
// requires them says so). A file others can read is refused.

import { existsSync, readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';

import { DaskError } from './errors.js';

/** The default file's path, or null without a home directory. */
export function defaultCredentialsPath(env = process.env) {
  if (env.DASK_RS_HOME) return path.join(env.DASK_RS_HOME, 'credentials.json');
  const home = env.HOME || homedir();
  return home ? path.join(home, '.dask-rs', 'credentials.json') : null;
}

function secret(object, name, file) {
  const hex = object[name];
  if (hex === undefined || hex === null) return null;
  if (typeof hex !== 'string' || !/^[0-9a-fA-F]{64}$/.test(hex)) {
    throw new DaskError(`the credentials file ${file}: "${name}" is not 64 hex digits`);
  }
  return Buffer.from(hex, 'hex');
}

/**
 * The secrets of the credentials file found, or null when none is given
 * and the default file does not exist.
 * @param {string | null} [given] a path (the `credentials` option)
 * @returns {{client: Buffer | null, worker: Buffer | null, path: string} | null}
 */
export function findCredentials(given = null, env = process.env) {
  const named = given ?? (env.DASK_CREDENTIALS || null);
  const file = named ?? defaultCredentialsPath(env);
  if (!file || (!named && !existsSync(file))) return null;
  let text;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new DaskError(`the credentials file ${file} cannot be read: ${e.message}`);
  }
  if (process.platform !== 'win32' && (statSync(file).mode & 0o077) !== 0) {
    throw new DaskError(`the credentials file ${file}: other users can read or write it: run \`chmod 600 ${file}\``);
  }
  let object;
  try {
    object = JSON.parse(text);
  } catch (e) {
    throw new DaskError(`the credentials file ${file} is not JSON: ${e.message}`);
  }
  if (object?.dask_rs_credentials !== 1) {
    throw new DaskError(`the credentials file ${file} is not a dask-rs credentials file of format 1`);
  }
  return { client: secret(object, 'client_secret', file), worker: secret(object, 'worker_secret', file), path: file };
}

/**
 * The secret of `role` ('client' or 'worker') to prove, from the
 * `credentials` option (a path, or false for none), or null.
 */
export function secretFor(role, option) {
  if (option === false) return null;
  const found = findCredentials(option ?? null);
  if (!found) return null;
  const own = found[role];
  if (!own) {
    throw new DaskError(
      `the credentials file ${found.path} holds no ${role} secret (it was exported for another role): ` +
        `give this program the ${role} file (\`dask-rs credentials export\`)`,
    );
  }
  return own;
}
