/**
 * What a simulated server keeps across a crash. Today nothing: a crashed
 * server loses its memory and restarts empty. Issue 4 (the write-ahead log
 * and checkpoints) plugs a simulated disk in here, one that can also lose
 * writes that were not synced.
 */
import { StoreState } from "../core";
import type { Update } from "../wire";
import { AppliedHistory } from "./applied";
import type { Rng } from "./prng";

/** What a server starts from: its state, the epoch of its last update, and (for the checker) its history. */
export interface Recovered {
  state: StoreState;
  lastEpoch: number;
  history: AppliedHistory;
}

export interface Storage {
  /**
   * True when acknowledged updates survive a crash of every server: the fault
   * budget may then crash the last server holding them (DESIGN §7, invariant 1).
   */
  readonly durable: boolean;
  /** A "log" action, in order. */
  log(update: Update): void;
  /** An "install" action: the state was replaced by this snapshot at `seq`. */
  install(seq: number, epoch: number, snapshot: Uint8Array): void;
  /** A "checkpoint" action: a snapshot taken at exactly `seq`. */
  checkpoint(seq: number, epoch: number, snapshot: Uint8Array): void;
  /** The process died; a disk may lose what it had not synced (drawn from `rng`). */
  crash(rng: Rng): void;
  /** On (re)start: what the new incarnation begins with. */
  recover(): Recovered;
}

export interface Geometry {
  segmentSize: number;
  pageSize: number;
}

/** No disk: every start is from an empty state. */
export class NoDisk implements Storage {
  readonly durable = false;

  constructor(private readonly geometry: Geometry) {}

  log(_update: Update): void {}

  install(_seq: number, _epoch: number, _snapshot: Uint8Array): void {}

  checkpoint(_seq: number, _epoch: number, _snapshot: Uint8Array): void {}

  crash(_rng: Rng): void {}

  recover(): Recovered {
    return {
      state: new StoreState(this.geometry.segmentSize, this.geometry.pageSize),
      lastEpoch: 0,
      history: new AppliedHistory(),
    };
  }
}
