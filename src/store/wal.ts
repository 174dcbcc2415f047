/**
 * The write-ahead log: every applied update, in sequence order, in segment
 * files `wal-<first seq>.log` (their bytes: log_format.ts). Appends go to the
 * page cache at once; `sync()` makes them durable (fdatasync), so many records
 * share one sync (group commit).
 */
import { join } from "node:path";
import type { Update } from "../wire";
import { DISK_FREE_BYTES_MIN, RETIRED_SEGMENTS_MAX, SPARE_SYNC_BYTES } from "../constants";
import { writeAll, writeAllParts } from "./files";
import type { LogSizes, StoreFs } from "./fs";
import { BATCH_HEADER_BYTES, WAL_HEADER_BYTES, encodeBatchHeader, encodeRecord, encodeSegmentHeader } from "./log_format";

const SEGMENT_NAME = /^wal-(\d{16})\.log$/;

export function segmentName(firstSeq: number): string {
  return `wal-${String(firstSeq).padStart(16, "0")}.log`;
}

/** Segments of `dir`, oldest first. */
export function listSegments(fs: StoreFs, dir: string): { file: string; firstSeq: number }[] {
  return fs
    .readdir(dir)
    .map((name) => ({ name, match: SEGMENT_NAME.exec(name) }))
    .filter((entry) => entry.match !== null)
    .map((entry) => ({ file: join(dir, entry.name), firstSeq: Number(entry.match![1]) }))
    .sort((a, b) => a.firstSeq - b.firstSeq);
}

/**
 * Segments are zero-filled before records are written into them: an
 * fdatasync after an overwrite inside a file need not also commit a new file
 * size (70 µs instead of 220 µs p50 measured here). The next segment is
 * zero-filled in the background (libuv's threads), in a file of its own, and
 * takes over when the current one is full. A log that is never synced
 * (--fsync off) skips all that: its segments are sparse files (zero-filling
 * a new 64 MiB file took ~0.3 s of CPU a server on the 2-core test machine,
 * as much as writing 64 MiB of records, for no gain without fdatasync). Both
 * recycle a segment that a checkpoint made useless as the next spare.
 * Sizes: LogSizes (src/store/fs.ts).
 */
const SPARE_NAME = "wal-spare.tmp";
/** Dropped segments kept (RETIRED_SEGMENTS_MAX), beyond the spare, to be the spares after it: see WriteAheadLog.retired. */
const RETIRED_PREFIX = "wal-retired-";

export class WriteAheadLog {
  /** Bytes appended since the last checkpoint (drives automatic checkpoints). */
  bytesSinceCheckpoint = 0;
  /** Bytes written since the log was opened, never reset: how much disk the log may have taken since a measure. */
  private bytesWritten = 0;
  private pending: Uint8Array[] = [];
  private pendingBytes = 0;
  private pendingRecords = 0;
  /** Where the next record goes in the current segment. */
  private writeOffset = WAL_HEADER_BYTES;
  /** The current segment's bytes below this offset are synced (each batch header says so). */
  private durableOffset = WAL_HEADER_BYTES;
  /** The sequence number the current segment's name and header give. */
  private segmentFirstSeq: number;
  /** Sequence number of the next record (names the next segment). */
  private nextSeq: number;
  private spareReady = false;
  private spareWanted = false;
  /**
   * Dropped segments waiting to be the next spares. A segment unlinked gives its page-cache
   * pages back, and on our VM memory the system takes back costs ~11 µs a page to fault in
   * again: a new 64 MiB segment took 250–360 ms to write where a recycled one took 5 ms.
   * A checkpoint drops several segments when records are large (a 64 MiB release each).
   */
  private retired: string[] = [];
  private retiredNames = 0;

  private constructor(
    private readonly fs: StoreFs,
    private readonly sizes: LogSizes,
    private readonly dir: string,
    private fd: number,
    private capacity: number,
    firstSeq: number,
    /** false with --fsync off: no sync, no zero-filling, even between segments. */
    private readonly syncs: boolean,
  ) {
    this.nextSeq = firstSeq;
    this.segmentFirstSeq = firstSeq;
  }

  /** Starts the log at a new segment whose first record will be `firstSeq`. */
  static create(fs: StoreFs, sizes: LogSizes, dir: string, firstSeq: number, syncs = true): WriteAheadLog {
    removeSpares(fs, dir);
    const fd = openSegment(fs, dir, firstSeq, null, sizes.first, syncs);
    const wal = new WriteAheadLog(fs, sizes, dir, fd, sizes.first, firstSeq, syncs);
    // Every start opens a segment, and only a checkpoint drops the older ones: their files count
    // as logged, or restarts alone (a crash loop) grew the data dir by a segment each, unbounded.
    for (const segment of listSegments(fs, dir)) if (segment.firstSeq !== firstSeq) wal.bytesSinceCheckpoint += fs.size(segment.file);
    wal.prepareSpare();
    return wal;
  }

  /** Queues a record; `flush()` writes every queued record with one system call. */
  append(update: Update): void {
    for (const part of encodeRecord(update)) {
      this.pending.push(part);
      this.pendingBytes += part.length;
    }
    this.pendingRecords++;
    this.nextSeq = update.seq + 1;
  }

  /** Writes the queued records to the file (the page cache); true if there were any. */
  flush(): boolean {
    if (this.pending.length === 0) return false;
    const firstSeq = this.nextSeq - this.pendingRecords;
    const bytes = BATCH_HEADER_BYTES + this.pendingBytes;
    if (this.writeOffset + bytes > this.capacity && this.writeOffset > WAL_HEADER_BYTES) {
      this.nextSegment(firstSeq);
    }
    const end = this.writeOffset + bytes;
    if (end > this.capacity) {
      // A batch larger than a segment: the file grows, zero-filled first (a hole) and that size
      // synced, so that a crash in the write leaves a torn record followed by zeros, which
      // recovery cuts off. Written past the file's end, a torn record could end the file amid
      // its payload, which recovery cannot tell from a corrupt length, and refused the dir
      // (sim seed 632003378, a joiner's 113 updates in one forward).
      this.fs.truncate(this.fd, end);
      if (this.syncs) this.datasync();
      this.capacity = end;
    }
    // One system call for the batch and its header. Not put into `pending`: a write the disk
    // refuses (ENOSPC) leaves the batch queued for the retry, which writes its own header.
    const header = encodeBatchHeader(this.segmentFirstSeq, this.durableOffset, this.writeOffset);
    writeAllParts(this.fs, this.fd, [header, ...this.pending], this.writeOffset);
    this.writeOffset = end;
    this.bytesSinceCheckpoint += bytes;
    this.bytesWritten += bytes;
    this.pending = [];
    this.pendingBytes = 0;
    this.pendingRecords = 0;
    return true;
  }

  /** Writes the queued records and makes every record durable. */
  sync(): void {
    this.flush();
    this.syncWritten();
  }

  /** Makes the records written so far durable (not those still queued). */
  syncWritten(): void {
    if (this.unsynced) this.datasync();
  }

  /** Records appended and not yet written (a flush the disk refused leaves them queued). */
  get hasQueued(): boolean {
    return this.pending.length > 0;
  }

  /** Bytes written and queued since the log was opened (only grows). */
  get bytesAppended(): number {
    return this.bytesWritten + this.pendingBytes;
  }

  /** Records written to the current segment since its last sync. */
  private get unsynced(): boolean {
    return this.writeOffset > this.durableOffset;
  }

  private datasync(): void {
    this.fs.datasync(this.fd);
    this.durableOffset = this.writeOffset;
  }

  /** The next segment's spare is being zero-filled in the background. */
  get sparePending(): boolean {
    return this.spareWanted;
  }

  /** A zero-filled spare waits to be the next segment (tests). */
  get spareIsReady(): boolean {
    return this.spareReady;
  }

  /** The last sequence number written to the system (appended and flushed). */
  get writtenThrough(): number {
    return this.nextSeq - 1 - this.pendingRecords;
  }

  get hasUnsynced(): boolean {
    return this.unsynced || this.pending.length > 0;
  }

  /** After a checkpoint at `seq`: continue in a fresh segment and drop the older ones. */
  rotate(seq: number): void {
    // The segments before the current one hold records the checkpoint covers: they go first,
    // so that a disk too full for the next segment gets their space (else nothing could free it).
    this.dropSegments((segment) => segment.firstSeq < this.segmentFirstSeq);
    this.startSegment(seq + 1);
    this.dropSegmentsBefore(seq + 1);
  }

  /** A checkpoint at `firstSeq - 1` begins: records from `firstSeq` on go to a fresh segment. */
  startSegment(firstSeq: number): void {
    this.flush();
    this.nextSegment(firstSeq);
    // After a snapshot that rolled the history back, the next record is firstSeq, not the one after our last.
    this.nextSeq = firstSeq;
    this.bytesSinceCheckpoint = 0;
  }

  /** The checkpoint at `firstSeq - 1` is on disk: the segments before `firstSeq` go (one is recycled as the spare). */
  dropSegmentsBefore(firstSeq: number): void {
    this.dropSegments((segment) => segment.firstSeq < firstSeq);
  }

  /**
   * A snapshot at `seq` replaced the state (a state transfer): the log goes on in a fresh
   * segment from `seq + 1`, and every other segment goes, those past `seq` too: after a
   * rollback (our history ran past the chain's) they hold records of the history we gave up.
   */
  restartAfter(seq: number): void {
    this.startSegment(seq + 1);
    this.dropSegments((segment) => segment.firstSeq !== seq + 1);
  }

  private dropSegments(drop: (segment: { firstSeq: number }) => boolean): void {
    // Kept for reuse only on a disk with room for a new spare (prepareSpare's test): a full one gets the space back.
    const roomy = this.fs.freeBytes(this.dir) >= this.sizes.segment + DISK_FREE_BYTES_MIN;
    for (const segment of listSegments(this.fs, this.dir)) {
      if (!drop(segment)) continue;
      if (!roomy) this.fs.unlink(segment.file);
      else if (!this.spareWanted && !this.spareReady) this.prepareSpare(segment.file);
      else if (this.retired.length < RETIRED_SEGMENTS_MAX) this.retire(segment.file);
      else this.fs.removeLater(this.renameRetired(segment.file)); // not a segment's name any more, as of the sync below
    }
    this.fs.syncDirectory(this.dir);
  }

  close(): void {
    try {
      this.sync();
    } finally {
      this.fs.close(this.fd);
      removeSpares(this.fs, this.dir);
    }
  }

  /**
   * Unlinks the retired segments (not the spare, the log's next segment): a disk short of the
   * space a server keeps gets them back, or a user who deleted data and checkpointed as told
   * would still be refused. Returns whether any went.
   */
  releaseRetired(): boolean {
    if (this.retired.length === 0) return false;
    for (const file of this.retired.splice(0)) this.fs.unlink(file);
    return true;
  }

  private retire(file: string): void {
    this.retired.push(this.renameRetired(file));
  }

  /** Gives a dropped segment a retired name, which the next start removes if it is still there. */
  private renameRetired(file: string): string {
    const retired = join(this.dir, `${RETIRED_PREFIX}${this.retiredNames++}.tmp`);
    this.fs.rename(file, retired);
    return retired;
  }

  /**
   * Closes the current segment (synced) and continues in one starting at
   * `firstSeq`. The new one is opened first: if the disk is full, the log
   * stays in the current segment, whole, and the caller may try again.
   */
  private nextSegment(firstSeq: number): void {
    if (this.unsynced && this.syncs) this.datasync();
    const spare = this.spareReady ? join(this.dir, SPARE_NAME) : null;
    this.spareReady = false;
    const capacity = spare || !this.syncs ? this.sizes.segment : this.sizes.first;
    const fd = openSegment(this.fs, this.dir, firstSeq, spare, capacity, this.syncs);
    this.fs.close(this.fd);
    this.fd = fd;
    this.capacity = capacity;
    this.writeOffset = WAL_HEADER_BYTES;
    this.durableOffset = WAL_HEADER_BYTES;
    this.segmentFirstSeq = firstSeq;
    this.prepareSpare();
  }

  /**
   * Zero-fills the next segment's file in the background: a new file (synced
   * logs only), or `recycled`, a dropped segment whose pages the page cache
   * still holds. Records then overwrite cached pages, which is cheap where
   * new ones are not (64 MiB in 20–30 ms against 260–410 ms, measured here).
   */
  private prepareSpare(recycled?: string): void {
    if (this.spareWanted) return;
    recycled ??= this.retired.shift();
    if (recycled === undefined && !this.syncs) return;
    const file = join(this.dir, SPARE_NAME);
    // A disk too small for a spare: do without (the next segment is zero-filled when needed, in line).
    const bytes = this.sizes.segment;
    if (recycled === undefined && this.fs.freeBytes(this.dir) < bytes + DISK_FREE_BYTES_MIN) return;
    this.spareWanted = true;
    if (recycled !== undefined) this.fs.rename(recycled, file);
    void (async () => {
      try {
        const handle = await this.fs.openAsync(file, recycled === undefined ? "w" : "r+");
        try {
          if (recycled !== undefined) await handle.truncate(bytes);
          const zeros = new Uint8Array(Math.min(bytes, 1024 * 1024));
          for (let offset = 0, syncAt = SPARE_SYNC_BYTES; offset < bytes; ) {
            offset += await handle.write(zeros, 0, Math.min(zeros.length, bytes - offset), offset);
            // By threshold, not by multiple: a short write must not skip every sync. The last is below.
            if (offset >= syncAt && offset < bytes) {
              await handle.datasync();
              syncAt = offset + SPARE_SYNC_BYTES;
            }
          }
          // Synced in every mode: after a power loss, a recycled segment must not show what it held.
          await handle.datasync();
        } finally {
          await handle.close();
        }
        this.spareReady = true;
      } catch {
        // No spare (e.g. disk full): the next segment is zero-filled when needed, in line. No partial file stays.
        this.fs.remove(file);
      } finally {
        this.spareWanted = false;
      }
    })();
  }
}

/** The spare and the retired segments: not part of the log, made again as needed. */
function removeSpares(fs: StoreFs, dir: string): void {
  for (const name of fs.readdir(dir)) if (name === SPARE_NAME || name.startsWith(RETIRED_PREFIX)) fs.remove(join(dir, name));
}

/**
 * A segment file for records from `firstSeq`: the spare renamed, or a new zero-filled (unsynced: sparse) file.
 * The spare gets its header before its name, so a crash never leaves a named segment of zeros
 * (a kill -9 between the rename and the header did: recovery refused the dir, "bad magic").
 * The header and the name are synced in every mode, --fsync off too (once a segment: the
 * spare's zeros were synced in the background), so a power loss never leaves a named segment
 * without its header, whose flag says whether the segment can have an unsynced tail.
 */
function openSegment(fs: StoreFs, dir: string, firstSeq: number, spare: string | null, capacity: number, syncs: boolean): number {
  const file = join(dir, segmentName(firstSeq));
  const path = spare ?? file;
  try {
    const fd = fs.open(path, spare ? "r+" : "w");
    try {
      writeAll(fs, fd, encodeSegmentHeader(firstSeq, syncs), 0);
      if (!syncs) fs.truncate(fd, capacity);
      else if (!spare) writeAll(fs, fd, new Uint8Array(capacity - WAL_HEADER_BYTES), WAL_HEADER_BYTES);
      fs.datasync(fd);
      if (spare) fs.rename(spare, file);
      fs.syncDirectory(dir);
      return fd;
    } catch (error) {
      fs.close(fd);
      throw error;
    }
  } catch (error) {
    // A full disk leaves no partial segment: recovery would read its zeros as the end of the
    // log, but a later one would not follow. And its removal is on disk before the log goes on
    // in the current segment, unsynced: a power loss that kept the new name but not its removal
    // made that segment look followed, so synced throughout, and its torn tail was refused as
    // corrupt (sim seeds 830000872, 830002409 of --disks --full-disks --partitions --quorum majority).
    fs.remove(path);
    fs.syncDirectory(dir);
    throw error;
  }
}

