/**
 * The updates one server has applied, as the simulator saw them: for each
 * sequence number the epoch and a digest of the update, and a running hash
 * of the whole prefix, so "is A's history a prefix of B's?" is O(1) and "how
 * long a prefix do they share?" is O(log n). A snapshot install replaces the
 * history by the sender's (captured when the snapshot was sent).
 */
import type { Update } from "../wire";
import { mix32, updateDigest } from "./hash";

export class AppliedHistory {
  /** Index s holds the update applied at sequence number s (index 0 unused). */
  private epochs: number[] = [0];
  private updates: (Update | null)[] = [null];
  /** Running hash of updates 1..s, two lanes. */
  private runA: number[] = [0];
  private runB: number[] = [0];

  get length(): number {
    return this.epochs.length - 1;
  }

  /** Appends the update at `length + 1`; anything else is a gap or a duplicate. */
  append(update: Update): string | null {
    if (update.seq !== this.length + 1) return `applied update ${update.seq} after ${this.length} (gap or duplicate)`;
    const [d1, d2] = updateDigest(update);
    const s = this.length;
    this.epochs.push(update.epoch);
    this.updates.push(update);
    this.runA.push(mix32(mix32(this.runA[s]!, d1), update.epoch));
    this.runB.push(mix32(mix32(this.runB[s]! ^ 0x27d4eb2f, d2), update.epoch));
    return null;
  }

  /** A copy of the first `upTo` updates (for a snapshot sent at `upTo`). */
  prefix(upTo: number): AppliedHistory {
    if (upTo > this.length) throw new RangeError(`prefix ${upTo} of a history of ${this.length}`);
    const copy = new AppliedHistory();
    copy.epochs = this.epochs.slice(0, upTo + 1);
    copy.updates = this.updates.slice(0, upTo + 1);
    copy.runA = this.runA.slice(0, upTo + 1);
    copy.runB = this.runB.slice(0, upTo + 1);
    return copy;
  }

  /** True when updates 1..s are the same in both (s within both). */
  samePrefix(other: AppliedHistory, s: number): boolean {
    if (s > this.length || s > other.length) return false;
    return this.runA[s] === other.runA[s] && this.runB[s] === other.runB[s];
  }

  /** The longest s such that updates 1..s agree. */
  commonPrefix(other: AppliedHistory): number {
    let lo = 0;
    let hi = Math.min(this.length, other.length);
    if (this.samePrefix(other, hi)) return hi;
    // Invariant: lo agrees, hi does not.
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1;
      if (this.samePrefix(other, mid)) lo = mid;
      else hi = mid;
    }
    return lo;
  }

  epochAt(s: number): number {
    return this.epochs[s]!;
  }

  updateAt(s: number): Update | null {
    return this.updates[s] ?? null;
  }

  /** Appends other's updates (length, upTo] to this history, which must be a prefix of other's. */
  extendFrom(other: AppliedHistory, upTo: number): void {
    for (let s = this.length + 1; s <= upTo; s++) {
      this.epochs.push(other.epochs[s]!);
      this.updates.push(other.updates[s]!);
      this.runA.push(other.runA[s]!);
      this.runB.push(other.runB[s]!);
    }
  }

  /** Drops updates after `upTo`. */
  truncate(upTo: number): void {
    this.epochs.length = upTo + 1;
    this.updates.length = upTo + 1;
    this.runA.length = upTo + 1;
    this.runB.length = upTo + 1;
  }

  digestAt(s: number): string {
    return this.runA[s]!.toString(16).padStart(8, "0") + this.runB[s]!.toString(16).padStart(8, "0");
  }
}

export function describeUpdate(update: Update | null): string {
  if (!update) return "?";
  const op = update.op;
  let what = "";
  switch (op.type) {
    case "acquire":
      what = `acquire ${op.mode} ${op.name}`;
      break;
    case "release":
      what = `release hold ${op.holdId}${op.pages.length ? ` +${op.pages.length}p` : ""}`;
      break;
    case "create":
      what = `create ${op.name} ${op.size}B`;
      break;
    case "delete":
      what = `delete ${op.name}`;
      break;
    case "cancel":
      what = `cancel ${op.acquireReqNo}`;
      break;
    case "refused":
      what = `refused ${op.code}`;
      break;
    case "expire_session":
      what = `expire session ${op.session}`;
      break;
    case "barrier":
      what = "barrier";
      break;
    case "open_session":
      what = `open session`;
      break;
    case "close_session":
      what = `close session`;
      break;
  }
  return `#${update.seq}@${update.epoch} s${update.session}/${update.reqNo} ${what}`;
}
