/** The store's file system on the machine's own (node:fs, the flock of lock.ts). */
import {
  closeSync,
  existsSync,
  fdatasyncSync,
  fsyncSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  statfsSync,
  unlinkSync,
  writeSync,
  writevSync,
} from "node:fs";
import { open, rm } from "node:fs/promises";
import { type AsyncFile, LOG_SIZES, type OpenFlags, type StoreFs, type StoreIo } from "./fs";
import { lockDataDir } from "./lock";

export const nodeFs: StoreFs = {
  open: (path: string, flags: OpenFlags) => openSync(path, flags),
  close: (fd) => closeSync(fd),
  write: (fd, bytes, offset, length, position) => writeSync(fd, bytes, offset, length, position),
  writev: (fd, parts, position) => writevSync(fd, parts, position),
  datasync: (fd) => fdatasyncSync(fd),
  truncate: (fd, length) => ftruncateSync(fd, length),
  readFile: (path) => new Uint8Array(readFileSync(path)),
  readdir: (dir) => readdirSync(dir),
  rename: (from, to) => renameSync(from, to),
  unlink: (path) => unlinkSync(path),
  remove: (path) => rmSync(path, { force: true }),
  // On the I/O threads; an error leaves the file for the next start's cleanup.
  removeLater: (path) => void rm(path, { force: true }).catch(() => {}),
  exists: (path) => existsSync(path),
  size: (path) => statSync(path).size,
  mkdirs: (dir) => {
    mkdirSync(dir, { recursive: true });
  },
  isDirectory: (path) => statSync(path).isDirectory(),
  syncDirectory: (dir) => {
    const fd = openSync(dir, "r");
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  },
  freeBytes: (dir) => {
    const stats = statfsSync(dir);
    return stats.bavail * stats.bsize;
  },
  lock: (dir) => lockDataDir(dir),
  openAsync: async (path, flags): Promise<AsyncFile> => {
    const handle = await open(path, flags);
    return {
      write: async (bytes, offset, length, position) => (await handle.write(bytes, offset, length, position)).bytesWritten,
      truncate: (length) => handle.truncate(length),
      datasync: () => handle.datasync(),
      close: () => handle.close(),
    };
  },
};

/** A data dir on this machine, with the log's production segment sizes. */
export const NODE_IO: StoreIo = { fs: nodeFs, logSizes: LOG_SIZES };
