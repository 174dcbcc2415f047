/**
 * connect(): the client store over Bun sockets and the process's own mapped
 * segment (or the agent's shared one; connectLender also lends its cached
 * grants to the agent's C program). The store itself is session.ts.
 */
import { DEFAULT_SERVERS } from "../constants";
import { PStoreError } from "../errors";
import { MappedSegment } from "../memory";
import { bunHost, readCa } from "./bun_host";
import type { SegmentMapper } from "./host";
import type { GrantLender } from "./host";
import { ClientStore } from "./session";
import type { ConnectOptions, Store } from "./types";
import { reportUncaughtPStoreErrors } from "./uncaught";

export function resolveServers(servers?: string | string[]): string[] {
  const raw = servers ?? process.env.PSTORE_SERVERS ?? DEFAULT_SERVERS;
  const list = (Array.isArray(raw) ? raw : raw.split(",")).map((s) => s.trim()).filter((s) => s.length > 0);
  if (list.length === 0) throw new PStoreError("EINVAL", "no server address given (--servers or PSTORE_SERVERS)");
  return list;
}

export type { GrantLender, SegmentMapper };

/**
 * `mapSegment` is the agent's seam (src/agent/): it maps a segment shared with
 * the C program it serves instead of the client's own anonymous memory.
 */
export async function connect(options: ConnectOptions = {}, mapSegment: SegmentMapper = MappedSegment.map): Promise<Store> {
  reportUncaughtPStoreErrors();
  const store = new ClientStore({ ...options, servers: resolveServers(options.servers) }, hostFor(options), mapSegment);
  await store.open();
  return store;
}

function hostFor(options: ConnectOptions) {
  const secret = options.secret ?? (process.env.PSTORE_SECRET || undefined);
  const tlsCa = readCa(options.tlsCa ?? (process.env.PSTORE_TLS_CA || undefined));
  return bunHost(secret, tlsCa, options.shareConnections !== false);
}

/** As connect, for the agent; `onRecalling(name)` runs before the store answers a recall of name's grant. */
export async function connectLender(options: ConnectOptions, mapSegment: SegmentMapper, onRecalling: (name: string) => void): Promise<Store & GrantLender> {
  reportUncaughtPStoreErrors();
  const store = new ClientStore({ ...options, servers: resolveServers(options.servers) }, hostFor(options), mapSegment, null, onRecalling);
  await store.open();
  return store;
}
