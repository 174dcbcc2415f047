/** Small durable-file helpers shared by the log and the checkpoints. */
import { closeSync, fsyncSync, openSync, writeSync } from "node:fs";

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
