/**
 * The replicated state machine: names, allocator, pages, sessions and holds.
 * Every replica applies the same updates in the same order and so reaches
 * the same state and grants the same holds. Pure: no I/O, clock or randomness.
 * Its parts: state_types.ts (the data), state_holds.ts (data, holds and queues),
 * state_sessions.ts (sessions); here, the order of checks of an update, and the reads.
 */
import { HOLD_IDS_PER_EPOCH, INFLIGHT_PER_SESSION_MAX } from "../constants";
import type { PageWrite, Reply, Update } from "../wire";
import { PageAllocator } from "./allocator";
import { PageStore } from "./pages";
import { acquire, cancel, create, deleteDatum, release } from "./state_holds";
import { endSession, forgetConfirmed, openSession } from "./state_sessions";
import { type Datum, type DatumInfo, type Hold, type Output, type Recall, type Session, errorReply } from "./state_types";

export type { Update };
export { CACHED_ELSEWHERE } from "./state_types";
export type { Datum, DatumInfo, Hold, Output, Recall, Session } from "./state_types";

export class StoreState {
  readonly pages: PageStore;
  readonly allocator: PageAllocator;
  readonly data = new Map<string, Datum>();
  readonly sessions = new Map<number, Session>();
  readonly holds = new Map<number, Hold>();
  /** Names of data whose queue may be non-empty: where recalls can be due (pruned by recallsDue). */
  readonly contended = new Set<string>();
  nextHoldId = 1;
  appliedSeq = 0;

  constructor(readonly segmentSize: number, readonly pageSize: number, allocator?: PageAllocator) {
    const pageCount = segmentSize / pageSize;
    if (!Number.isInteger(pageCount) || pageCount <= 0) {
      throw new RangeError(`segment size ${segmentSize} is not a positive multiple of the page size ${pageSize}`);
    }
    this.pages = new PageStore(pageSize, pageCount);
    this.allocator = allocator ?? new PageAllocator(pageCount);
  }

  /** Applies the next update of the total order and returns the replies it produces. */
  apply(update: Update): Output[] {
    if (update.seq !== this.appliedSeq + 1) {
      throw new Error(`update ${update.seq} applied out of order after ${this.appliedSeq}`);
    }
    this.appliedSeq = update.seq;
    // Hold ids are fencing tokens. Updates that only move holds are not fsynced,
    // so a full-cluster crash can roll some back: each epoch hands out ids from a
    // range of its own, so no id is ever given twice.
    this.nextHoldId = Math.max(this.nextHoldId, update.epoch * HOLD_IDS_PER_EPOCH);
    const outputs: Output[] = [];
    const { op } = update;
    // Only the system (session 0, the head's monitor) expires sessions; from a client it is EINVAL below.
    if (op.type === "expire_session" && update.session === 0) {
      endSession(this, op.session, outputs);
      return outputs;
    }
    if (op.type === "barrier" && update.session === 0) return outputs;
    if (op.type === "open_session") {
      openSession(this, update, op.timeoutMs, outputs);
      return outputs;
    }
    const session = this.sessions.get(update.session);
    if (!session) {
      const reply = errorReply("ESESSION", "the session expired or is unknown: its holds were released; reconnect");
      outputs.push({ session: update.session, reqNo: update.reqNo, reply });
      return outputs;
    }
    if (this.lostRequests(session, update.doneBelow)) {
      // The client holds replies to requests this history never sequenced: a partition's
      // other side acknowledged them (default mode) and lost them when the sides met.
      // Its holds here may be ones it released there: end the session, so they are freed
      // and the client learns (ESESSION) that it must start again from what is stored.
      endSession(this, session.id, outputs);
      const message = `the session lost requests ${session.lastReqNo + 1}..${update.doneBelow - 1} that another chain acknowledged (a partition healed): its holds were released; reconnect`;
      outputs.push({ session: session.id, reqNo: update.reqNo, reply: errorReply("ESESSION", message) });
      return outputs;
    }
    session.lastReqNo = Math.max(session.lastReqNo, update.reqNo);
    forgetConfirmed(this, session, update.doneBelow, outputs);
    if (this.isDuplicate(session, update.reqNo, outputs)) return outputs;
    if (session.replies.size >= INFLIGHT_PER_SESSION_MAX) {
      const reply = errorReply("ELIMIT", `at most ${INFLIGHT_PER_SESSION_MAX} requests of a session in flight`);
      outputs.push({ session: session.id, reqNo: update.reqNo, reply });
      return outputs;
    }
    if (op.type === "close_session") {
      endSession(this, session.id, outputs);
      outputs.push({ session: session.id, reqNo: update.reqNo, reply: { type: "ok" } });
      return outputs;
    }
    const reply = this.execute(session, update, outputs);
    session.replies.set(update.reqNo, reply);
    outputs.push({ session: session.id, reqNo: update.reqNo, reply: reply ?? { type: "queued" } });
    return outputs;
  }

  /** The client, confirming replies below `doneBelow`, has some this history never sequenced. */
  lostRequests(session: Session, doneBelow: number): boolean {
    return doneBelow > session.lastReqNo + 1;
  }

  /** True (with the stored reply re-sent, if any) when the request was applied before. */
  isDuplicate(session: Session, reqNo: number, outputs?: Output[]): boolean {
    if (reqNo < session.doneBelow) return true;
    if (!session.replies.has(reqNo)) return false;
    const stored = session.replies.get(reqNo);
    if (outputs) outputs.push({ session: session.id, reqNo, reply: stored ?? { type: "queued" } });
    return true;
  }

  private execute(session: Session, update: Update, outputs: Output[]): Reply | null {
    const { op } = update;
    switch (op.type) {
      case "create":
        return create(this, op.name, op.size, update.seq);
      case "delete":
        return deleteDatum(this, session, op.name);
      case "acquire":
        return acquire(this, session, update.reqNo, op, outputs);
      case "release":
        return release(this, session, op.holdId, op.pages, update.seq, outputs);
      case "cancel":
        return cancel(this, session, op.acquireReqNo, outputs);
      case "refused":
        if (op.holdId > 0) release(this, session, op.holdId, [], update.seq, outputs);
        return { type: "error", code: op.code, message: op.message };
      case "checkpoint":
        // The state does not change: each replica writes it to disk at this seq.
        return { type: "checkpointed", seq: update.seq };
      default:
        return errorReply("EINVAL", `operation ${op.type} is not a client operation`);
    }
  }

  // ---- reads of committed state (served by the tail) ----

  info(datum: Datum): DatumInfo {
    return {
      name: datum.name,
      size: datum.size,
      offset: datum.firstPage * this.pageSize,
      version: datum.version,
      readers: datum.holders.filter((h) => h.mode === "read" && !h.cached).length,
      writer: datum.holders.some((h) => h.mode === "write" && !h.cached),
      cachedReaders: datum.holders.filter((h) => h.mode === "read" && h.cached).length,
      cachedWriter: datum.holders.some((h) => h.mode === "write" && h.cached),
      waiters: datum.queue.length,
    };
  }

  /**
   * The recalls the head owes: every cached grant that conflicts with the first waiter of its
   * datum. Derived from replicated state only, so any head (a new one after a failover too)
   * sends the same ones; the head sends them again until the give-back or the session's end.
   */
  recallsDue(): Recall[] {
    const recalls: Recall[] = [];
    for (const name of this.contended) {
      const datum = this.data.get(name);
      if (!datum || datum.queue.length === 0) {
        this.contended.delete(name);
        continue;
      }
      recalls.push(...this.recallsOf(datum));
    }
    return recalls;
  }

  /** Cached grants of `datum` that block its first waiter. */
  recallsOf(datum: Datum): Recall[] {
    const first = datum.queue[0];
    if (!first) return [];
    return datum.holders
      .filter((hold) => hold.cached && (first.mode === "write" || hold.mode === "write"))
      .map((hold) => ({ session: hold.session, holdId: hold.id, name: datum.name }));
  }

  list(): DatumInfo[] {
    return [...this.data.values()].map((datum) => this.info(datum)).sort((a, b) => a.name.localeCompare(b.name));
  }

  /**
   * Pages of the datum at (offset, size) written after `sendAfter`, for a grant. With -1 (the
   * client has no valid copy), every page written since the datum's creation at `createdSeq`:
   * the others are zeros and the client zeroes them (a fresh 64 MiB datum's first grant carried
   * 64 MiB of zeros, and the tail kept a 64 MiB reply buffer).
   */
  pagesAfter(offset: number, size: number, sendAfter: number, version?: number, createdSeq = -1): PageWrite[] {
    // Nothing was written after the client's copy (the datum's version says so): skip the scan.
    if (version !== undefined && sendAfter >= version) return [];
    const first = offset / this.pageSize;
    const end = first + Math.ceil(size / this.pageSize);
    const seqs = this.pages.pageSeq;
    const pages: PageWrite[] = [];
    for (let page = first; page < end; page++) {
      if (sendAfter < 0 ? seqs[page] !== createdSeq : seqs[page]! > sendAfter) pages.push({ page, bytes: this.pages.read(page) });
    }
    return pages;
  }
}
