/**
 * The disk side of a server's actions: log records, checkpoints, installed
 * snapshots, configuration and votes are written (one sync for the batch)
 * before the batch's messages may leave. A full disk stops it where it failed
 * (no partial file stays): nothing of the batch is sent — a server that
 * cannot log an update neither forwards nor acknowledges it — and it is tried
 * again every DISK_RETRY_MS until space comes back. Each action's disk work
 * is done once, whatever the retries; batches that come meanwhile wait behind.
 */
import type { ConsolaInstance } from "consola";
import { DISK_RETRY_MS } from "../constants";
import type { Persist } from "../core";
import { type Durability, isNoSpace } from "../store";

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
  private retry: ReturnType<typeof setTimeout> | null = null;
  private fullSinceMs: number | null = null;

  constructor(
    private readonly durability: Durability,
    private readonly dataDir: string,
    private readonly log: ConsolaInstance,
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
    if (this.retry) clearTimeout(this.retry);
    this.retry = null;
  }

  private writeAll(): void {
    this.retry = null;
    const pending = this.unwritten;
    try {
      for (; this.doneBatches < pending.length; this.doneBatches++, this.doneItems = 0) {
        const items = pending[this.doneBatches]!.items;
        for (; this.doneItems < items.length; this.doneItems++) this.write(items[this.doneItems]!);
      }
      this.durability.flush();
      for (const batch of pending) {
        const unsynced = batch.unsynced;
        batch.unsynced = undefined;
        unsynced?.();
      }
      this.durability.commit();
    } catch (error) {
      if (!isNoSpace(error)) throw error;
      this.durability.forgetFreeSpace();
      if (this.fullSinceMs === null) {
        this.fullSinceMs = performance.now();
        this.log.error(`the disk of ${this.dataDir} is full (${(error as Error).message}): updates wait, new data is refused with ENOSPC; free some space`);
      }
      this.retry = setTimeout(() => this.writeAll(), DISK_RETRY_MS);
      return;
    }
    if (this.fullSinceMs !== null) {
      this.log.info(`disk space is back: the updates that waited ${Math.round(performance.now() - this.fullSinceMs)} ms are written`);
      this.fullSinceMs = null;
    }
    this.unwritten = [];
    this.doneBatches = 0;
    this.doneItems = 0;
    for (const batch of pending) batch.written();
  }

  private write(item: Persist): void {
    const info = this.durability.persist(item);
    if (item.kind === "checkpoint" && info) this.log.info(`checkpoint at seq ${info.seq} (${info.bytes} bytes)`);
  }
}
