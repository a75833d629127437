// dask-rs for Node: a client and a worker for dask/1 clusters. The
// protocol (messages, framing, handshake, client and worker sessions) is
// dask-rs's Rust core compiled to wasm; see README.md.

export { Client, Future, AsCompleted } from './lib/client.js';
export { Worker } from './lib/worker.js';
export { LocalCluster } from './lib/local.js';
export { computeInProcess } from './lib/inprocess.js';
export {
  DaskError,
  RemoteError,
  CancelledError,
  LostError,
  RequestError,
  ConnectionError,
  TimeoutError,
} from './lib/errors.js';
export { encode, decode, Ext, Float, TaskRef } from './lib/msgpack.js';
export { codec, CodecError } from './lib/wasm.js';
