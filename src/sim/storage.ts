/**
 * What a simulated server keeps across a crash.
 *
 * NoDisk: nothing — a crashed server loses its memory and restarts empty.
 * StoreDisk: src/store itself (Durability: the write-ahead log, checkpoints, config.json and
 * recovery) with the server's --fsync mode, on a MemoryFs whose crash semantics are a file
 * system's: a killed process keeps what it wrote, a machine that loses power keeps what was
 * synced (and maybe some of what was not). The server also checkpoints as a real one does, in the
 * background once its log has grown past a small --checkpoint-mb drawn per seed.
 */
import { type ChainConfig, type Persist, type Replica, StoreState, type Vote } from "../core";
import { EpochHistory } from "../core/epochs";
// Not from ../store's index: its node file system would load the FFI helpers the simulator does without.
import { BATCH_SYNC_MS, Durability, type FsyncMode } from "../store/durability";
import type { CheckpointInfo } from "../store/checkpoint";
import { isNoSpace } from "../store/files";
import type { LogSizes, StoreIo } from "../store/fs";
import { AppliedHistory } from "./applied";
import { MemoryFs } from "./memory_fs";
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
  /** The servers heard while not serving since that configuration (config.json too). */
  bootPeers: number[];
  history: AppliedHistory;
}

export interface Storage {
  /**
   * True when acknowledged updates survive a crash of every server: the fault
   * budget may then crash the last server holding them (DESIGN §7, invariant 1).
   */
  readonly durable: boolean;
  /**
   * How long before a power loss of every server its acknowledged updates may be lost: 0 with
   * --fsync always (but updates that need no sync), BATCH_SYNC_MS with batch, Infinity with off
   * (which promises nothing then: the simulator cuts only the processes of a whole cluster).
   */
  readonly lossWindowMs: number;
  /** The configuration a restart would recover (read while the server is down). */
  readonly savedConfig: ChainConfig | null;
  /** What a restart would recover (a crashed server still holds it, for the checker). */
  readonly onDisk: AppliedHistory;
  /**
   * On (re)start: what the new incarnation begins with; `later` runs its background I/O at a
   * later event of it (`afterMs` from now, or a short time drawn).
   */
  recover(later: Later): Recovered;
  /** Writes one of the node's disk actions (not synced); `history` is the server's (the item appended once written). */
  write(item: Persist, history: AppliedHistory): CheckpointInfo | null;
  /** Hands what was written to the system (before the batch's leading forwards leave). */
  flush(): void;
  /** The batch's sync, of what was written (not what a full disk left queued): the fsync policy applies. */
  commit(): void;
  /** Whether `bytes` more would leave the disk short of its free-space reserve (Durability.spaceShort). */
  spaceShort(bytes: number): boolean;
  /** A write failed for lack of space. */
  forgetFreeSpace(): void;
  /** The disk fills: a few KiB (drawn from `rng`) are left. Says what happened. */
  fill(rng: Rng): string;
  /** Space is back (an operator freed some). */
  freeSpace(): void;
  /** The log has grown enough for an automatic checkpoint. */
  readonly checkpointDue: boolean;
  /** An automatic checkpoint of `replica`'s state, in the background, if the log has grown enough; `failed` for a failure a server would not expect, `noted` for one it would (a full disk). */
  checkpointIfDue(replica: Replica, failed: (message: string) => void, noted: (message: string) => void): boolean;
  /**
   * The process died, and maybe its machine lost power (drawn from `rng`, unless
   * `processOnly`): then what it had not synced may be lost. Says what happened.
   */
  crash(rng: Rng, processOnly: boolean): string;
}

export type Later = (fn: () => void, afterMs?: number) => void;

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
  readonly lossWindowMs = Number.POSITIVE_INFINITY;
  readonly savedConfig = null;
  readonly onDisk = new AppliedHistory();
  private vote: Vote | null = null;

  constructor(private readonly geometry: Geometry) {}

  write(item: Persist, _history: AppliedHistory): null {
    // An acceptor's vote is kept (a real server's config.json), whatever happens to its log.
    if (item.kind === "vote") this.vote = copyVote(item.vote);
    return null;
  }

  flush(): void {}

  commit(): void {}

  spaceShort(_bytes: number): boolean {
    return false;
  }

  forgetFreeSpace(): void {}

  fill(_rng: Rng): string {
    return "no disk to fill";
  }

  freeSpace(): void {}

  readonly checkpointDue = false;

  checkpointIfDue(_replica: Replica, _failed: (message: string) => void, _noted: (message: string) => void): boolean {
    return false;
  }

  crash(_rng: Rng, _processOnly: boolean): string {
    return "memory lost (no disk)";
  }

  recover(_later: Later): Recovered {
    return {
      state: new StoreState(this.geometry.segmentSize, this.geometry.pageSize),
      lastEpoch: 0,
      epochs: new EpochHistory(0, 0),
      config: null,
      vote: this.vote,
      bootPeers: [],
      history: new AppliedHistory(),
    };
  }
}


const DIR = "/data";
/** Small segments, so that the log goes through several between checkpoints. */
const SIM_LOG_SIZES: LogSizes = { first: 2048, segment: 8192 };

export class StoreDisk implements Storage {
  readonly lossWindowMs: number;
  /** Where the current process's background I/O runs (nowhere once it died). */
  private later: Later = () => {};
  private readonly fs = new MemoryFs((fn) => this.later(fn));
  private durability: Durability | null = null;
  /** Every history the server has had, the current one last (a rollback or a crash may bring an older one back). */
  private readonly histories: AppliedHistory[] = [];
  private crashed: { history: AppliedHistory; config: ChainConfig | null } = { history: new AppliedHistory(), config: null };

  constructor(
    private readonly geometry: Geometry,
    /** Chance that a crash is a power loss rather than a killed process. */
    private readonly powerLossChance: number,
    /** --checkpoint-mb, in bytes (drawn once the simulation is set up). */
    private readonly checkpointBytes: () => number,
    private readonly fsync: FsyncMode = "always",
    /** The simulation's clock (free-space checks, checkpoint retries): never the machine's. */
    private readonly nowMs: () => number = () => 0,
  ) {
    this.lossWindowMs = { always: 0, batch: BATCH_SYNC_MS, off: Number.POSITIVE_INFINITY }[fsync];
  }

  /** Only --fsync always promises that acknowledged updates survive a power loss of every server. */
  get durable(): boolean {
    return this.lossWindowMs === 0;
  }

  get savedConfig(): ChainConfig | null {
    return this.crashed.config;
  }

  get onDisk(): AppliedHistory {
    return this.crashed.history;
  }

  recover(later: Later): Recovered {
    this.later = later;
    const { durability, recovered } = this.open(this.fs);
    this.durability = durability;
    const history = this.historyOf(recovered.state.appliedSeq, recovered.lastEpoch);
    return { state: recovered.state, lastEpoch: recovered.lastEpoch, epochs: recovered.epochs, config: recovered.config, vote: recovered.vote, bootPeers: recovered.bootPeers, history };
  }

  write(item: Persist, history: AppliedHistory): CheckpointInfo | null {
    // The machine replaces its history (a restart, an install), never goes back to an old one.
    if (this.histories.at(-1) !== history) this.histories.push(history);
    return this.disk.persist(item);
  }

  flush(): void {
    this.disk.flush();
  }

  commit(): void {
    this.disk.commitWritten();
  }

  spaceShort(bytes: number): boolean {
    return this.disk.spaceShort(bytes);
  }

  forgetFreeSpace(): void {
    this.disk.forgetFreeSpace();
  }

  fill(rng: Rng): string {
    const left = rng.int(2048);
    this.fs.capacityBytes = this.fs.usedBytes() + left;
    return `disk full: ${left} bytes left`;
  }

  freeSpace(): void {
    this.fs.capacityBytes = Number.POSITIVE_INFINITY;
  }

  get checkpointDue(): boolean {
    return this.disk.checkpointDue;
  }

  checkpointIfDue(replica: Replica, failed: (message: string) => void, noted: (message: string) => void): boolean {
    // As src/server's scheduleCheckpoint, once the node has handed the disk all it applied.
    const written = this.disk.checkpointInBackground(replica.state, replica.lastEpoch, replica.config.epoch);
    // A full disk fails it, as it fails a server's (which warns; the log keeps everything, it is tried again later).
    written?.catch((error: unknown) => (isNoSpace(error) ? noted(`checkpoint failed: ${(error as Error).message}`) : failed(`a background checkpoint failed: ${(error as Error).message}`)));
    return written !== null;
  }

  crash(rng: Rng, processOnly: boolean): string {
    const fs = this.fs;
    const written = this.disk.writtenSeq;
    this.durability = null;
    this.later = () => {};
    const powerLoss = rng.chance(this.powerLossChance) && !processOnly;
    // A server restarts once its disk has room again (an operator freed some): it could not start on a full one.
    this.freeSpace();
    if (powerLoss) fs.powerLoss(rng);
    else fs.kill();
    // What a restart would recover: the recovery itself, on a copy of the disk.
    const { recovered } = this.open(fs.copy());
    this.crashed = { history: this.historyOf(recovered.state.appliedSeq, recovered.lastEpoch), config: recovered.config };
    const at = `a restart recovers seq ${recovered.state.appliedSeq}${recovered.checkpoint ? ` (checkpoint at ${recovered.checkpoint.seq})` : ""}`;
    // The system keeps what a killed process wrote: its log must give all of it back.
    if (!powerLoss && recovered.state.appliedSeq < written) throw new Error(`process killed after writing its log through seq ${written}, but ${at}: the log lost what was written`);
    return powerLoss ? `power lost: what was not synced may be gone; ${at}` : `process killed: what it wrote survives; ${at}`;
  }

  private get disk(): Durability {
    return present(this.durability);
  }

  private open(fs: MemoryFs): ReturnType<typeof Durability.open> {
    const io: StoreIo = { fs, logSizes: SIM_LOG_SIZES, repeat: (ms, fn) => this.repeat(ms, fn), now: this.nowMs };
    return Durability.open(io, DIR, { segmentSize: this.geometry.segmentSize, fsync: this.fsync, checkpointBytes: this.checkpointBytes(), pageSize: this.geometry.pageSize });
  }

  /** --fsync batch's syncs: at disk events of the current process, every `ms` (none once it died). */
  private repeat(ms: number, fn: () => void): () => void {
    let running = true;
    const later = this.later;
    const tick = () => {
      if (!running) return;
      fn();
      later(tick, ms);
    };
    later(tick, ms);
    return () => {
      running = false;
    };
  }

  /** The history of which (seq, epoch) is the last update: a prefix of one the server had. */
  private historyOf(seq: number, epoch: number): AppliedHistory {
    if (seq === 0) return new AppliedHistory();
    for (let i = this.histories.length - 1; i >= 0; i--) {
      const history = this.histories[i]!;
      if (history.length >= seq && history.epochAt(seq) === epoch) return history.prefix(seq);
    }
    throw new Error(`the disk recovered seq ${seq} of epoch ${epoch}, which no history of this server holds`);
  }
}

function present<T>(value: T | null): T {
  if (value === null) throw new Error("the disk is not open (the server is down)");
  return value;
}

function copyVote(vote: Vote): Vote {
  return { promised: vote.promised, accepted: vote.accepted ? { ...vote.accepted, chain: [...vote.accepted.chain] } : null };
}
