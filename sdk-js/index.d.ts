// Types of the dask-rs Node package (hand-written, kept beside index.js).

/**
 * A JS value with a msgpack form (README "Values"): null/undefined, boolean,
 * number, bigint, string, Uint8Array (binary), arrays, plain objects, Maps,
 * and the Float, Ext and TaskRef wrappers; a Future stands for its result.
 */
export type Value =
  | null
  | undefined
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | ArrayBuffer
  | Float
  | Ext
  | TaskRef
  | Future
  | Value[]
  | Map<Value, Value>
  | { [key: string]: Value };

/** What a decoded result can be. */
export type Decoded =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | Float
  | Ext
  | TaskRef
  | Decoded[]
  | Map<Decoded, Decoded>
  | { [key: string]: Decoded };

export type Status = 'pending' | 'finished' | 'erred' | 'cancelled' | 'lost' | 'failed' | 'released';

export interface DecodeOptions {
  /** Every msgpack float as a Float, so 2.0 is told from 2. */
  exactFloats?: boolean;
  /** Maps with only string keys as plain objects (default true); otherwise Maps. */
  mapsAsObjects?: boolean;
}

export interface ResultOptions {
  /** Milliseconds to wait at most (TimeoutError after). */
  timeout?: number;
  /** The msgpack bytes instead of the decoded value. */
  raw?: boolean;
  /** Floats as Float. */
  exactFloats?: boolean;
}

export interface TaskOptions {
  /** The task's key (default: `{function}-{client seed}-{n}`). */
  key?: string;
  /** Keyword arguments. */
  kwargs?: { [name: string]: Value };
  /** Higher runs first (default 0). */
  priority?: number;
  /** Reruns after an error before reporting it. */
  retries?: number;
  /** Resources one run holds, e.g. {GPU: 1}. */
  resources?: Record<string, number>;
  /** Names or data addresses of the only workers allowed to run it. */
  workers?: string[];
}

export interface ConnectOptions {
  /** Name given in the handshake. */
  name?: string;
  /** Milliseconds to connect and handshake (default 10000). */
  timeout?: number;
  /**
   * The cluster's credentials file (false: none). Default: DASK_CREDENTIALS,
   * else the file dask-scheduler created on this machine.
   */
  credentials?: string | false;
  /**
   * Milliseconds to connect again after losing a scheduler that keeps a
   * journal, resuming the session (default 60000; 0: never).
   */
  reconnectTimeout?: number;
  /** The largest message of a graph sent as several (over 128 KiB of encoding; default 4 MiB). */
  submitPartBytes?: number;
  /** TLS for a tls:// address: the cluster's CA (and a certificate, for a scheduler that requires one). */
  tls?: TlsFiles;
}

/** Dask's TLS files (`--tls-ca-file`, `--tls-cert`, `--tls-key`); the key may be appended to certFile. */
export interface TlsFiles {
  caFile?: string;
  certFile?: string;
  keyFile?: string;
}

export interface WorkerInfo {
  id: number;
  name: string;
  address: string;
  nthreads: number;
  memory_limit?: number;
  resources: Record<string, number>;
  functions: string[];
  processing: number;
  stored_keys: number;
  stored_bytes: number;
}

export interface ClusterInfo {
  workers: WorkerInfo[];
  /** Number of tasks in each scheduler state. */
  tasks: Record<string, number>;
  clients: number;
}

/** Why a pending key cannot progress (dask/1.1 `key-waiting`). */
export interface Waiting {
  /** no-workers, no-function, no-allowed-worker, no-resources (or a later code). */
  reason: string;
  message: string;
  /** The task that cannot run, when not the key's own. */
  task: string | null;
}

/** Counts of a set of futures by state. */
export interface Progress {
  total: number;
  finished: number;
  erred: number;
  /** Cancelled, lost, failed or released. */
  failed: number;
  pending: number;
  /** Pending keys the scheduler said cannot run now. */
  waiting: number;
}

/** A task that waits on the scheduler, and why. */
export interface WaitingKey {
  key: string;
  state: 'waiting' | 'no-worker' | 'queued';
  reason: string;
  message: string;
}

/** A handle to one key's result on the cluster; holds one reference until released. */
export declare class Future {
  readonly key: string;
  readonly client: Client;
  readonly status: Status;
  /** Why the key cannot progress now, when the scheduler said; null otherwise. */
  readonly waiting: Waiting | null;
  done(): boolean;
  /** Resolves to the final status (never rejects, except TimeoutError). */
  wait(options?: { timeout?: number }): Promise<Status>;
  result(options?: ResultOptions & { raw?: false }): Promise<Decoded>;
  result(options: ResultOptions & { raw: true }): Promise<Uint8Array>;
  cancel(options?: { force?: boolean }): void;
  release(): void;
}

/** Futures as they complete, as an async iterator. */
export declare class AsCompleted<T = Future> implements AsyncIterableIterator<T> {
  add(future: Future): void;
  readonly count: number;
  next(): Promise<IteratorResult<T>>;
  return(): Promise<IteratorResult<T>>;
  [Symbol.asyncIterator](): AsyncIterableIterator<T>;
}

export declare class Client {
  static connect(address: string, options?: ConnectOptions): Promise<Client>;
  readonly address: string;
  readonly name: string | null;
  readonly id: number | null;
  readonly connected: boolean;
  readonly lastServerError: string | null;
  submit(fn: string, args?: Value[], options?: TaskOptions): Future;
  map(fn: string, items: Iterable<Value>, options?: Omit<TaskOptions, 'key'>): Future[];
  gather(futures: Future[], options?: ResultOptions): Promise<Decoded[]>;
  gather(future: Future, options?: ResultOptions): Promise<Decoded>;
  asCompleted(futures?: Iterable<Future>, options?: { withResults?: false }): AsCompleted<Future>;
  asCompleted(
    futures: Iterable<Future>,
    options: { withResults: true } & DecodeOptions & { raw?: boolean },
  ): AsCompleted<[Future, Decoded]>;
  cancel(futures: Future | Future[], options?: { force?: boolean }): void;
  release(futures: Future | Future[]): void;
  scatter(values: Value[], options?: { workers?: string[]; broadcast?: boolean }): Promise<Future[]>;
  publishDataset(name: string, futures: Future[], options?: { overwrite?: boolean }): Promise<void>;
  getDataset(name: string): Promise<Future[]>;
  unpublishDataset(name: string): Promise<void>;
  listDatasets(): Promise<string[]>;
  whoHas(futures: Future[]): Promise<Record<string, string[]>>;
  clusterInfo(): Promise<ClusterInfo>;
  /** Calls listener when a held key cannot progress; returns the remover. */
  onWaiting(listener: (key: string, waiting: Waiting) => void): () => void;
  progress(futures: Future[]): Progress;
  waitingKeys(options?: {
    state?: 'waiting' | 'no-worker' | 'queued';
    cursor?: number;
    limit?: number;
  }): Promise<{ tasks: WaitingKey[]; next: number | null }>;
  close(): Promise<void>;
}

export interface WorkerOptions {
  /** Name registered with the scheduler (default js-worker-HOST-PID-N). */
  name?: string;
  /** Runs at once (default 1). */
  nthreads?: number;
  /** Interface the data port listens on (default 127.0.0.1). */
  host?: string;
  resources?: Record<string, number>;
  memoryLimit?: number;
  /** Offer the conformance.* functions (default true). */
  conformance?: boolean;
  /** The cluster's credentials file (false: none), as ConnectOptions.credentials. */
  credentials?: string | false;
  /** TLS: with certFile the data port is tls:// (mutual with caFile); caFile lets it reach a tls:// scheduler and TLS peers. */
  tls?: TlsFiles;
  /**
   * After losing its scheduler, register again (every second, on a new data port, keeping its
   * results for a scheduler restarted on its journal to adopt) for this many ms
   * (default 60000, as dask-worker; 0: end with the connection).
   */
  reconnectTimeout?: number;
}

export interface RegisterOptions {
  /** Parameter names: keyword arguments bind by name. */
  params?: string[];
  /** Floats arrive as Float. */
  exactFloats?: boolean;
}

export type TaskFunction = (...args: any[]) => unknown;

export declare class Worker {
  static start(
    scheduler: string,
    options?: WorkerOptions & { functions?: Record<string, TaskFunction> },
  ): Promise<Worker>;
  constructor(options?: WorkerOptions);
  readonly name: string;
  readonly address: string | null;
  readonly id: number | null;
  readonly functions: string[];
  register(name: string, fn: TaskFunction, options?: RegisterOptions): this;
  start(scheduler: string): Promise<this>;
  /** Resolves when stopped or closed by the scheduler; rejects when the connection is lost and not made again within reconnectTimeout. */
  join(): Promise<void>;
  stop(): Promise<void>;
}

export declare class LocalCluster {
  static start(options?: { workers?: number; threadsPerWorker?: number; binDir?: string }): Promise<LocalCluster>;
  readonly address: string;
  addWorker(options?: { nthreads?: number; name?: string }): Promise<string>;
  client(options?: ConnectOptions): Promise<Client>;
  close(): Promise<void>;
}

/** A task of a graph computed in this process (a graph file's task). */
export interface InProcessTask {
  key: string;
  function: string;
  /** Positional arguments; a TaskRef(key) stands for that task's result. */
  args?: Value[];
  kwargs?: { [name: string]: Value };
  /** Higher runs first among ready tasks (default 0). */
  priority?: number;
  /** Reruns after an error before reporting it. */
  retries?: number;
}

export interface InProcessOptions {
  /** The functions by name: plain, or with the options of Worker.register. */
  functions?:
    | Record<string, TaskFunction | ({ fn: TaskFunction } & RegisterOptions)>
    | Map<string, TaskFunction | ({ fn: TaskFunction } & RegisterOptions)>;
  /** Also offer the conformance.* functions. */
  conformance?: boolean;
  /** Results with floats as Float. */
  exactFloats?: boolean;
}

/**
 * Computes a graph in this process, each task on the calling thread in
 * turn (no scheduler, no worker, no socket); the results of the wanted keys
 * (default: every key no task depends on) in order. Throws RemoteError for
 * the first task that failed, RequestError when the graph is refused.
 */
export declare function computeInProcess(
  graph: { tasks: InProcessTask[]; wanted?: string[] },
  options?: InProcessOptions,
): Decoded[];

export declare class DaskError extends Error {}
export declare class RemoteError extends DaskError {
  readonly key: string;
  readonly remoteType: string;
  readonly remoteMessage: string;
  readonly traceback: string;
  readonly causeKey: string | null;
}
export declare class CancelledError extends DaskError {
  readonly key: string;
}
export declare class LostError extends DaskError {
  readonly key: string;
}
export declare class RequestError extends DaskError {
  readonly code: number | null;
  readonly codeName: string | null;
  readonly key: string | null;
}
export declare class ConnectionError extends DaskError {}
export declare class TimeoutError extends DaskError {}

export declare function encode(value: Value): Uint8Array;
export declare function decode(bytes: Uint8Array, options?: DecodeOptions): Decoded;

export declare class Float {
  constructor(value: number);
  readonly value: number;
  valueOf(): number;
}
export declare class Ext {
  constructor(type: number, data: Uint8Array);
  readonly type: number;
  readonly data: Uint8Array;
}
export declare class TaskRef {
  constructor(key: string);
  readonly key: string;
}

/** A codec refusal with the dask/1 error code a receiver would send. */
export declare class CodecError extends Error {
  readonly code: number;
  readonly codeName: string;
}
/** One of dask-core's codec operations (see sdk-js/src/codec.rs). */
export declare function codec(op: string, input: Uint8Array | string): Uint8Array;
