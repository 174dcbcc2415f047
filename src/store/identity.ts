/**
 * `identity.json`: what a data dir's data belongs to, written once, after the
 * first recovery that checked out, and compared with the flags at every start.
 * A dir from before the file gets it then, from the flags (its newest
 * checkpoint, if any, was already compared).
 *
 * - The segment size and page size are part of what the log means: replaying
 *   a `create` in a smaller segment refuses it (ENOSPC), in a larger one may
 *   grant what was refused. A server restarted with another --segment-size
 *   served another state from the same log, without a word (a datum missing).
 * - The server's number (its place in --peers) is what the configurations in
 *   `config.json` and the other servers' say about it: under another number
 *   its own last chain would name another server.
 */
import { join } from "node:path";
import { formatBytes } from "../core/names";
import { RecoveryError } from "./errors";
import { loadJsonFile, saveJsonFile } from "./files";
import type { StoreFs } from "./fs";

const FILE = "identity.json";

export interface DataIdentity {
  segmentSize: number;
  pageSize: number;
  /** The server the dir belongs to: its number and the --peers it was given (absent in tests of the disk alone). */
  server?: { id: number; peers: string[] };
}

/** The identity recorded in `dir`, or null when the dir has none (new, or from before the file). */
export function loadIdentity(fs: StoreFs, dir: string): DataIdentity | null {
  const file = join(dir, FILE);
  const fix = "it records the data's segment size and this server's number: with the flags it was made with, remove it and it is written again";
  let parsed: unknown;
  try {
    parsed = loadJsonFile(fs, file);
  } catch (error) {
    throw new RecoveryError(`${(error as Error).message} (${fix})`);
  }
  if (parsed === undefined) return null;
  if (!isIdentity(parsed)) throw new RecoveryError(`${file}: not a segment size, a page size and a server (${fix})`);
  return parsed;
}

function isIdentity(value: unknown): value is DataIdentity {
  const whole = (n: unknown) => Number.isSafeInteger(n) && (n as number) > 0;
  if (typeof value !== "object" || value === null) return false;
  const { segmentSize, pageSize, server } = value as DataIdentity;
  if (!whole(segmentSize) || !whole(pageSize)) return false;
  if (server === undefined) return true;
  return typeof server === "object" && server !== null && whole(server.id) && Array.isArray(server.peers) && server.peers.every((peer) => typeof peer === "string");
}

/** Throws a RecoveryError saying which flag to change when `dir`'s data is not what `wanted` says. */
export function checkIdentity(recorded: DataIdentity | null, dir: string, wanted: DataIdentity): void {
  if (recorded === null) return;
  if (recorded.segmentSize !== wanted.segmentSize || recorded.pageSize !== wanted.pageSize) {
    const pages = recorded.pageSize === wanted.pageSize ? "" : ` and pages of ${recorded.pageSize} bytes, not ${wanted.pageSize}`;
    throw new RecoveryError(
      `${dir} holds the data of a segment of ${formatBytes(recorded.segmentSize)}${pages}, not ${formatBytes(wanted.segmentSize)}: ` +
        `start with --segment-size ${formatBytes(recorded.segmentSize).replace(" ", "")} (a data dir keeps the segment size it was created with, ` +
        "and every server of a cluster has the same)",
    );
  }
  const [was, now] = [recorded.server, wanted.server];
  if (was && now && was.id !== now.id) {
    throw new RecoveryError(
      `${dir} holds the data of server ${was.id} (${was.peers[was.id - 1] ?? "?"} in the --peers it was created with, ${was.peers.join(",")}); ` +
        `here --peers makes this server ${now.id}: give every server the same --peers, in the same order (a server's number is its place in the list)`,
    );
  }
}

/** Whether `dir`'s record lacks what `wanted` adds (none yet, or no server): then it is saved once recovery checked out. */
export function identityToRecord(recorded: DataIdentity | null, wanted: DataIdentity): boolean {
  return recorded === null || (recorded.server === undefined && wanted.server !== undefined);
}

export function saveIdentity(fs: StoreFs, dir: string, identity: DataIdentity): void {
  const { segmentSize, pageSize, server } = identity;
  saveJsonFile(fs, dir, FILE, server ? { segmentSize, pageSize, server: { id: server.id, peers: server.peers } } : { segmentSize, pageSize });
}
