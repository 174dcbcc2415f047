/**
 * The applied updates a server keeps so it can resend a successor the part it
 * lacks. Contiguous: updates (base, last]. Acknowledged updates beyond the
 * bounds are dropped oldest first; unacknowledged ones never are.
 */
import { present } from "../assert";
import { RETAINED_BYTES_MAX, RETAINED_UPDATES_MAX } from "../constants";
import { type Update, encodeUpdateParts } from "../wire/ops";

export class RetainedLog {
  private updates: Update[] = [];
  private bytes = 0;
  /** Sequence number and epoch of the last update before the first retained one. */
  private baseSeq: number;
  private baseEpoch: number;

  constructor(baseSeq: number, baseEpoch: number) {
    this.baseSeq = baseSeq;
    this.baseEpoch = baseEpoch;
  }

  get lastSeq(): number {
    return this.baseSeq + this.updates.length;
  }

  get firstSeq(): number {
    return this.baseSeq + 1;
  }

  append(update: Update): void {
    if (update.seq !== this.lastSeq + 1) throw new Error(`retained log: ${update.seq} after ${this.lastSeq}`);
    this.updates.push(update);
    this.bytes += encodedSize(update);
  }

  /** The epoch of the update at `seq`, or null if it is no longer (or not yet) known. */
  epochAt(seq: number): number | null {
    if (seq === this.baseSeq) return this.baseEpoch;
    if (seq < this.baseSeq || seq > this.lastSeq) return null;
    return present(this.updates[seq - this.baseSeq - 1], "retained log: a seq within (base, last] has its update").epoch;
  }

  /** Updates (after, lastSeq], or null when some of them are no longer retained. */
  after(after: number): Update[] | null {
    if (after < this.baseSeq) return null;
    return this.updates.slice(after - this.baseSeq);
  }

  /** Drops acknowledged updates while over the bounds. */
  trim(ackedSeq: number): void {
    // Trim in batches (past 110% of a bound) so appends stay O(1) amortised.
    if (this.updates.length <= RETAINED_UPDATES_MAX * 1.1 && this.bytes <= RETAINED_BYTES_MAX * 1.1) return;
    let drop = 0;
    let bytes = this.bytes;
    while (
      drop < this.updates.length &&
      this.updates[drop]!.seq <= ackedSeq &&
      (this.updates.length - drop > RETAINED_UPDATES_MAX || bytes > RETAINED_BYTES_MAX)
    ) {
      bytes -= encodedSize(this.updates[drop]!);
      drop++;
    }
    if (drop === 0) return;
    const last = present(this.updates[drop - 1], "retained log: trim dropped an update it does not hold");
    this.baseSeq = last.seq;
    this.baseEpoch = last.epoch;
    this.updates = this.updates.slice(drop);
    this.bytes = bytes;
  }

  /** Starts over after a snapshot at (seq, epoch) replaced the state. */
  reset(seq: number, epoch: number): void {
    this.updates = [];
    this.bytes = 0;
    this.baseSeq = seq;
    this.baseEpoch = epoch;
  }
}

/** The update's encoded length: the encoding is cached and reused to log and forward it. */
export function encodedSize(update: Update): number {
  let bytes = 0;
  for (const part of encodeUpdateParts(update)) bytes += part.length;
  return bytes;
}
