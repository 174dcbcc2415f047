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
import type { Action } from "../core";
import { type Durability, isNoSpace } from "../store";

export class DiskQueue {
  /** Actions whose disk work is not done yet (the first `done` of them are), with the epoch of their batch. */
  private unwritten: { action: Action; configEpoch: number }[] = [];
  private done = 0;
  private retry: ReturnType<typeof setTimeout> | null = null;
  private fullSinceMs: number | null = null;

  constructor(
    private readonly durability: Durability,
    private readonly dataDir: string,
    private readonly log: ConsolaInstance,
    /** The batch is on disk: send it. */
    private readonly onWritten: (actions: Action[]) => void,
  ) {}

  /** True while the disk is full and actions wait. */
  get waiting(): boolean {
    return this.unwritten.length > 0;
  }

  get waitingCount(): number {
    return this.unwritten.length;
  }

  /** Writes `actions` (after any that wait), then hands them to onWritten. */
  push(actions: Action[], configEpoch: number): void {
    for (const action of actions) this.unwritten.push({ action, configEpoch });
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
      for (; this.done < pending.length; this.done++) this.write(pending[this.done]!);
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
    this.done = 0;
    this.onWritten(pending.map((entry) => entry.action));
  }

  private write({ action, configEpoch }: { action: Action; configEpoch: number }): void {
    if (action.kind === "log") this.durability.append(action.update);
    else if (action.kind === "checkpoint") {
      const info = this.durability.checkpoint(action.seq, action.epoch, configEpoch, action.snapshot);
      this.log.info(`checkpoint at seq ${info.seq} (${info.bytes} bytes)`);
    } else if (action.kind === "install") this.durability.install(action.seq, action.epoch, configEpoch, action.snapshot);
    else if (action.kind === "config") this.durability.saveConfig(action.config);
    else if (action.kind === "vote") this.durability.saveVote(action.vote);
  }
}
