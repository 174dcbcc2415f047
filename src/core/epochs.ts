/**
 * Which epoch sequenced each update of a server's history, kept as runs (the
 * first seq of each epoch), as Raft keeps a term per index. Two histories
 * that hold the same (seq, epoch) agree up to seq: an epoch's head sequences
 * each number once, and a server keeps an epoch's updates only on top of the
 * history that epoch's chain was built on. Unlike the retained log, this
 * survives restarts (rebuilt from the checkpoint and the replayed log) and
 * costs a few numbers per epoch, so a server can tell whether a chain's
 * history is a prefix of its own long after the updates themselves are gone.
 */
import { EPOCH_RUNS_MAX } from "../constants";

export class EpochHistory {
  /** firstSeq[i]..firstSeq[i+1]-1 were sequenced in epoch[i]. */
  private firstSeq: number[] = [];
  private epoch: number[] = [];
  /** The lowest seq whose epoch is known. */
  private knownFrom: number;
  private lastSeq: number;

  /** A history known only from (seq, epoch): a checkpoint's, or a snapshot's. */
  constructor(seq: number, epoch: number) {
    this.knownFrom = seq;
    this.lastSeq = seq;
    this.firstSeq.push(seq);
    this.epoch.push(epoch);
  }

  /** The next update of the history. */
  note(seq: number, epoch: number): void {
    if (seq !== this.lastSeq + 1) throw new Error(`epoch history: seq ${seq} after ${this.lastSeq}`);
    this.lastSeq = seq;
    if (this.epoch[this.epoch.length - 1] === epoch) return;
    this.firstSeq.push(seq);
    this.epoch.push(epoch);
    if (this.firstSeq.length > EPOCH_RUNS_MAX) {
      this.firstSeq.shift();
      this.epoch.shift();
      this.knownFrom = this.firstSeq[0]!;
    }
  }

  /** The epoch of the update at `seq` (0 for seq 0), or null when it is not known. */
  epochAt(seq: number): number | null {
    if (seq === 0) return 0;
    if (seq < this.knownFrom || seq > this.lastSeq) return null;
    let index = this.firstSeq.length - 1;
    while (this.firstSeq[index]! > seq) index--;
    return this.epoch[index]!;
  }

  /** Our history holds the update (seq, epoch): a history ending there is a prefix of ours. */
  extends(seq: number, epoch: number): boolean {
    return this.epochAt(seq) === epoch;
  }
}
