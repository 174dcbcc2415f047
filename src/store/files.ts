/** Small durable-file helpers shared by the log and the checkpoints. */
import { closeSync, fsyncSync, mkdirSync, openSync, rmSync, statSync, statfsSync, writeSync, writevSync } from "node:fs";
import { RecoveryError } from "./errors";

/** Creates the data dir if needed; a file in its place (or in a parent's) is a clear error, not EEXIST from mkdir. */
export function ensureDirectory(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== "EEXIST" && code !== "ENOTDIR") throw error;
    let isFile = false;
    try {
      isFile = !statSync(dir).isDirectory();
    } catch {
      // stat fails too: a parent is a file.
    }
    throw new RecoveryError(isFile ? `${dir} is not a directory (a file is in the way)` : `${dir}: a parent of it is not a directory`);
  }
}

/** writeSync may write less than asked: loop until all is written (at `position`, or appending). */
export function writeAll(fd: number, bytes: Uint8Array, position?: number): void {
  let offset = 0;
  while (offset < bytes.length) {
    const at = position === undefined ? null : position + offset;
    offset += writeSync(fd, bytes, offset, bytes.length - offset, at);
  }
}

/** fsync of a folder, so a file created or renamed in it survives a crash. */
export function syncDirectory(dir: string): void {
  const fd = openSync(dir, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Writes `parts` one after the other from `position`, with as few system calls as the kernel allows. */
export function writeAllParts(fd: number, parts: Uint8Array[], position: number): void {
  let index = 0;
  let skip = 0; // bytes of parts[index] already written
  let at = position;
  while (index < parts.length) {
    const batch = parts.slice(index, index + 512);
    if (skip > 0) batch[0] = batch[0]!.subarray(skip);
    let written = writevSync(fd, batch, at);
    at += written;
    while (index < parts.length && written >= parts[index]!.length - skip) {
      written -= parts[index]!.length - skip;
      skip = 0;
      index++;
    }
    skip += written;
  }
}

/** The disk (or the user's quota) is full. */
export function isNoSpace(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | null)?.code;
  return code === "ENOSPC" || code === "EDQUOT";
}

/** Runs `write`, which creates `file`; if it throws, the partial file is removed: a full disk leaves no half-written file. */
export function removeOnFailure<T>(file: string, write: () => T): T {
  try {
    return write();
  } catch (error) {
    rmSync(file, { force: true });
    throw error;
  }
}

export async function removeOnFailureAsync<T>(file: string, write: () => Promise<T>): Promise<T> {
  try {
    return await write();
  } catch (error) {
    rmSync(file, { force: true });
    throw error;
  }
}

/** Bytes an unprivileged writer may still use on the file system of `dir`. */
export function freeBytes(dir: string): number {
  const stats = statfsSync(dir);
  return stats.bavail * stats.bsize;
}
