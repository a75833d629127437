// The JS client's harness for client conformance:
//
//   dask-conformance client -- node examples/conformance-client.mjs {scheduler}
//
// It connects to the runner (playing the scheduler), prints {"ready": true},
// then reads the driver protocol's commands on stdin, one JSON object a
// line, and answers each on stdout (spec/CONFORMANCE.md, "Client
// conformance"). Everything goes through the package's public API.

import { createInterface } from 'node:readline';
import {
  CancelledError, Client, ConnectionError, LostError, RemoteError, RequestError, decode,
} from '../index.js';

const say = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);
const hex = (bytes) => Buffer.from(bytes).toString('hex');

function failure(key, e) {
  if (e instanceof RemoteError) {
    return { key, error: 'remote', error_type: e.remoteType, message: e.remoteMessage };
  }
  if (e instanceof CancelledError) return { key, error: 'cancelled' };
  if (e instanceof LostError) return { key, error: 'lost', message: e.message };
  if (e instanceof RequestError) return { key, error: 'refused', code: e.code, message: e.message };
  if (e instanceof ConnectionError) return { key, error: 'connection', message: e.message };
  return { key, error: 'other', message: String(e && e.message) };
}

const address = process.argv[2] ?? process.env.DASK_SCHEDULER_ADDRESS;
let client;
try {
  client = await Client.connect(address);
} catch (e) {
  say({ error: 'connection', message: String(e && e.message) });
  process.exit(1);
}
say({ ready: true });

const futures = new Map();
for await (const line of createInterface({ input: process.stdin })) {
  let command;
  try {
    command = JSON.parse(line);
  } catch {
    say({ error: 'bad-command', message: line });
    continue;
  }
  const key = command.key;
  switch (command.do) {
    case 'submit': {
      const args = decode(Buffer.from(command.args_hex ?? '90', 'hex'));
      const future = client.submit(command.function, args);
      futures.set(future.key, future);
      say({ submitted: future.key });
      break;
    }
    case 'result': {
      const future = futures.get(key);
      if (!future) {
        say({ key, error: 'unknown-key' });
        break;
      }
      try {
        say({ key, result_hex: hex(await future.result({ raw: true })) });
      } catch (e) {
        say(failure(key, e));
      }
      break;
    }
    case 'release':
      futures.get(key)?.release();
      futures.delete(key);
      say({ released: key });
      break;
    case 'cancel':
      futures.get(key)?.cancel();
      say({ cancelled: key });
      break;
    case 'close':
      await client.close();
      say({ closed: true });
      process.exit(0);
      break;
    default:
      say({ error: 'bad-command', message: String(command.do) });
  }
}
