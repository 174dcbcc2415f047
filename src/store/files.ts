/** Small durable-file helpers shared by the log and the checkpoints. */
import { join } from "node:path";
import type { StoreFs } from "./fs";
import { RecoveryError } from "./errors";

/** Creates the data dir if needed; a file in its place (or in a parent's) is a clear error, not EEXIST from mkdir. */
export function ensureDirectory(fs: StoreFs, dir: string): void {
  try {
    fs.mkdirs(dir);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== "EEXIST" && code !== "ENOTDIR") throw error;
    let isFile = false;
    try {
      isFile = !fs.isDirectory(dir);
    } catch {
      // stat fails too: a parent is a file.
    }
    throw new RecoveryError(isFile ? `${dir} is not a directory (a file is in the way)` : `${dir}: a parent of it is not a directory`);
  }
}

/** A write may write less than asked: loop until all is written, from `position`. */
export function writeAll(fs: StoreFs, fd: number, bytes: Uint8Array, position: number): void {
  let offset = 0;
  while (offset < bytes.length) offset += fs.write(fd, bytes, offset, bytes.length - offset, position + offset);
}

/** Writes `parts` one after the other from `position`, with as few system calls as the kernel allows. */
export function writeAllParts(fs: StoreFs, fd: number, parts: Uint8Array[], position: number): void {
  let index = 0;
  let skip = 0; // bytes of parts[index] already written
  let at = position;
  while (index < parts.length) {
    const batch = parts.slice(index, index + 512);
    if (skip > 0) batch[0] = batch[0]!.subarray(skip);
    let written = fs.writev(fd, batch, at);
    at += written;
    while (index < parts.length && written >= parts[index]!.length - skip) {
      written -= parts[index]!.length - skip;
      skip = 0;
      index++;
    }
    skip += written;
  }
}

/** Writes `bytes` as the whole of a new `file`, synced (not yet named durably: sync its folder). */
export function writeFileSynced(fs: StoreFs, file: string, parts: Uint8Array[]): number {
  return removeOnFailure(fs, file, () => {
    const fd = fs.open(file, "w");
    try {
      let position = 0;
      for (const part of parts) {
        writeAll(fs, fd, part, position);
        position += part.length;
      }
      fs.datasync(fd);
      return position;
    } finally {
      fs.close(fd);
    }
  });
}

/** Replaces `dir`/`name` with `value` as JSON, whole or not at all: a synced temporary file renamed over it, the folder synced. */
export function saveJsonFile(fs: StoreFs, dir: string, name: string, value: unknown): void {
  const file = join(dir, name);
  const temporary = `${file}.tmp`;
  writeFileSynced(fs, temporary, [new TextEncoder().encode(`${JSON.stringify(value)}\n`)]);
  fs.rename(temporary, file);
  fs.syncDirectory(dir);
}

/** The JSON in `file`, or undefined when there is no such file; not JSON is a RecoveryError naming the file. */
export function loadJsonFile(fs: StoreFs, file: string): unknown {
  if (!fs.exists(file)) return undefined;
  try {
    return JSON.parse(new TextDecoder().decode(fs.readFile(file)));
  } catch (error) {
    throw new RecoveryError(`${file}: not valid JSON (${(error as Error).message})`);
  }
}

/** The disk (or the user's quota) is full. */
export function isNoSpace(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | null)?.code;
  return code === "ENOSPC" || code === "EDQUOT";
}

/** Runs `write`, which creates `file`; if it throws, the partial file is removed: a full disk leaves no half-written file. */
export function removeOnFailure<T>(fs: StoreFs, file: string, write: () => T): T {
  try {
    return write();
  } catch (error) {
    fs.remove(file);
    throw error;
  }
}

export async function removeOnFailureAsync<T>(fs: StoreFs, file: string, write: () => Promise<T>): Promise<T> {
  try {
    return await write();
  } catch (error) {
    fs.remove(file);
    throw error;
  }
}
