/**
 * What a simulated server keeps across a crash.
 *
 * NoDisk: nothing — a crashed server loses its memory and restarts empty.
 * SimDisk: a model of src/store (the write-ahead log and checkpoints) with
 * --fsync always: the records of one flush are synced together, and only when
 * one of them needs it (store/durability.ts needsSync: creates, deletes,
 * checkpoints, releases with pages); checkpoints and installed snapshots are
 * written and synced at once. A killed process keeps what it wrote (the page
 * cache survives); a machine that loses power keeps only what was synced.
 * Recovery is the last checkpoint (or installed snapshot) plus the log after it.
 */
import { needsSync } from "../core/durable";
import { EpochHistory } from "../core/epochs";
import { type ChainConfig, StoreState, type Vote, decodeSnapshot } from "../core";
import type { Update } from "../wire";
import { AppliedHistory } from "./applied";
import type { Rng } from "./prng";

/** What a server starts from: its state, the epoch of its last update, and (for the checker) its history. */
export interface Recovered {
  state: StoreState;
  lastEpoch: number;
  epochs: EpochHistory;
  /** The last configuration the server knew (store/config.ts), if any. */
  config: ChainConfig | null;
  /** --quorum majority: what the server promised and accepted (config.json too), if anything. */
  vote: Vote | null;
  history: AppliedHistory;
}

export interface Storage {
  /**
   * True when acknowledged updates survive a crash of every server: the fault
   * budget may then crash the last server holding them (DESIGN §7, invariant 1).
   */
  readonly durable: boolean;
  /** The configuration a restart recovers, if the storage keeps one across a crash. */
  readonly savedConfig: ChainConfig | null;
  /** A "log" action, in order; `history` is the server's, this update included. */
  log(update: Update, history: AppliedHistory): void;
  /** The server flushed its actions (disk before network): the fsync policy applies. */
  commit(): void;
  /** An "install" action: the state was replaced by this snapshot at `seq`. */
  install(seq: number, epoch: number, snapshot: Uint8Array, history: AppliedHistory): void;
  /** A "checkpoint" action: a snapshot taken at exactly `seq`. */
  checkpoint(seq: number, epoch: number, snapshot: Uint8Array, history: AppliedHistory): void;
  /** A "config" action: the configuration is saved (written and synced at once). */
  saveConfig(config: ChainConfig): void;
  /** A "vote" action: the acceptor's promise and acceptance are saved (written and synced at once). */
  saveVote(vote: Vote): void;
  /** The process died; what it had not synced may be lost (drawn from `rng`). Says what happened. */
  crash(rng: Rng): string;
  /** On (re)start: what the new incarnation begins with. */
  recover(): Recovered;
  /** What a restart would recover now (a crashed server still holds it, for the checker). */
  readonly onDisk: AppliedHistory;
}

export interface Geometry {
  segmentSize: number;
  pageSize: number;
}

/**
 * No disk: every start is from an empty state — except for an acceptor's vote (--quorum
 * majority), which a real server keeps in config.json, synced at once, whatever happens to
 * its log: a majority of acceptors that forget their votes agrees to nothing.
 */
export class NoDisk implements Storage {
  readonly durable = false;
  readonly savedConfig = null;
  readonly onDisk = new AppliedHistory();
  private vote: Vote | null = null;

  constructor(private readonly geometry: Geometry) {}

  log(_update: Update, _history: AppliedHistory): void {}

  commit(): void {}

  install(_seq: number, _epoch: number, _snapshot: Uint8Array, _history: AppliedHistory): void {}

  checkpoint(_seq: number, _epoch: number, _snapshot: Uint8Array, _history: AppliedHistory): void {}

  saveConfig(_config: ChainConfig): void {}

  saveVote(vote: Vote): void {
    this.vote = copyVote(vote);
  }

  crash(_rng: Rng): string {
    return "memory lost (no disk)";
  }

  recover(): Recovered {
    return {
      state: new StoreState(this.geometry.segmentSize, this.geometry.pageSize),
      lastEpoch: 0,
      epochs: new EpochHistory(0, 0),
      config: null,
      vote: this.vote,
      history: new AppliedHistory(),
    };
  }
}


export { needsSync };

export class SimDisk implements Storage {
  readonly durable = true;
  /** The latest checkpoint or installed snapshot, with the history it stands for. */
  private base: { seq: number; epoch: number; snapshot: Uint8Array } | null = null;
  /** Log records after the base, in order; the first `synced` are on stable storage. */
  private records: Update[] = [];
  private synced = 0;
  private syncDue = false;
  /** base history + records: what a restart recovers. */
  onDisk = new AppliedHistory();
  private config: ChainConfig | null = null;
  private vote: Vote | null = null;

  /** The configuration a restart recovers (saved and synced at once: a crash keeps it). */
  get savedConfig(): ChainConfig | null {
    return this.config;
  }

  constructor(
    private readonly geometry: Geometry,
    /** Chance that a crash is a power loss (unsynced records lost) rather than a killed process. */
    private readonly powerLossChance: number,
  ) {}

  log(update: Update, history: AppliedHistory): void {
    this.records.push(update);
    this.onDisk.extendFrom(history, update.seq);
    if (needsSync(update)) this.syncDue = true;
  }

  commit(): void {
    if (this.syncDue) this.synced = this.records.length;
    this.syncDue = false;
  }

  install(seq: number, epoch: number, snapshot: Uint8Array, history: AppliedHistory): void {
    this.setBase(seq, epoch, snapshot, history);
  }

  checkpoint(seq: number, epoch: number, snapshot: Uint8Array, history: AppliedHistory): void {
    this.setBase(seq, epoch, snapshot, history);
  }

  saveConfig(config: ChainConfig): void {
    this.config = { epoch: config.epoch, chain: [...config.chain] };
  }

  saveVote(vote: Vote): void {
    this.vote = copyVote(vote);
  }

  private setBase(seq: number, epoch: number, snapshot: Uint8Array, history: AppliedHistory): void {
    // Written, synced and renamed into place; the log restarts after it and every older
    // segment is deleted (WriteAheadLog.rotate), records of a replaced history included.
    this.base = { seq, epoch, snapshot: snapshot.slice() };
    this.records = [];
    this.synced = 0;
    this.onDisk = history.prefix(seq);
  }

  crash(rng: Rng): string {
    this.syncDue = false;
    if (!rng.chance(this.powerLossChance)) return "process killed: what it wrote survives";
    const lost = this.records.length - this.synced;
    this.records.length = this.synced;
    this.onDisk.truncate((this.base?.seq ?? 0) + this.synced);
    return `power lost: ${lost} unsynced log record(s) gone`;
  }

  recover(): Recovered {
    let state = new StoreState(this.geometry.segmentSize, this.geometry.pageSize);
    let lastEpoch = 0;
    if (this.base) {
      state = decodeSnapshot(this.base.snapshot);
      lastEpoch = this.base.epoch;
    }
    const epochs = new EpochHistory(state.appliedSeq, lastEpoch);
    for (const update of this.records) {
      state.apply(update);
      lastEpoch = update.epoch;
      epochs.note(update.seq, update.epoch);
    }
    // As src/store/recovery.ts: the log replayed is synced before the server serves (a killed
    // process's unsynced records would otherwise count as durable: sim seed 283019540).
    this.synced = this.records.length;
    return { state, lastEpoch, epochs, config: this.config, vote: this.vote, history: this.onDisk.prefix(this.onDisk.length) };
  }
}

function copyVote(vote: Vote): Vote {
  return { promised: vote.promised, accepted: vote.accepted ? { ...vote.accepted, chain: [...vote.accepted.chain] } : null };
}
