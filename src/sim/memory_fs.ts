/**
 * A file system in memory with the crash semantics the store is written for, so the
 * simulator runs src/store itself (its log, checkpoints and recovery), not a model of it.
 *
 * - A killed process loses nothing it wrote: the system's cache survives it.
 * - A power loss keeps, of each file's data, what its last `datasync` made durable, and may
 *   keep some of what was written since: a prefix, or any of its 64-byte blocks (writeback
 *   goes on in the background, in any order: a record can be torn, or half there with a later
 *   one whole, and recovery must cut the log there).
 * - Names (create, rename, unlink) are journalled in order, as ext4 does: a `syncDirectory`
 *   commits all so far; a power loss keeps a prefix of those made since.
 * - What runs on the I/O threads (`openAsync`) completes at a later simulated event, so a
 *   crash can fall between two steps of a background checkpoint or spare segment.
 * - A disk can fill (capacityBytes): a write that needs new blocks writes what fits, then
 *   fails with ENOSPC, as the system's does. A file grown by truncate is a hole until written
 *   (--fsync off's log segments), so writes into it can fail too.
 */
import type { AsyncFile, OpenFlags, StoreFs } from "../store/fs";
import type { Rng } from "./prng";

/** The unit of space a file takes: a hole (a file grown by truncate) takes none until written. */
const BLOCK_BYTES = 4096;

class Inode {
  bytes = new Uint8Array(0);
  length = 0;
  /** The data as of the last datasync. */
  durable = new Uint8Array(0);
  /** Blocks that hold data (written): what the file takes of the disk. */
  blocks = new Set<number>();

  write(source: Uint8Array, position: number): void {
    for (let block = Math.floor(position / BLOCK_BYTES); block * BLOCK_BYTES < position + source.length; block++) this.blocks.add(block);
    this.fill(source, position);
  }

  private fill(source: Uint8Array, position: number): void {
    const end = position + source.length;
    if (end > this.bytes.length) {
      const grown = new Uint8Array(Math.max(end, this.bytes.length * 2));
      grown.set(this.bytes.subarray(0, this.length));
      this.bytes = grown;
    }
    if (position > this.length) this.bytes.fill(0, this.length, position);
    this.bytes.set(source, position);
    this.length = Math.max(this.length, end);
  }

  /** Longer: a hole (zeros that take no space); shorter: the blocks past the end are given back. */
  truncate(length: number): void {
    if (length > this.length) this.fill(new Uint8Array(length - this.length), this.length);
    this.length = length;
    for (const block of this.blocks) if (block * BLOCK_BYTES >= length) this.blocks.delete(block);
  }

  get data(): Uint8Array {
    return this.bytes.subarray(0, this.length);
  }

  sync(): void {
    this.durable = this.data.slice();
  }

  /**
   * After a power loss: the durable data, and of what was written since either nothing, a
   * prefix (writeback in order: a torn record), or any of its blocks (writeback in any order:
   * a record half there with a later one whole), each drawn from `rng`.
   */
  survive(rng: Rng): void {
    const current = this.data;
    const durable = this.durable;
    let kept = durable;
    const writeback = rng.int(3);
    if (writeback === 1) {
      const cut = rng.int(Math.max(current.length, durable.length) + 1);
      const length = Math.max(durable.length, Math.min(cut, current.length));
      kept = new Uint8Array(length);
      kept.set(durable);
      kept.set(current.subarray(0, Math.min(cut, length)));
    } else if (writeback === 2) {
      const length = rng.chance(0.5) ? current.length : durable.length;
      kept = new Uint8Array(length);
      kept.set(durable.subarray(0, Math.min(durable.length, length)));
      for (let block = 0; block < Math.min(length, current.length); block += WRITEBACK_BLOCK_BYTES) {
        const written = current.subarray(block, Math.min(block + WRITEBACK_BLOCK_BYTES, length));
        if (!sameBytes(written, kept, block) && rng.chance(0.5)) kept.set(written, block);
      }
    }
    this.bytes = kept.slice();
    this.length = kept.length;
    this.durable = kept.slice();
    this.blocks = new Set(Array.from({ length: Math.ceil(kept.length / BLOCK_BYTES) }, (_, block) => block));
  }
}

/** What a power loss keeps or loses of unsynced data in any order (finer than a disk's sectors: harsher). */
const WRITEBACK_BLOCK_BYTES = 64;

function sameBytes(bytes: Uint8Array, other: Uint8Array, at: number): boolean {
  for (let i = 0; i < bytes.length; i++) if (bytes[i] !== other[at + i]) return false;
  return true;
}

type NameOp = { type: "link"; path: string; inode: Inode } | { type: "unlink"; path: string } | { type: "rename"; from: string; to: string };

function fsError(code: string, message: string): Error {
  return Object.assign(new Error(`${code}: ${message}`), { code });
}

function parentOf(path: string): string {
  const slash = path.lastIndexOf("/");
  return slash <= 0 ? "/" : path.slice(0, slash);
}

export class MemoryFs implements StoreFs {
  private names = new Map<string, Inode>();
  /** The names as of the last journal commit, and the operations since, in order. */
  private durableNames = new Map<string, Inode>();
  private journal: NameOp[] = [];
  private readonly dirs = new Set<string>(["/"]);
  private fds = new Map<number, Inode>();
  private nextFd = 3;
  private locked = new Set<string>();
  /** How much the disk holds: a full disk makes writes that grow a file fail (ENOSPC). */
  capacityBytes = Number.POSITIVE_INFINITY;

  constructor(
    /** Runs `fn` at a later simulated event of this server's current process (never, if it dies first). */
    private readonly later: (fn: () => void) => void,
  ) {}

  /** The same files and names (durable or not), for another process: the recovery a restart would run. */
  copy(): MemoryFs {
    const copy = new MemoryFs(() => {});
    const copies = new Map<Inode, Inode>();
    const copyOf = (inode: Inode) => {
      let twin = copies.get(inode);
      if (!twin) {
        twin = new Inode();
        twin.bytes = inode.bytes.slice();
        twin.length = inode.length;
        twin.durable = inode.durable.slice();
        twin.blocks = new Set(inode.blocks);
        copies.set(inode, twin);
      }
      return twin;
    };
    for (const [path, inode] of this.names) copy.names.set(path, copyOf(inode));
    for (const [path, inode] of this.durableNames) copy.durableNames.set(path, copyOf(inode));
    copy.journal = this.journal.map((op) => (op.type === "link" ? { ...op, inode: copyOf(op.inode) } : op));
    for (const dir of this.dirs) copy.dirs.add(dir);
    return copy;
  }

  /** The process died (the machine stays up): open files and locks go, the data stays. */
  kill(): void {
    this.fds.clear();
    this.locked.clear();
  }

  /** The machine lost power: what was not durable may be gone (drawn from `rng`). */
  powerLoss(rng: Rng): void {
    this.kill();
    const names = new Map(this.durableNames);
    const kept = rng.int(this.journal.length + 1);
    for (const op of this.journal.slice(0, kept)) applyName(names, op);
    this.names = names;
    this.durableNames = new Map(names);
    this.journal = [];
    for (const inode of new Set(names.values())) inode.survive(rng);
  }

  open(path: string, flags: OpenFlags): number {
    if (this.dirs.has(path)) throw fsError("EISDIR", path);
    let inode = this.names.get(path);
    if (!inode) {
      if (flags !== "w") throw fsError("ENOENT", `no such file ${path}`);
      if (!this.dirs.has(parentOf(path))) throw fsError("ENOENT", `no folder for ${path}`);
      inode = new Inode();
      this.link(path, inode);
    } else if (flags === "w") inode.truncate(0);
    return this.addFd(inode);
  }

  close(fd: number): void {
    this.fds.delete(fd);
  }

  write(fd: number, bytes: Uint8Array, offset: number, length: number, position: number): number {
    return this.writev(fd, [bytes.subarray(offset, offset + length)], position);
  }

  /** As a full disk does: writes what fits (a short count), or fails with ENOSPC when nothing does. */
  writev(fd: number, parts: Uint8Array[], position: number): number {
    const inode = this.inode(fd);
    let at = position;
    for (const part of parts) {
      const fits = this.fits(inode, at, part.length);
      inode.write(part.subarray(0, fits), at);
      at += fits;
      if (fits < part.length) break;
    }
    if (at === position && parts.some((part) => part.length > 0)) throw fsError("ENOSPC", "no space left on device");
    return at - position;
  }

  datasync(fd: number): void {
    this.inode(fd).sync();
  }

  truncate(fd: number, length: number): void {
    this.inode(fd).truncate(length);
  }

  readFile(path: string): Uint8Array {
    return this.existing(path).data.slice();
  }

  readdir(dir: string): string[] {
    if (!this.dirs.has(dir)) throw fsError("ENOENT", `no folder ${dir}`);
    const prefix = dir === "/" ? "/" : `${dir}/`;
    const entries: string[] = [];
    for (const path of [...this.names.keys(), ...this.dirs]) {
      if (path !== dir && path.startsWith(prefix) && !path.slice(prefix.length).includes("/")) entries.push(path.slice(prefix.length));
    }
    return entries.sort();
  }

  rename(from: string, to: string): void {
    this.existing(from);
    this.record({ type: "rename", from, to });
  }

  unlink(path: string): void {
    this.existing(path);
    this.record({ type: "unlink", path });
  }

  /** At once: the simulator's clock does not run while a server works. */
  removeLater(path: string): void {
    this.remove(path);
  }

  remove(path: string): void {
    if (this.names.has(path)) this.record({ type: "unlink", path });
  }

  exists(path: string): boolean {
    return this.names.has(path) || this.dirs.has(path);
  }

  size(path: string): number {
    return this.existing(path).length;
  }

  mkdirs(dir: string): void {
    if (this.names.has(dir)) throw fsError("EEXIST", `${dir} is a file`);
    for (let path = dir; !this.dirs.has(path); path = parentOf(path)) this.dirs.add(path);
  }

  isDirectory(path: string): boolean {
    if (this.dirs.has(path)) return true;
    this.existing(path);
    return false;
  }

  syncDirectory(dir: string): void {
    if (!this.dirs.has(dir)) throw fsError("ENOENT", `no folder ${dir}`);
    // A journal commit: every name operation so far, whatever its folder.
    for (const op of this.journal) applyName(this.durableNames, op);
    this.journal = [];
  }

  freeBytes(_dir: string): number {
    return Number.isFinite(this.capacityBytes) ? Math.max(0, this.capacityBytes - this.usedBytes()) : Number.MAX_SAFE_INTEGER;
  }

  /** The blocks of every file that has a name or is open. */
  usedBytes(): number {
    let used = 0;
    for (const inode of new Set([...this.names.values(), ...this.fds.values()])) used += inode.blocks.size * BLOCK_BYTES;
    return used;
  }

  /** Of `length` bytes written at `position` of `inode`, how many fit in the blocks left (from the start, in order). */
  private fits(inode: Inode, position: number, length: number): number {
    if (!Number.isFinite(this.capacityBytes)) return length;
    // The space left, counted only once a block is new (it walks every file).
    let room: number | null = null;
    let fits = 0;
    for (let block = Math.floor(position / BLOCK_BYTES); block * BLOCK_BYTES < position + length; block++) {
      if (!inode.blocks.has(block)) {
        room ??= Math.floor((this.capacityBytes - this.usedBytes()) / BLOCK_BYTES);
        if (room-- <= 0) break;
      }
      fits = Math.min(length, (block + 1) * BLOCK_BYTES - position);
    }
    return fits;
  }

  lock(dir: string): () => void {
    if (this.locked.has(dir)) throw fsError("EAGAIN", `${dir} is locked by this process already`);
    this.locked.add(dir);
    return () => this.locked.delete(dir);
  }

  openAsync(path: string, flags: "r+" | "w"): Promise<AsyncFile> {
    const io = <T>(work: () => T) => new Promise<T>((resolve, reject) => this.later(() => {
      try {
        resolve(work());
      } catch (error) {
        reject(error);
      }
    }));
    return io(() => {
      const fd = this.open(path, flags);
      return {
        write: (bytes, offset, length, position) => io(() => this.write(fd, bytes, offset, length, position)),
        truncate: (length) => io(() => this.truncate(fd, length)),
        datasync: () => io(() => this.datasync(fd)),
        close: () => io(() => this.close(fd)),
      };
    });
  }

  private addFd(inode: Inode): number {
    const fd = this.nextFd++;
    this.fds.set(fd, inode);
    return fd;
  }

  private inode(fd: number): Inode {
    const inode = this.fds.get(fd);
    if (!inode) throw fsError("EBADF", `fd ${fd} is not open`);
    return inode;
  }

  private existing(path: string): Inode {
    const inode = this.names.get(path);
    if (!inode) throw fsError("ENOENT", `no such file ${path}`);
    return inode;
  }

  private link(path: string, inode: Inode): void {
    this.record({ type: "link", path, inode });
  }

  private record(op: NameOp): void {
    applyName(this.names, op);
    this.journal.push(op);
  }
}

function applyName(names: Map<string, Inode>, op: NameOp): void {
  switch (op.type) {
    case "link":
      names.set(op.path, op.inode);
      return;
    case "unlink":
      names.delete(op.path);
      return;
    case "rename": {
      const inode = names.get(op.from);
      // Absent in a journal replayed from an older point only if the ops were out of order: never.
      if (!inode) throw new Error(`journal: rename of ${op.from}, which is not there`);
      names.delete(op.from);
      names.set(op.to, inode);
      return;
    }
  }
}
