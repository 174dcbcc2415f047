/**
 * The file system the store writes through: the real one (node_fs.ts) for servers, and an
 * in-memory one with crash semantics (src/sim/memory_fs.ts) for the simulator, which so runs
 * this folder's log, checkpoints and recovery as users run them. Only what the store needs,
 * in the terms of POSIX: a write or a rename is in the system's cache until a sync makes it
 * durable (`datasync` for a file's data, `syncDirectory` for names in a folder). Errors carry
 * node's `code` (ENOENT, ENOSPC, …).
 */

/** "r": read (or sync); "r+": write in place; "w": created, or emptied. */
export type OpenFlags = "r" | "r+" | "w";

export interface StoreFs {
  open(path: string, flags: OpenFlags): number;
  close(fd: number): void;
  /** Writes `length` bytes of `bytes` from `offset`, at `position`; returns how many it wrote (maybe fewer). */
  write(fd: number, bytes: Uint8Array, offset: number, length: number, position: number): number;
  /** Writes `parts` one after the other from `position`; returns how many bytes it wrote (maybe fewer). */
  writev(fd: number, parts: Uint8Array[], position: number): number;
  datasync(fd: number): void;
  truncate(fd: number, length: number): void;
  readFile(path: string): Uint8Array;
  readdir(dir: string): string[];
  rename(from: string, to: string): void;
  unlink(path: string): void;
  /** Removes a file if there is one. */
  remove(path: string): void;
  /**
   * Removes a file no name of the store's leads to any more, off the main thread where it can:
   * unlinking a 64 MiB segment whose pages are cached held a server's event loop 30–90 ms.
   * One left by a crash is the caller's to remove at the next start.
   */
  removeLater(path: string): void;
  exists(path: string): boolean;
  size(path: string): number;
  /** Creates `dir` and its missing parents. */
  mkdirs(dir: string): void;
  isDirectory(path: string): boolean;
  /** fsync of a folder: the names created, renamed or removed in it survive a crash. */
  syncDirectory(dir: string): void;
  /** Bytes an unprivileged writer may still use on the file system of `dir`. */
  freeBytes(dir: string): number;
  /** Takes the data dir for this process (one server per dir); returns what gives it back. */
  lock(dir: string): () => void;
  /** A file written off the main thread (the I/O threads): background checkpoints and spares. */
  openAsync(path: string, flags: "r+" | "w"): Promise<AsyncFile>;
}

export interface AsyncFile {
  write(bytes: Uint8Array, offset: number, length: number, position: number): Promise<number>;
  truncate(length: number): Promise<void>;
  datasync(): Promise<void>;
  close(): Promise<void>;
}

/** What a data dir is kept on: the real file system (NODE_IO), or the simulator's. */
export interface StoreIo {
  fs: StoreFs;
  logSizes: LogSizes;
  /** Runs `fn` every `ms` until the function returned is called (--fsync batch's syncs); by default a timer. */
  repeat?(ms: number, fn: () => void): () => void;
  /** Milliseconds on a monotonic clock (free-space checks, checkpoint retries); by default performance.now(). */
  now?(): number;
}

/** How large the log's segments are: servers use LOG_SIZES; the simulator, small ones. */
export interface LogSizes {
  /** A segment made while no zero-filled spare is ready (the first, or after a full disk). */
  first: number;
  segment: number;
}

export const LOG_SIZES: LogSizes = { first: 4 * 1024 * 1024, segment: 64 * 1024 * 1024 };
