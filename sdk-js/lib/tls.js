// TLS for dask/1 connections in Node, as dask-rs's net/ does it
// (net/src/tls.rs): an address `tls://HOST:PORT` is TLS 1.3 from its first
// byte; Dask's three files (a CA, a certificate, its key; the key may be
// appended to the certificate file, as `dask-rs credentials tls` writes
// it); a connector checks the acceptor's certificate against the CA and
// not its host name (a cluster's CA signs only the cluster's
// certificates); a listener with a CA requires connectors' certificates
// (mutual TLS). Each connection's channel binding (RFC 9266
// `tls-exporter`) goes to the wasm session, so the dask/1.1 proofs are
// bound to that TLS session.

import { readFileSync } from 'node:fs';
import tls from 'node:tls';

import { DaskError } from './errors.js';

/** RFC 9266's exporter label, and the binding's length (core's auth.rs). */
const CHANNEL_BINDING_LABEL = 'EXPORTER-Channel-Binding';
const CHANNEL_BINDING_BYTES = 32;

/** How long a TLS handshake on the data port may take (as dask-rs's). */
export const TLS_HANDSHAKE_TIMEOUT_MS = 10_000;

function read(what, file) {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    throw new DaskError(`${what} ${file}: cannot be read: ${e.message}`);
  }
}

function blocks(text, kind) {
  const re = new RegExp(`-----BEGIN ${kind}-----[\\s\\S]*?-----END ${kind}-----`, 'g');
  return (text.match(re) ?? []).join('\n');
}

/**
 * TLS settings from Dask's files: `{caFile, certFile, keyFile}` (the
 * `tls` option of Client.connect and Worker). Null when none is given.
 * A connector needs `caFile`; a listener needs `certFile` (and its key).
 * @param {{caFile?: string, certFile?: string, keyFile?: string} | null | undefined} files
 * @returns {{ca?: string, cert?: string, key?: string} | null}
 */
export function tlsSettings(files) {
  if (!files) return null;
  const { caFile, certFile, keyFile } = files;
  if (!caFile && !certFile) {
    throw new DaskError('TLS needs caFile (to check peers) and, to listen, certFile (and keyFile)');
  }
  const settings = {};
  if (caFile) {
    settings.ca = blocks(read('tls caFile', caFile), 'CERTIFICATE');
    if (!settings.ca) throw new DaskError(`tls caFile ${caFile} holds no certificate (expected -----BEGIN CERTIFICATE-----)`);
  }
  if (certFile) {
    const text = read('tls certFile', certFile);
    settings.cert = blocks(text, 'CERTIFICATE');
    if (!settings.cert) throw new DaskError(`tls certFile ${certFile} holds no certificate (expected -----BEGIN CERTIFICATE-----)`);
    const keyText = keyFile ? read('tls keyFile', keyFile) : text;
    settings.key = blocks(keyText, '(?:EC |RSA )?PRIVATE KEY');
    if (!settings.key) {
      throw new DaskError(`tls: no private key in ${keyFile ?? certFile} (give keyFile, or append the key to certFile)`);
    }
  }
  return settings;
}

/** Whether `address` is a TLS one (`tls://`). */
export function isTlsAddress(address) {
  return address.startsWith('tls://');
}

/**
 * Opens a TLS connection to {host, port}, checking the acceptor's
 * certificate against the CA (not its name) and presenting this side's
 * certificate when it has one.
 */
export function connectTls(settings, { host, port }) {
  if (!settings?.ca) {
    throw new DaskError('a tls:// address needs the cluster\'s CA certificate (the tls option\'s caFile)');
  }
  return tls.connect({
    host,
    port,
    ca: settings.ca,
    cert: settings.cert,
    key: settings.key,
    minVersion: 'TLSv1.3',
    checkServerIdentity: () => undefined,
  });
}

/**
 * A TLS server for the data port: TLS 1.3, requiring connectors'
 * certificates signed by the CA when there is one. `onSocket` gets each
 * socket once its handshake is done.
 */
export function createTlsServer(settings, onSocket) {
  if (!settings?.cert) throw new DaskError('a TLS data port needs a certificate (the tls option\'s certFile)');
  const server = tls.createServer(
    {
      ca: settings.ca,
      cert: settings.cert,
      key: settings.key,
      requestCert: Boolean(settings.ca),
      rejectUnauthorized: Boolean(settings.ca),
      minVersion: 'TLSv1.3',
      handshakeTimeout: TLS_HANDSHAKE_TIMEOUT_MS,
    },
    onSocket,
  );
  // A peer that fails its handshake is dropped; nothing to do here.
  server.on('tlsClientError', () => {});
  return server;
}

/** The channel binding of a TLS socket whose handshake is done. */
export function channelBinding(socket) {
  return socket.exportKeyingMaterial(CHANNEL_BINDING_BYTES, CHANNEL_BINDING_LABEL);
}

/** One line on a TLS failure, naming the mismatch when a plain peer answered. */
export function explainTlsError(e) {
  const code = e?.code ?? '';
  if (code === 'ERR_SSL_WRONG_VERSION_NUMBER' || code === 'ERR_SSL_PACKET_LENGTH_TOO_LONG' || /wrong version number|packet length too long/.test(e?.message ?? '')) {
    return 'TLS: the peer answered in plain bytes, not TLS: it is probably a plain dask/1 address (connect with tcp://HOST:PORT)';
  }
  if (code === 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' || code === 'SELF_SIGNED_CERT_IN_CHAIN' || code === 'DEPTH_ZERO_SELF_SIGNED_CERT' || code === 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY') {
    return 'TLS: the peer\'s certificate is not signed by the CA this side trusts (check the CA file on both sides)';
  }
  if (code === 'CERT_HAS_EXPIRED') return 'TLS: the peer\'s certificate has expired (make new certificates: dask-rs credentials tls)';
  return e?.message ?? String(e);
}
