/**
 * Checkpoints (points de reprise): the whole state at one sequence number in
 * `checkpoint-<seq>.ckpt`, written atomically (temporary file, fsync, rename,
 * fsync of the folder). Layout:
 *   magic (8) | u53 seq | u53 epoch of the update at seq | u53 config epoch
 *   | u53 written at (ms since 1970) | u32 CRC-32 of the payload | payload
 * The payload is a snapshot (src/core/snapshot.ts).
 */
import { join } from "node:path";
import { type StoreState, decodeSnapshot } from "../core";
import { SnapshotError } from "../core/snapshot";
import { Reader, Writer } from "../wire";
import { RecoveryError, readHeader } from "./errors";
import { removeOnFailureAsync, writeFileSynced } from "./files";
import type { StoreFs } from "./fs";

const MAGIC = new TextEncoder().encode("PSCKPT1\n");
const HEADER_BYTES = MAGIC.length + 8 * 4 + 4;
const NAME = /^checkpoint-(\d{16})\.ckpt$/;
/**
 * The oldest checkpoint, pruned, waits under this name to be overwritten by the next one:
 * its pages stay in the page cache, where a new file's would be faulted in afresh (on our
 * VM, ~11 µs a page: a 64 MiB file took 250–360 ms to write new against 5 ms in place).
 */
const SPARE = "checkpoint-spare.tmp";

export interface CheckpointInfo {
  seq: number;
  file: string;
  bytes: number;
}

export interface LoadedCheckpoint {
  state: StoreState;
  seq: number;
  lastEpoch: number;
  configEpoch: number;
  writtenAtMs: number;
}

export function checkpointName(seq: number): string {
  return `checkpoint-${String(seq).padStart(16, "0")}.ckpt`;
}

export function listCheckpoints(fs: StoreFs, dir: string): CheckpointInfo[] {
  return fs
    .readdir(dir)
    .map((name) => ({ name, match: NAME.exec(name) }))
    .filter((entry) => entry.match !== null)
    .map((entry) => {
      const file = join(dir, entry.name);
      return { seq: Number(entry.match![1]), file, bytes: fs.size(file) };
    })
    .sort((a, b) => a.seq - b.seq);
}

/** Writes a snapshot already encoded (src/core/snapshot.ts) as the checkpoint at `seq`. */
export function writeCheckpointBytes(fs: StoreFs, dir: string, seq: number, lastEpoch: number, configEpoch: number, payload: Uint8Array): CheckpointInfo {
  const header = checkpointHeader(seq, lastEpoch, configEpoch, payload);
  const file = join(dir, checkpointName(seq));
  const temporary = `${file}.tmp`;
  const bytes = writeFileSynced(fs, temporary, [header, payload]);
  fs.rename(temporary, file);
  fs.syncDirectory(dir);
  return { seq, file, bytes };
}

/**
 * A checkpoint written from a snapshot's parts as they are produced, on the I/O
 * threads (a block at a time: no copy of the whole state), the CRC computed on
 * the way and the header written last. Renamed into place only if `stillValid()`.
 */
export async function writeCheckpointStreamAsync(
  fs: StoreFs,
  dir: string,
  seq: number,
  lastEpoch: number,
  configEpoch: number,
  parts: Iterable<Uint8Array>,
  stillValid: () => boolean,
): Promise<CheckpointInfo | null> {
  const file = join(dir, checkpointName(seq));
  const temporary = `${file}.tmp`;
  let position = HEADER_BYTES;
  const reused = takeSpare(fs, dir, temporary);
  await removeOnFailureAsync(fs, temporary, async () => {
    const handle = await fs.openAsync(temporary, reused ? "r+" : "w");
    const writeAt = async (bytes: Uint8Array, at: number) => {
      // A write may take less than asked: go on from where it stopped.
      for (let done = 0; done < bytes.length; ) done += await handle.write(bytes, done, bytes.length - done, at + done);
    };
    try {
      let crc = 0;
      for (const part of parts) {
        crc = Bun.hash.crc32(part, crc);
        await writeAt(part, position);
        position += part.length;
      }
      await writeAt(headerWithCrc(seq, lastEpoch, configEpoch, crc), 0);
      if (reused) await handle.truncate(position);
      await handle.datasync();
    } finally {
      await handle.close();
    }
  });
  if (!stillValid()) {
    fs.remove(temporary);
    return null;
  }
  fs.rename(temporary, file);
  fs.syncDirectory(dir);
  return { seq, file, bytes: position };
}

function checkpointHeader(seq: number, lastEpoch: number, configEpoch: number, payload: Uint8Array): Uint8Array {
  return headerWithCrc(seq, lastEpoch, configEpoch, Bun.hash.crc32(payload));
}

function headerWithCrc(seq: number, lastEpoch: number, configEpoch: number, crc: number): Uint8Array {
  return new Writer(HEADER_BYTES).raw(MAGIC).u53(seq).u53(lastEpoch).u53(configEpoch).u53(Date.now()).u32(crc).bytes;
}

export function readCheckpoint(fs: StoreFs, file: string): LoadedCheckpoint {
  const bytes = fs.readFile(file);
  if (bytes.length < HEADER_BYTES || !MAGIC.every((byte, i) => bytes[i] === byte)) {
    throw new RecoveryError(`${file}: not a pstore checkpoint (bad header at offset 0)`);
  }
  const { seq, lastEpoch, configEpoch, writtenAtMs, crc } = readHeader(file, () => {
    const reader = new Reader(bytes, MAGIC.length, HEADER_BYTES);
    return { seq: reader.u53(), lastEpoch: reader.u53(), configEpoch: reader.u53(), writtenAtMs: reader.u53(), crc: reader.u32() };
  });
  const payload = bytes.subarray(HEADER_BYTES);
  if (Bun.hash.crc32(payload) !== crc) {
    throw new RecoveryError(`${file}: checksum mismatch in the payload (offset ${HEADER_BYTES}..${bytes.length}); restore an older checkpoint with \`pstore restore\``);
  }
  let state: StoreState;
  try {
    state = decodeSnapshot(payload);
  } catch (error) {
    if (!(error instanceof SnapshotError)) throw error;
    throw new RecoveryError(`${file}: ${error.message}`);
  }
  if (state.appliedSeq !== seq) throw new RecoveryError(`${file}: header says seq ${seq}, payload ${state.appliedSeq}`);
  return { state, seq, lastEpoch, configEpoch, writtenAtMs };
}

/** Keeps the newest `keep` checkpoints (older recovery lines stay restorable until then). */
export function pruneCheckpoints(fs: StoreFs, dir: string, keep: number): void {
  const all = listCheckpoints(fs, dir);
  dropCheckpoints(fs, dir, all.slice(0, Math.max(0, all.length - keep)));
}

/** Drops every checkpoint but the one at `seq` (a snapshot installed). */
export function dropCheckpointsExcept(fs: StoreFs, dir: string, seq: number): void {
  dropCheckpoints(fs, dir, listCheckpoints(fs, dir).filter((other) => other.seq !== seq));
  // Synced before anything is acknowledged on top of the snapshot: a checkpoint of the old
  // history coming back after a crash would be loaded instead (it is newer by seq).
  fs.syncDirectory(dir);
}

/** Removes `dropped`; the first becomes the next checkpoint's spare if there is none. */
function dropCheckpoints(fs: StoreFs, dir: string, dropped: CheckpointInfo[]): void {
  let spareKept = fs.exists(join(dir, SPARE));
  for (const old of dropped) {
    if (spareKept) fs.unlink(old.file);
    else fs.rename(old.file, join(dir, SPARE));
    spareKept = true;
  }
}

/** Renames the spare, if any, to `temporary`: true if it did. */
function takeSpare(fs: StoreFs, dir: string, temporary: string): boolean {
  try {
    fs.rename(join(dir, SPARE), temporary);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw error;
  }
}

