/**
 * The last chain configuration a server knew, in `config.json` (written
 * atomically). After an outage a server waits for the servers of that chain
 * before forming a new one: they may hold updates it lacks.
 */
import { closeSync, existsSync, fdatasyncSync, openSync, readFileSync, renameSync } from "node:fs";
import { join } from "node:path";
import type { ChainConfig } from "../core";
import { RecoveryError } from "./errors";
import { syncDirectory, writeAll } from "./files";

const FILE = "config.json";

export function saveConfig(dir: string, config: ChainConfig): void {
  const file = join(dir, FILE);
  const temporary = `${file}.tmp`;
  const fd = openSync(temporary, "w");
  try {
    writeAll(fd, new TextEncoder().encode(`${JSON.stringify({ epoch: config.epoch, chain: config.chain })}\n`));
    fdatasyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(temporary, file);
  syncDirectory(dir);
}

export function loadConfig(dir: string): ChainConfig | null {
  const file = join(dir, FILE);
  if (!existsSync(file)) return null;
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, "utf8"));
  } catch (error) {
    throw new RecoveryError(`${file}: not valid JSON (${(error as Error).message})`);
  }
  const config = parsed as ChainConfig;
  const valid =
    typeof config === "object" &&
    config !== null &&
    Number.isSafeInteger(config.epoch) &&
    config.epoch >= 0 &&
    Array.isArray(config.chain) &&
    config.chain.every((id) => Number.isInteger(id) && id > 0);
  if (!valid) throw new RecoveryError(`${file}: not a chain configuration`);
  return { epoch: config.epoch, chain: config.chain };
}
