// dask/1 addresses: `tcp://HOST:PORT`, or `tls://HOST:PORT` for TLS (IPv6
// hosts in brackets).

/**
 * @param {string} address
 * @returns {{host: string, port: number, tls: boolean}}
 */
export function parseAddress(address) {
  if (typeof address !== 'string') throw new TypeError(`an address is a string like tcp://127.0.0.1:8796, got ${typeof address}`);
  const tls = address.startsWith('tls://');
  const rest = address.startsWith('tcp://') || tls ? address.slice(6) : address;
  const m = /^(?:\[([^\]]+)\]|([^:/[\]]+)):(\d{1,5})$/.exec(rest);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port < 1 || port > 65535) {
    throw new TypeError(`not an address of the form tcp://HOST:PORT or tls://HOST:PORT: ${JSON.stringify(address)}`);
  }
  return { host: m[1] ?? m[2], port, tls };
}

/** `tcp://HOST:PORT` (or `tls://` with `scheme` 'tls') for a host and port. */
export function formatAddress(host, port, scheme = 'tcp') {
  return host.includes(':') ? `${scheme}://[${host}]:${port}` : `${scheme}://${host}:${port}`;
}
