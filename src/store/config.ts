/**
 * The last chain configuration a server knew, in `config.json` (written
 * atomically). After an outage a server waits for the servers of that chain
 * before forming a new one: they may hold updates it lacks.
 *
 * With --quorum majority the same file keeps the server's vote as a Paxos
 * acceptor of configurations (its promise and its last accepted proposal),
 * written and synced before the promise or acceptance is sent: an acceptor
 * that forgot its vote at a restart could accept two configurations built on
 * the same one, and two chains would serve.
 *
 * In the default mode it also keeps `bootPeers`, the servers heard while not serving since
 * the configuration was adopted (core/replica_shared.ts): the next boot waits for them too.
 * A new configuration replaces them.
 */
import { join } from "node:path";
import type { ChainConfig, Vote } from "../core";
import { RecoveryError } from "./errors";
import { loadJsonFile, saveJsonFile } from "./files";
import type { StoreFs } from "./fs";

const FILE = "config.json";

/** What config.json holds: the configuration (epoch 0 and no chain before the first) and the vote, if any. */
export interface SavedConfig {
  config: ChainConfig;
  vote: Vote | null;
  bootPeers: number[];
}

export function saveConfig(fs: StoreFs, dir: string, saved: SavedConfig): void {
  const body: Record<string, unknown> = { epoch: saved.config.epoch, chain: saved.config.chain };
  if (saved.vote) body.vote = saved.vote;
  if (saved.bootPeers.length > 0) body.bootPeers = saved.bootPeers;
  saveJsonFile(fs, dir, FILE, body);
}

export function loadConfig(fs: StoreFs, dir: string): SavedConfig | null {
  const file = join(dir, FILE);
  const parsed = loadJsonFile(fs, file);
  if (parsed === undefined) return null;
  const saved = parsed as ChainConfig & { vote?: unknown; bootPeers?: unknown };
  const valid = typeof saved === "object" && saved !== null && isEpoch(saved.epoch) && isChain(saved.chain);
  if (!valid) throw new RecoveryError(`${file}: not a chain configuration`);
  if (saved.vote !== undefined && !isVote(saved.vote)) throw new RecoveryError(`${file}: "vote" is not a promise and an accepted proposal`);
  if (saved.bootPeers !== undefined && !isChain(saved.bootPeers)) throw new RecoveryError(`${file}: "bootPeers" is not a list of server ids`);
  const bootPeers = (saved.bootPeers as number[] | undefined) ?? [];
  return { config: { epoch: saved.epoch, chain: saved.chain }, vote: (saved.vote as Vote | undefined) ?? null, bootPeers };
}

function isEpoch(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 0;
}

function isChain(value: unknown): value is number[] {
  return Array.isArray(value) && value.every((id) => Number.isInteger(id) && id > 0);
}

function isVote(value: unknown): value is Vote {
  if (typeof value !== "object" || value === null) return false;
  const vote = value as Vote;
  if (!isEpoch(vote.promised)) return false;
  const a = vote.accepted;
  if (a === null) return true;
  return typeof a === "object" && isEpoch(a.ballot) && isEpoch(a.epoch) && isEpoch(a.baseEpoch) && isChain(a.chain) && typeof a.formed === "boolean";
}
