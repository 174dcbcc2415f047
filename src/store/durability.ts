/**
 * A server's disk: the write-ahead log and the checkpoints of one data dir,
 * with the fsync policy.
 *   always  the log is fdatasync'ed before anything that depends on it leaves
 *           the server (forward, reply), one sync per batch (group commit);
 *           updates that only move holds or sessions are written but need no
 *           sync of their own (holds are fenced: see docs/recovery.md)
 *   batch   synced every BATCH_SYNC_MS in the background
 *   off     written to the page cache only; the OS decides
 */
import { CHECKPOINT_RETRY_MS, DISK_FREE_BYTES_MIN, FREE_SPACE_FRESH_MS, FREE_SPACE_RECHECK_BYTES, PAGE_SIZE } from "../constants";
import type { Update } from "../wire";
import { ensureDirectory, isNoSpace } from "./files";
import type { StoreFs, StoreIo } from "./fs";
import { CorruptDataError, RecoveryError } from "./errors";
import { type CheckpointInfo, dropCheckpointsExcept, pruneCheckpoints, writeCheckpointBytes, writeCheckpointStreamAsync } from "./checkpoint";
import { type Recovered, moveAside, recover } from "./recovery";
import type { WriteAheadLog } from "./wal";
import { type ChainConfig, NO_CONFIG, type Persist, type StoreState, type Vote, needsSync } from "../core";
import { snapshotParts } from "../core/snapshot";
import { saveConfig } from "./config";
import { type DataIdentity, checkIdentity, identityToRecord, loadIdentity, saveIdentity } from "./identity";

export type FsyncMode = "always" | "batch" | "off";

export interface OpenOptions {
  segmentSize: number;
  fsync: FsyncMode;
  /** A checkpoint is due once the log has grown this much (and twice the last checkpoint). */
  checkpointBytes: number;
  rejoin?: boolean;
  pageSize?: number;
  /** The server this dir belongs to (its number, its --peers): recorded, then checked at each start. */
  server?: DataIdentity["server"];
}

export const BATCH_SYNC_MS = 5;
/** Older checkpoints stay on disk as recovery lines to restore. */
export const CHECKPOINTS_KEPT = 5;
/**
 * A checkpoint writes the whole state, so it waits until the log is also this
 * many times the last checkpoint's size: at most half a byte of checkpoint
 * per byte of log however large the data (Redis's AOF rewrite does the same).
 */
export const CHECKPOINT_LOG_GROWTH = 2;


function recoverOrSetAside(dir: string, segmentSize: number, pageSize: number, syncs: boolean, rejoin: boolean, io: StoreIo): Recovered {
  try {
    return recover(io, dir, segmentSize, pageSize, syncs);
  } catch (error) {
    if (!rejoin || !(error instanceof CorruptDataError)) throw error;
    const aside = moveAside(io.fs, dir);
    const recovered = recover(io, dir, segmentSize, pageSize, syncs);
    const problem = error.message.split("\n")[0];
    recovered.notes.unshift(`--rejoin: ${problem}; moved the log and checkpoints aside to ${aside}: starting empty, the state comes from the other servers`);
    return recovered;
  }
}

function repeatOnTimer(ms: number, fn: () => void): () => void {
  const timer = setInterval(fn, ms);
  timer.unref?.();
  return () => clearInterval(timer);
}

export class Durability {
  private readonly fs: StoreFs;
  private readonly now: () => number;
  private wal: WriteAheadLog;
  private syncDue = false;
  private stopBatchSyncs: (() => void) | null = null;
  private readonly unlock: () => void;
  private lastCheckpoint: CheckpointInfo | null;
  private checkpointing = false;
  private closed = false;
  /** Bumped when a snapshot replaces the history: a background checkpoint of the old one is void. */
  private history = 0;
  /** What config.json holds: each save writes them all. */
  private config: ChainConfig;
  private vote: Vote | null;
  private bootPeers: number[];
  private checkpointFailedAtMs = Number.NEGATIVE_INFINITY;
  private freeSpace = { bytes: Number.POSITIVE_INFINITY, atMs: Number.NEGATIVE_INFINITY, appended: 0 }; // measured at the first question

  private constructor(
    io: StoreIo,
    readonly dir: string,
    private readonly fsync: FsyncMode,
    private readonly checkpointBytes: number,
    recovered: Recovered,
    unlock: () => void,
  ) {
    this.wal = recovered.wal;
    this.unlock = unlock;
    this.lastCheckpoint = recovered.checkpoint;
    this.config = recovered.config ?? NO_CONFIG;
    this.vote = recovered.vote;
    this.bootPeers = recovered.bootPeers;
    this.fs = io.fs;
    this.now = io.now ?? (() => performance.now());
    // What was written, not what is queued: records a full disk refused stay with the server's
    // DiskQueue, which writes them when it can. Flushing them here threw ENOSPC out of the timer
    // and the server died (found by the simulator: --disks --fsync batch --full-disks).
    if (fsync === "batch") this.stopBatchSyncs = (io.repeat ?? repeatOnTimer)(BATCH_SYNC_MS, () => this.wal.syncWritten());
  }

  /**
   * Locks the data dir and recovers its state (throws RecoveryError on corruption, or when the
   * dir's identity.json says its data belongs to another segment size or server).
   * `rejoin`: a log or checkpoint that does not check out is moved aside (moveAside) and the
   * server starts empty, to get the state from the others.
   */
  static open(io: StoreIo, dir: string, options: OpenOptions): { durability: Durability; recovered: Recovered } {
    const { segmentSize, fsync, checkpointBytes, rejoin = false, pageSize = PAGE_SIZE, server } = options;
    let unlock: (() => void) | null = null;
    try {
      ensureDirectory(io.fs, dir);
      unlock = io.fs.lock(dir);
      const identity: DataIdentity = { segmentSize, pageSize, server };
      const recorded = loadIdentity(io.fs, dir);
      checkIdentity(recorded, dir, identity);
      const recovered = recoverOrSetAside(dir, segmentSize, pageSize, fsync !== "off", rejoin, io);
      // Only once the data checked out this way: a wrong --segment-size must not be recorded.
      if (identityToRecord(recorded, identity)) saveIdentity(io.fs, dir, identity);
      return { durability: new Durability(io, dir, fsync, checkpointBytes, recovered, unlock), recovered };
    } catch (error) {
      unlock?.();
      if (isNoSpace(error)) {
        throw new RecoveryError(`${dir}: the disk is full (${(error as Error).message}); a server needs a few MiB for its log: free some space`);
      }
      throw error;
    }
  }

  /** One of the replica's disk actions (not synced yet: see commit). */
  persist(item: Persist): CheckpointInfo | null {
    switch (item.kind) {
      case "log":
        this.append(item.update);
        return null;
      case "checkpoint":
        return this.checkpoint(item.seq, item.epoch, item.configEpoch, item.snapshot);
      case "install":
        return this.install(item.seq, item.epoch, item.configEpoch, item.snapshot);
      case "config":
        this.saveConfig(item.config);
        return null;
      case "vote":
        this.saveVote(item.vote);
        return null;
      case "boot_peers":
        this.saveBootPeers(item.peers);
        return null;
    }
  }

  append(update: Update): void {
    this.wal.append(update);
    if (needsSync(update)) this.syncDue = true;
  }

  /** Writes the queued records (to the system, not synced). */
  flush(): void {
    this.wal.flush();
  }

  /** Writes the queued records, and syncs them if the mode and the records ask for it. */
  commit(): void {
    this.wal.flush();
    this.commitWritten();
  }

  /**
   * Syncs the records written to the system, not those still queued, if the mode and the
   * records ask for it: the simulator's sync, which completes after later batches were queued
   * (one the disk could not take yet stays queued, and due for a sync).
   */
  commitWritten(): void {
    if (this.fsync !== "always" || !this.syncDue) return;
    this.wal.syncWritten();
    // Records still queued (a full disk refused them) stay due for a sync.
    if (!this.wal.hasQueued) this.syncDue = false;
  }

  /** A checkpoint at exactly `seq` (its snapshot taken by the replica then). */
  checkpoint(seq: number, lastEpoch: number, configEpoch: number, snapshot: Uint8Array): CheckpointInfo {
    this.wal.flush();
    const info = writeCheckpointBytes(this.fs, this.dir, seq, lastEpoch, configEpoch, snapshot);
    this.afterCheckpoint(info);
    return info;
  }

  /** The log's next spare segment is being prepared: a checkpoint begun now would start a new file instead. */
  get sparePending(): boolean {
    return this.wal.sparePending;
  }

  /** The log has grown past --checkpoint-mb and past CHECKPOINT_LOG_GROWTH times the last checkpoint. */
  get checkpointDue(): boolean {
    if (this.now() - this.checkpointFailedAtMs < CHECKPOINT_RETRY_MS) return false;
    const logged = this.wal.bytesSinceCheckpoint;
    return logged >= this.checkpointBytes && logged >= CHECKPOINT_LOG_GROWTH * (this.lastCheckpoint?.bytes ?? 0);
  }

  /**
   * Checkpoints the current state when checkpointDue, without waiting for the
   * disk: the state is copied and the log goes on in a fresh segment now; the
   * I/O threads write and sync the file, and only then is the log before it
   * dropped. A crash meanwhile leaves the previous checkpoint and the whole log.
   */
  checkpointInBackground(state: StoreState, lastEpoch: number, configEpoch: number): Promise<CheckpointInfo | null> | null {
    if (this.checkpointing || !this.checkpointDue) return null;
    const seq = state.appliedSeq;
    try {
      this.wal.startSegment(seq + 1);
    } catch (error) {
      this.checkpointFailedAtMs = this.now();
      return Promise.reject(error);
    }
    // The pages as they are now, shared with the state until it writes them: no copy of the data.
    const frozen = state.pages.freeze();
    const snapshot = snapshotParts(state, frozen.pages);
    this.checkpointing = true;
    const history = this.history;
    // Closed or replaced meanwhile: the file is never renamed into place (the next start owns the dir).
    const stillValid = () => !this.closed && this.history === history;
    return writeCheckpointStreamAsync(this.fs, this.dir, seq, lastEpoch, configEpoch, snapshot.parts(), stillValid)
      .then((info) => {
        if (info === null) return null;
        this.checkpointFailedAtMs = Number.NEGATIVE_INFINITY;
        this.wal.dropSegmentsBefore(seq + 1);
        pruneCheckpoints(this.fs, this.dir, CHECKPOINTS_KEPT);
        this.spaceFreed();
        if (this.lastCheckpoint === null || info.seq > this.lastCheckpoint.seq) this.lastCheckpoint = info;
        return info;
      })
      .catch((error: unknown) => {
        this.checkpointFailedAtMs = this.now();
        throw error;
      })
      .finally(() => {
        frozen.thaw();
        this.checkpointing = false;
      });
  }

  /** The state was replaced by a snapshot (state transfer): that snapshot is the new base. */
  install(seq: number, lastEpoch: number, configEpoch: number, snapshot: Uint8Array): CheckpointInfo {
    this.history++;
    this.wal.flush();
    const info = writeCheckpointBytes(this.fs, this.dir, seq, lastEpoch, configEpoch, snapshot);
    // The log and the other checkpoints hold a history this server no longer has, past `seq`
    // too after a rollback: the log restarts after the snapshot, then the checkpoints go (a
    // crash in between recovers the newest checkpoint left, as if nothing was installed).
    // Not pruneCheckpoints: keeping the newest by seq, it dropped the snapshot itself when five
    // checkpoints of the rolled-back history were newer (chaos seed 513013).
    this.wal.restartAfter(seq);
    dropCheckpointsExcept(this.fs, this.dir, seq);
    this.lastCheckpoint = info;
    this.spaceFreed();
    return info;
  }

  /** Records the configuration a server moved to (read back at restart). */
  saveConfig(config: ChainConfig): void {
    this.config = config;
    this.bootPeers = [];
    this.writeConfigFile();
  }

  /** Records the server's vote as an acceptor (--quorum majority), synced before it is sent. */
  saveVote(vote: Vote): void {
    this.vote = vote;
    this.writeConfigFile();
  }

  /** Records the servers heard while not serving (the next boot waits for them), synced before a heartbeat says so. */
  saveBootPeers(peers: number[]): void {
    this.bootPeers = [...peers];
    this.writeConfigFile();
  }

  private writeConfigFile(): void {
    saveConfig(this.fs, this.dir, { config: this.config, vote: this.vote, bootPeers: this.bootPeers });
  }

  /**
   * Whether `bytes` more would eat into the space a server keeps free
   * (DISK_FREE_BYTES_MIN): the head then refuses updates that grow the data.
   */
  spaceShort(bytes: number): boolean {
    const now = this.now();
    const short = () => this.freeSpace.bytes - bytes < DISK_FREE_BYTES_MIN;
    const measure = () => (this.freeSpace = { bytes: this.fs.freeBytes(this.dir), atMs: now, appended: this.wal.bytesAppended });
    // Measured again after FREE_SPACE_RECHECK_BYTES of log too: within FREE_SPACE_FRESH_MS a fast
    // client filled a 16 MiB disk past the reserve, and the log then waited for space nobody could
    // free (a delete is logged too). Found by test/disk.test.ts on a faster machine.
    const logged = this.wal.bytesAppended - this.freeSpace.appended;
    if (now - this.freeSpace.atMs > FREE_SPACE_FRESH_MS || logged >= FREE_SPACE_RECHECK_BYTES) measure();
    // Dropped log segments kept for reuse are space the server can give back.
    if (short() && this.wal.releaseRetired()) measure();
    return short();
  }

  /** A write failed for lack of space: measure again at the next question. */
  forgetFreeSpace(): void {
    this.freeSpace = { bytes: 0, atMs: this.now(), appended: this.wal.bytesAppended };
  }

  /** The last update written to the system: a killed process loses none up to it. */
  get writtenSeq(): number {
    return this.wal.writtenThrough;
  }

  get latestCheckpoint(): CheckpointInfo | null {
    return this.lastCheckpoint;
  }

  close(): void {
    this.closed = true;
    this.stopBatchSyncs?.();
    try {
      this.wal.close();
    } finally {
      this.unlock();
    }
  }

  private afterCheckpoint(info: CheckpointInfo): void {
    this.wal.rotate(info.seq);
    pruneCheckpoints(this.fs, this.dir, CHECKPOINTS_KEPT);
    this.lastCheckpoint = info;
    this.spaceFreed();
  }

  /** Log segments and checkpoints went: the next question measures the free space again (a refused user retries at once). */
  private spaceFreed(): void {
    this.freeSpace = { bytes: Number.POSITIVE_INFINITY, atMs: Number.NEGATIVE_INFINITY, appended: 0 };
  }
}
