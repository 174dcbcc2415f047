/**
 * The replicated state machine: names, allocator, pages, sessions and holds.
 * Every replica applies the same updates in the same order and so reaches
 * the same state and grants the same holds. Pure: no I/O, clock or randomness.
 */
import { present } from "../assert";
import {
  DATA_COUNT_MAX,
  HOLD_IDS_PER_EPOCH,
  INFLIGHT_PER_SESSION_MAX,
  SESSIONS_MAX,
  SESSION_TIMEOUT_MS_MAX,
  SESSION_TIMEOUT_MS_MIN,
  WAITERS_PER_DATUM_MAX,
} from "../constants";
import type { ErrorCode } from "../errors";
import type { Mode, Op, PageWrite, Reply, Update } from "../wire";
import { PageAllocator } from "./allocator";
import { nameProblem, sizeProblem } from "./names";
import { PageStore } from "./pages";

export type { Update };

/** A reply the tail must deliver to a client. */
export interface Output {
  session: number;
  reqNo: number;
  reply: Reply;
}

export interface Hold {
  id: number;
  session: number;
  name: string;
  mode: Mode;
  reqNo: number;
  /** The client asked to keep the hold after its release while nobody waits (a cached grant). */
  cacheable: boolean;
  /**
   * Released and kept: the client may use it again locally, without a message, at any
   * time. The servers cannot tell whether it is in use; they recall it when someone waits.
   */
  cached: boolean;
}

/** The head asks `session` to give back its cached grant `holdId`: a waiter of `name` conflicts with it. */
export interface Recall {
  session: number;
  holdId: number;
  name: string;
}

interface Waiter {
  session: number;
  reqNo: number;
  mode: Mode;
  knownCreatedSeq: number;
  cachedVersion: number;
  cache: boolean;
}

/** Why a delete of a datum another client caches is refused; the client recalls and retries on it. */
export const CACHED_ELSEWHERE = "is cached by another client";

export interface Datum {
  name: string;
  firstPage: number;
  pageCount: number;
  size: number;
  createdSeq: number;
  /** Sequence number of the last write release that changed a page (or of the creation). */
  version: number;
  holders: Hold[];
  queue: Waiter[];
}

export interface Session {
  id: number;
  timeoutMs: number;
  /** Reply of each request not yet confirmed by the client; null while an acquire waits. */
  replies: Map<number, Reply | null>;
  /** The client has the replies of every request below this number. */
  doneBelow: number;
  /** The highest request number of this session that this history sequenced. */
  lastReqNo: number;
  holds: Set<number>;
  /** Waiting acquires: request number → datum name. */
  waiting: Map<number, string>;
}

/** What `list` and `stat` tell about a datum (part of the public API, src/client/types.ts). */
export interface DatumInfo {
  name: string;
  /** Bytes the datum was created with. */
  size: number;
  /** Byte offset of the datum in the segment (page aligned). */
  offset: number;
  /** Sequence number of the last write release (or of the creation). */
  version: number;
  /** Holds in use: granted by a message and not released yet. */
  readers: number;
  writer: boolean;
  /** Cached grants (released and kept; each may be in use locally, without a message). */
  cachedReaders: number;
  cachedWriter: boolean;
  waiters: number;
}

function error(code: ErrorCode, message: string): Reply {
  return { type: "error", code, message };
}

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
      this.endSession(op.session, outputs);
      return outputs;
    }
    if (op.type === "open_session") {
      this.openSession(update, op.timeoutMs, outputs);
      return outputs;
    }
    const session = this.sessions.get(update.session);
    if (!session) {
      const reply = error("ESESSION", "the session expired or is unknown: its holds were released; reconnect");
      outputs.push({ session: update.session, reqNo: update.reqNo, reply });
      return outputs;
    }
    if (this.lostRequests(session, update.doneBelow)) {
      // The client holds replies to requests this history never sequenced: a partition's
      // other side acknowledged them (default mode) and lost them when the sides met.
      // Its holds here may be ones it released there: end the session, so they are freed
      // and the client learns (ESESSION) that it must start again from what is stored.
      this.endSession(session.id, outputs);
      const message = `the session lost requests ${session.lastReqNo + 1}..${update.doneBelow - 1} that another chain acknowledged (a partition healed): its holds were released; reconnect`;
      outputs.push({ session: session.id, reqNo: update.reqNo, reply: error("ESESSION", message) });
      return outputs;
    }
    session.lastReqNo = Math.max(session.lastReqNo, update.reqNo);
    this.forgetConfirmed(session, update.doneBelow, outputs);
    if (this.isDuplicate(session, update.reqNo, outputs)) return outputs;
    if (session.replies.size >= INFLIGHT_PER_SESSION_MAX) {
      const reply = error("ELIMIT", `at most ${INFLIGHT_PER_SESSION_MAX} requests of a session in flight`);
      outputs.push({ session: session.id, reqNo: update.reqNo, reply });
      return outputs;
    }
    if (op.type === "close_session") {
      this.endSession(session.id, outputs);
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

  private forgetConfirmed(session: Session, doneBelow: number, outputs: Output[]): void {
    if (doneBelow <= session.doneBelow) return;
    session.doneBelow = doneBelow;
    for (const [reqNo, reply] of session.replies) {
      if (reqNo < doneBelow && reply !== null) session.replies.delete(reqNo);
    }
    // An acquire still waiting here that the client counts as done was granted in a history
    // that lost the grant (a whole-cluster crash forgets updates that needed no sync). Granted
    // again later, to a client that no longer waits for it, it would be held while the session
    // lives (sim seed 9701089): it is withdrawn, as a cancel does.
    for (const [reqNo] of session.waiting) {
      if (reqNo < doneBelow) this.withdrawWait(session, reqNo, outputs);
    }
  }

  /** Takes `acquireReqNo` of `session` out of its datum's queue; the waiters it kept back may go. */
  private withdrawWait(session: Session, acquireReqNo: number, outputs: Output[]): void {
    const waitingOn = present(session.waiting.get(acquireReqNo), "a waiting acquire knows its datum");
    const datum = present(this.data.get(waitingOn), "a session waits on a known datum");
    datum.queue = datum.queue.filter((w) => !(w.session === session.id && w.reqNo === acquireReqNo));
    session.waiting.delete(acquireReqNo);
    // A writer at the front may have kept readers behind it waiting.
    this.grantWaiters(datum, outputs);
  }

  private openSession(update: Update, timeoutMs: number, outputs: Output[]): void {
    const existing = this.sessions.get(update.session);
    if (existing) {
      this.isDuplicate(existing, update.reqNo, outputs);
      return;
    }
    if (update.session === 0) {
      outputs.push({ session: 0, reqNo: update.reqNo, reply: error("EINVAL", "session id 0 is reserved") });
      return;
    }
    if (!Number.isInteger(timeoutMs) || timeoutMs < SESSION_TIMEOUT_MS_MIN || timeoutMs > SESSION_TIMEOUT_MS_MAX) {
      const message = `a session timeout is ${SESSION_TIMEOUT_MS_MIN}..${SESSION_TIMEOUT_MS_MAX} ms (got ${timeoutMs})`;
      outputs.push({ session: update.session, reqNo: update.reqNo, reply: error("EINVAL", message) });
      return;
    }
    if (this.sessions.size >= SESSIONS_MAX) {
      const reply = error("ELIMIT", `the cluster serves at most ${SESSIONS_MAX} sessions`);
      outputs.push({ session: update.session, reqNo: update.reqNo, reply });
      return;
    }
    const reply: Reply = { type: "session", timeoutMs };
    this.sessions.set(update.session, {
      id: update.session,
      timeoutMs,
      replies: new Map([[update.reqNo, reply]]),
      doneBelow: 0,
      lastReqNo: update.reqNo,
      holds: new Set(),
      waiting: new Map(),
    });
    outputs.push({ session: update.session, reqNo: update.reqNo, reply });
  }

  private execute(session: Session, update: Update, outputs: Output[]): Reply | null {
    const { op } = update;
    switch (op.type) {
      case "create":
        return this.create(op.name, op.size, update.seq);
      case "delete":
        return this.delete(session, op.name);
      case "acquire":
        return this.acquire(session, update.reqNo, op, outputs);
      case "release":
        return this.release(session, op.holdId, op.pages, update.seq, outputs);
      case "cancel":
        return this.cancel(session, op.acquireReqNo, outputs);
      case "refused":
        if (op.holdId > 0) this.release(session, op.holdId, [], update.seq, outputs);
        return { type: "error", code: op.code, message: op.message };
      case "checkpoint":
        // The state does not change: each replica writes it to disk at this seq.
        return { type: "checkpointed", seq: update.seq };
      default:
        return error("EINVAL", `operation ${op.type} is not a client operation`);
    }
  }

  private create(name: string, size: number, seq: number): Reply {
    const badName = nameProblem(name);
    if (badName) return error("EINVAL", badName);
    const badSize = sizeProblem(size, this.segmentSize);
    if (badSize) return error(badSize.code, badSize.message);
    if (this.data.has(name)) return error("EEXIST", `a datum named "${name}" exists already`);
    if (this.data.size >= DATA_COUNT_MAX) return error("ELIMIT", `the segment holds at most ${DATA_COUNT_MAX} data`);
    const pageCount = Math.ceil(size / this.pageSize);
    const firstPage = this.allocator.allocate(pageCount);
    if (firstPage < 0) {
      const largest = this.allocator.largestFreeRun();
      return error("ENOSPC", `no free run of ${pageCount} pages for "${name}" (largest free run: ${largest} pages)`);
    }
    this.pages.zero(firstPage, pageCount, seq);
    this.data.set(name, { name, firstPage, pageCount, size, createdSeq: seq, version: seq, holders: [], queue: [] });
    return { type: "created", offset: firstPage * this.pageSize, size, createdSeq: seq };
  }

  private delete(session: Session, name: string): Reply {
    const datum = this.data.get(name);
    if (!datum) return error("ENOENT", `no datum named "${name}"`);
    if (datum.queue.length > 0 || datum.holders.some((hold) => !hold.cached)) {
      return error("EBUSY", `"${name}" is held or waited for; delete it once every hold is released`);
    }
    if (datum.holders.some((hold) => hold.session !== session.id)) {
      // Another client may be using its cached grant right now: it must give it back first.
      return error("EBUSY", `"${name}" ${CACHED_ELSEWHERE}; take the write hold (which recalls it), release it, then delete`);
    }
    for (const hold of [...datum.holders]) this.dropHold(hold);
    this.allocator.release(datum.firstPage, datum.pageCount);
    this.data.delete(name);
    return { type: "ok" };
  }

  private acquire(session: Session, reqNo: number, op: Extract<Op, { type: "acquire" }>, outputs: Output[]): Reply | null {
    const datum = this.data.get(op.name);
    if (!datum) return error("ENOENT", `no datum named "${op.name}"`);
    const own = datum.holders.find((hold) => hold.session === session.id);
    if ((own && !own.cached) || datum.queue.some((w) => w.session === session.id)) {
      return error("EDEADLK", `this session already holds or waits for "${op.name}": release it first`);
    }
    if (own) {
      // A client asks by message only when it does not use its cached grant (its lease ran
      // out, or it wants another mode): the grant is given up here, and the queue moves on.
      this.dropHold(own);
      this.grantWaiters(datum, outputs);
    }
    if (datum.queue.length >= WAITERS_PER_DATUM_MAX) {
      return error("ELIMIT", `at most ${WAITERS_PER_DATUM_MAX} waiters on "${op.name}"`);
    }
    const waiter: Waiter = {
      session: session.id,
      reqNo,
      mode: op.mode,
      knownCreatedSeq: op.knownCreatedSeq,
      cachedVersion: op.cachedVersion,
      cache: op.cache === true,
    };
    if (datum.queue.length === 0 && compatible(datum, op.mode)) return this.grant(datum, waiter);
    datum.queue.push(waiter);
    this.contended.add(datum.name);
    session.waiting.set(reqNo, datum.name);
    return null;
  }

  private grant(datum: Datum, waiter: Waiter): Reply {
    const hold: Hold = {
      id: this.nextHoldId++,
      session: waiter.session,
      name: datum.name,
      mode: waiter.mode,
      reqNo: waiter.reqNo,
      cacheable: waiter.cache,
      cached: false,
    };
    datum.holders.push(hold);
    this.holds.set(hold.id, hold);
    present(this.sessions.get(waiter.session), "a granted waiter has a session").holds.add(hold.id);
    // A cached version newer than the datum's means the client saw a history this
    // state no longer has (writes lost in an outage): its copy is not to be trusted.
    const cacheValid =
      waiter.knownCreatedSeq === datum.createdSeq &&
      waiter.cachedVersion >= datum.createdSeq &&
      waiter.cachedVersion <= datum.version;
    return {
      type: "granted",
      holdId: hold.id,
      mode: hold.mode,
      name: datum.name,
      offset: datum.firstPage * this.pageSize,
      size: datum.size,
      createdSeq: datum.createdSeq,
      version: datum.version,
      sendAfter: cacheValid ? waiter.cachedVersion : -1,
    };
  }

  /** Grants the waiters at the front of the queue that the current holders allow (FIFO). */
  private grantWaiters(datum: Datum, outputs: Output[]): void {
    while (datum.queue.length > 0 && compatible(datum, datum.queue[0]!.mode)) {
      const waiter = present(datum.queue.shift(), "a non-empty queue has a first waiter");
      const session = present(this.sessions.get(waiter.session), "a waiter has a session");
      session.waiting.delete(waiter.reqNo);
      const reply = this.grant(datum, waiter);
      session.replies.set(waiter.reqNo, reply);
      outputs.push({ session: waiter.session, reqNo: waiter.reqNo, reply });
    }
  }

  private release(session: Session, holdId: number, pages: PageWrite[], seq: number, outputs: Output[]): Reply {
    const hold = this.holds.get(holdId);
    if (!hold || hold.session !== session.id) {
      return error("ESTALE", `hold ${holdId} is not a hold of this session (released, expired or never granted)`);
    }
    const datum = present(this.data.get(hold.name), "a hold is on a known datum");
    if (pages.length > 0) {
      const problem = hold.mode === "read" ? "a read hold cannot ship pages" : this.pagesProblem(datum, pages);
      if (problem) return error("EINVAL", problem);
      for (const page of pages) this.pages.write(page.page, page.bytes, seq);
      datum.version = seq;
    }
    if (hold.cacheable && datum.queue.length === 0) {
      // Nobody waits: the client keeps the hold, and uses it again without a message.
      hold.cached = true;
      return { type: "released", version: datum.version, cached: true };
    }
    // Waiters (a recall's answer, or they came while it was in use): the same update grants them.
    this.dropHold(hold);
    this.grantWaiters(datum, outputs);
    return { type: "released", version: datum.version, cached: false };
  }

  private pagesProblem(datum: Datum, pages: PageWrite[]): string | null {
    for (const page of pages) {
      if (page.page < datum.firstPage || page.page >= datum.firstPage + datum.pageCount) {
        return `page ${page.page} is outside "${datum.name}"`;
      }
      if (page.bytes.length !== this.pageSize) return `page ${page.page} has ${page.bytes.length} bytes, not ${this.pageSize}`;
    }
    return null;
  }

  private cancel(session: Session, acquireReqNo: number, outputs: Output[]): Reply {
    if (session.waiting.has(acquireReqNo)) {
      session.replies.set(acquireReqNo, error("ECANCELED", "the wait was cancelled"));
      this.withdrawWait(session, acquireReqNo, outputs);
      return { type: "ok" };
    }
    // Granted already: find the hold by the acquire's number, not through its stored reply.
    // A client that ignores the grant of an acquire it cancelled counts that reply as
    // received, so this very request's doneBelow has just made the state forget it; the
    // hold would then never be released while the session lives.
    for (const holdId of session.holds) {
      const hold = present(this.holds.get(holdId), "a session lists only known holds");
      if (hold.reqNo !== acquireReqNo) continue;
      this.dropHold(hold);
      this.grantWaiters(present(this.data.get(hold.name), "a hold is on a known datum"), outputs);
      return { type: "ok" };
    }
    // Not applied yet (its copy was refused, EUNAVAILABLE, or is still on its way): the acquire
    // is answered as cancelled when it comes, never applied. Applied after the cancel, it was
    // granted to a client that had given it up, and the hold lived as long as the session.
    if (acquireReqNo >= session.doneBelow && !session.replies.has(acquireReqNo)) {
      session.replies.set(acquireReqNo, error("ECANCELED", "the wait was cancelled"));
    }
    return { type: "ok" };
  }

  private dropHold(hold: Hold): void {
    const datum = present(this.data.get(hold.name), "a hold is on a known datum");
    datum.holders = datum.holders.filter((h) => h.id !== hold.id);
    this.holds.delete(hold.id);
    this.sessions.get(hold.session)?.holds.delete(hold.id);
  }

  /** Releases a session's holds (discarding unreleased writes), drops its waits, grants the next waiters. */
  private endSession(id: number, outputs: Output[]): void {
    const session = this.sessions.get(id);
    if (!session) return;
    const touched = new Set<string>();
    for (const holdId of session.holds) {
      const hold = present(this.holds.get(holdId), "a session lists only known holds");
      touched.add(hold.name);
      this.dropHold(hold);
    }
    for (const [reqNo, name] of session.waiting) {
      const datum = present(this.data.get(name), "a touched datum is known");
      datum.queue = datum.queue.filter((w) => !(w.session === id && w.reqNo === reqNo));
      touched.add(name);
    }
    this.sessions.delete(id);
    for (const name of touched) this.grantWaiters(present(this.data.get(name), "a touched datum is known"), outputs);
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

  /** Pages of the datum at (offset, size) written after `sendAfter` (all when -1), for a grant. */
  pagesAfter(offset: number, size: number, sendAfter: number, version?: number): PageWrite[] {
    // Nothing was written after the client's copy (the datum's version says so): skip the scan.
    if (version !== undefined && sendAfter >= version) return [];
    const first = offset / this.pageSize;
    const end = first + Math.ceil(size / this.pageSize);
    const seqs = this.pages.pageSeq;
    const pages: PageWrite[] = [];
    for (let page = first; page < end; page++) {
      if (sendAfter < 0 || seqs[page]! > sendAfter) pages.push({ page, bytes: this.pages.read(page) });
    }
    return pages;
  }
}

function compatible(datum: Datum, mode: Mode): boolean {
  if (mode === "write") return datum.holders.length === 0;
  return !datum.holders.some((hold) => hold.mode === "write");
}
