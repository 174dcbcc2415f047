/** Small durable-file helpers shared by the log and the checkpoints. */
import { closeSync, fsyncSync, openSync, writeSync, writevSync } from "node:fs";

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
