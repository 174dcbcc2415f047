/**
 * The disk side of a server's actions: log records, checkpoints, installed
 * snapshots, configuration and votes are written (one sync for the batch)
 * before the batch's messages may leave. A full disk stops it where it failed
 * (no partial file stays): nothing of the batch is sent — a server that
 * cannot log an update neither forwards nor acknowledges it — and it is tried
 * again every DISK_RETRY_MS until space comes back. Each action's disk work
 * is done once, whatever the retries; batches that come meanwhile wait behind.
 * A server's Durability is its store; the simulator runs this queue over its own disk,
 * whose syncs complete at later events.
 */
import { DISK_RETRY_MS } from "../constants";
import type { Persist } from "../core";
// Not from ../store's index: its node file system loads the FFI helpers, which the simulator (it runs this queue) does without.
import type { CheckpointInfo } from "../store/checkpoint";
import type { Durability } from "../store/durability";
import { isNoSpace } from "../store/files";
import type { NodeLog } from "./host";

/** What the queue writes through. */
export interface QueueStore {
  persist(item: Persist): CheckpointInfo | null;
  /** Hands what was persisted to the system (not synced). */
  flush(): void;
  /** Starts making the batch durable (per the fsync mode); may throw, e.g. ENOSPC. */
  commit(): void;
  /** Calls `done` once the commit is durable: at once in a server (its sync was synchronous); later in the simulator. */
  afterCommit(done: () => void, wroteAnything: boolean): void;
  /** A write failed for lack of space: free space is measured again at the next question. */
  forgetFreeSpace(): void;
}

/** A server's store: its Durability, which syncs in `commit`. */
export function durableStore(durability: Durability): QueueStore {
  return {
    persist: (item) => durability.persist(item),
    flush: () => durability.flush(),
    commit: () => durability.commit(),
    afterCommit: (done) => done(),
    forgetFreeSpace: () => durability.forgetFreeSpace(),
  };
}

/** Timers and a clock: a server's own, or the simulator's. */
export interface QueueClock {
  /** Runs `fn` in `ms`; returns what cancels it. */
  later(ms: number, fn: () => void): () => void;
  nowMs(): number;
}

export const SYSTEM_CLOCK: QueueClock = {
  later: (ms, fn) => {
    const timer = setTimeout(fn, ms);
    return () => clearTimeout(timer);
  },
  nowMs: () => performance.now(),
};

interface Batch {
  items: Persist[];
  /** The batch is on disk: its messages may leave. */
  written: () => void;
  /** The batch is written, not yet synced: what may leave before the sync leaves (once). */
  unsynced?: () => void;
}

export class DiskQueue {
  /** Batches whose disk work is not all done and synced yet, oldest first. */
  private unwritten: Batch[] = [];
  /** Of them, this many batches are written, and `doneItems` items of the next. */
  private doneBatches = 0;
  private doneItems = 0;
  /** Cancels the retry after a full disk; null when none is due. */
  private retry: (() => void) | null = null;
  private fullSinceMs: number | null = null;

  constructor(
    private readonly store: QueueStore,
    private readonly dataDir: string,
    private readonly log: NodeLog,
    private readonly clock: QueueClock = SYSTEM_CLOCK,
  ) {}

  /** True while the disk is full and batches wait. */
  get waiting(): boolean {
    return this.unwritten.length > 0;
  }

  get waitingCount(): number {
    let count = 0;
    for (const batch of this.unwritten) count += batch.items.length;
    return count;
  }

  /** Writes `items` (after any batch that waits), calls `unsynced`, syncs, then calls `written`. */
  push(items: Persist[], written: () => void, unsynced?: () => void): void {
    this.unwritten.push({ items, written, unsynced });
    if (this.retry === null) this.writeAll();
  }

  stop(): void {
    this.retry?.();
    this.retry = null;
  }

  private writeAll(): void {
    this.retry = null;
    const pending = this.unwritten;
    let wroteAnything = false;
    try {
      for (; this.doneBatches < pending.length; this.doneBatches++, this.doneItems = 0) {
        const items = pending[this.doneBatches]!.items;
        for (; this.doneItems < items.length; this.doneItems++) {
          this.write(items[this.doneItems]!);
          wroteAnything = true;
        }
      }
      this.store.flush();
      for (const batch of pending) {
        const unsynced = batch.unsynced;
        batch.unsynced = undefined;
        unsynced?.();
      }
      this.store.commit();
    } catch (error) {
      if (!isNoSpace(error)) throw error;
      this.store.forgetFreeSpace();
      if (this.fullSinceMs === null) {
        this.fullSinceMs = this.clock.nowMs();
        this.log.error(`the disk of ${this.dataDir} is full (${(error as Error).message}): updates wait, new data is refused with ENOSPC; free some space`);
      }
      this.retry = this.clock.later(DISK_RETRY_MS, () => this.writeAll());
      return;
    }
    if (this.fullSinceMs !== null) {
      this.log.info(`disk space is back: the updates that waited ${Math.round(this.clock.nowMs() - this.fullSinceMs)} ms are written`);
      this.fullSinceMs = null;
    }
    this.unwritten = [];
    this.doneBatches = 0;
    this.doneItems = 0;
    this.store.afterCommit(() => {
      for (const batch of pending) batch.written();
    }, wroteAnything);
  }

  private write(item: Persist): void {
    const info = this.store.persist(item);
    if (item.kind === "checkpoint" && info) this.log.info(`checkpoint at seq ${info.seq} (${info.bytes} bytes)`);
  }
}
