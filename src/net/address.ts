/** "host:port" parsing shared by the server's peers and the client. */
export function splitAddress(address: string): { host: string; port: number } {
  const colon = address.lastIndexOf(":");
  const host = address.slice(0, colon);
  const port = Number(address.slice(colon + 1));
  if (colon <= 0 || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`"${address}" is not host:port`);
  }
  return { host, port };
}

/** "127.0.0.1:7401-7403,10.0.0.1:7401": consecutive ports of one host as a range, for messages. */
export function formatAddresses(addresses: string[]): string {
  const parsed = addresses.map((address) => {
    const colon = address.lastIndexOf(":");
    return { address, host: address.slice(0, colon), port: Number(address.slice(colon + 1)) };
  });
  const parts: string[] = [];
  for (let i = 0; i < parsed.length; ) {
    let end = i;
    while (end + 1 < parsed.length && parsed[end + 1]!.host === parsed[i]!.host && parsed[end + 1]!.port === parsed[end]!.port + 1) end++;
    parts.push(end > i ? `${parsed[i]!.address}-${parsed[end]!.port}` : parsed[i]!.address);
    i = end + 1;
  }
  return parts.join(",");
}
