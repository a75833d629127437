// Errors a cluster gives back, as Error subclasses. Every one is a
// DaskError, so `catch (e) { if (e instanceof DaskError) ... }` catches
// them all.

/** Base class of every error this package raises about the cluster. */
export class DaskError extends Error {
  constructor(message, options) {
    super(message, options);
    this.name = this.constructor.name;
  }
}

/**
 * A task raised an error on a worker (or a task it depends on did).
 * `remoteType` and `remoteMessage` are the worker's error type and
 * message (e.g. "ZeroDivisionError", "division by zero").
 */
export class RemoteError extends DaskError {
  constructor({ key, errorType, message, traceback = '', cause = null }) {
    super(`${errorType}: ${message}`);
    this.key = key;
    this.remoteType = errorType;
    this.remoteMessage = message;
    this.traceback = traceback;
    /** The key whose task raised it, when it is a dependency's error. */
    this.causeKey = cause;
  }
}

/** The key was cancelled (by this client, or by another with force). */
export class CancelledError extends DaskError {
  constructor(key) {
    super(`key ${key} was cancelled`);
    this.key = key;
  }
}

/** The key's result is gone and cannot be recomputed. */
export class LostError extends DaskError {
  constructor(key, message) {
    super(`key ${key} was lost: ${message}`);
    this.key = key;
  }
}

/**
 * The scheduler refused a request (unknown key, duplicate key, no workers,
 * unknown dataset...). `code` is the dask/1 error code, `codeName` its
 * name (e.g. 4004, "unknown-dataset").
 */
export class RequestError extends DaskError {
  constructor({ code = null, code_name = null, message }, key = null) {
    super(code_name ? `${code_name}: ${message}` : message);
    this.code = code;
    this.codeName = code_name;
    this.key = key;
  }
}

/** The connection to the scheduler is closed, failed, or never opened. */
export class ConnectionError extends DaskError {}

/** A wait passed its time limit. */
export class TimeoutError extends DaskError {}

/**
 * The error a key's final state stands for (null when it finished).
 * @param {string} key
 * @param {{state: string, [k: string]: unknown}} info  a key event from wasm
 */
export function errorOfState(key, info) {
  switch (info.state) {
    case 'finished':
      return null;
    case 'erred':
      return new RemoteError({
        key,
        errorType: info.error_type,
        message: info.message,
        traceback: info.traceback,
        cause: info.cause ?? null,
      });
    case 'cancelled':
      return new CancelledError(key);
    case 'lost':
      return new LostError(key, info.message);
    case 'failed':
      return info.code == null ? new ConnectionError(info.message) : new RequestError(info, key);
    case 'released':
      return new DaskError(`key ${key} is not held by this client (released)`);
    default:
      return new DaskError(`key ${key} is ${info.state}`);
  }
}
