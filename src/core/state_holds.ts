/**
 * The datum table's part of the state machine: create and delete, and the holds and
 * queues of each datum (acquire, grant in FIFO order, release, cancel). Functions of
 * the StoreState, called by its apply (state.ts). Pure: no I/O, clock or randomness.
 */
import { present } from "../assert";
import { DATA_COUNT_MAX, WAITERS_PER_DATUM_MAX } from "../constants";
import type { Mode, Op, PageWrite, Reply } from "../wire";
import { nameProblem, sizeProblem } from "./names";
import type { StoreState } from "./state";
import { CACHED_ELSEWHERE, type Datum, type Hold, type Output, type Session, type Waiter, errorReply } from "./state_types";

/** Takes `acquireReqNo` of `session` out of its datum's queue; the waiters it kept back may go. */
export function withdrawWait(state: StoreState, session: Session, acquireReqNo: number, outputs: Output[]): void {
  const waitingOn = present(session.waiting.get(acquireReqNo), "a waiting acquire knows its datum");
  const datum = present(state.data.get(waitingOn), "a session waits on a known datum");
  datum.queue = datum.queue.filter((w) => !(w.session === session.id && w.reqNo === acquireReqNo));
  session.waiting.delete(acquireReqNo);
  // A writer at the front may have kept readers behind it waiting.
  grantWaiters(state, datum, outputs);
}

export function create(state: StoreState, name: string, size: number, seq: number): Reply {
  const badName = nameProblem(name);
  if (badName) return errorReply("EINVAL", badName);
  const badSize = sizeProblem(size, state.segmentSize);
  if (badSize) return errorReply(badSize.code, badSize.message);
  if (state.data.has(name)) return errorReply("EEXIST", `a datum named "${name}" exists already`);
  if (state.data.size >= DATA_COUNT_MAX) return errorReply("ELIMIT", `the segment holds at most ${DATA_COUNT_MAX} data`);
  const pageCount = Math.ceil(size / state.pageSize);
  const firstPage = state.allocator.allocate(pageCount);
  if (firstPage < 0) {
    const largest = state.allocator.largestFreeRun();
    return errorReply("ENOSPC", `no free run of ${pageCount} pages for "${name}" (largest free run: ${largest} pages)`);
  }
  state.pages.zero(firstPage, pageCount, seq);
  state.data.set(name, { name, firstPage, pageCount, size, createdSeq: seq, version: seq, holders: [], queue: [] });
  return { type: "created", offset: firstPage * state.pageSize, size, createdSeq: seq };
}

export function deleteDatum(state: StoreState, session: Session, name: string): Reply {
  const datum = state.data.get(name);
  if (!datum) return errorReply("ENOENT", `no datum named "${name}"`);
  if (datum.queue.length > 0 || datum.holders.some((hold) => !hold.cached)) {
    return errorReply("EBUSY", `"${name}" is held or waited for; delete it once every hold is released`);
  }
  if (datum.holders.some((hold) => hold.session !== session.id)) {
    // Another client may be using its cached grant right now: it must give it back first.
    return errorReply("EBUSY", `"${name}" ${CACHED_ELSEWHERE}; take the write hold (which recalls it), release it, then delete`);
  }
  for (const hold of [...datum.holders]) dropHold(state, hold);
  state.allocator.release(datum.firstPage, datum.pageCount);
  state.data.delete(name);
  return { type: "ok" };
}

export function acquire(state: StoreState, session: Session, reqNo: number, op: Extract<Op, { type: "acquire" }>, outputs: Output[]): Reply | null {
  const datum = state.data.get(op.name);
  if (!datum) return errorReply("ENOENT", `no datum named "${op.name}"`);
  const own = datum.holders.find((hold) => hold.session === session.id);
  if ((own && !own.cached) || datum.queue.some((w) => w.session === session.id)) {
    return errorReply("EDEADLK", `this session already holds or waits for "${op.name}": release it first`);
  }
  if (own) {
    // A client asks by message only when it does not use its cached grant (its lease ran
    // out, or it wants another mode): the grant is given up here, and the queue moves on.
    dropHold(state, own);
    grantWaiters(state, datum, outputs);
  }
  if (datum.queue.length >= WAITERS_PER_DATUM_MAX) {
    return errorReply("ELIMIT", `at most ${WAITERS_PER_DATUM_MAX} waiters on "${op.name}"`);
  }
  const waiter: Waiter = {
    session: session.id,
    reqNo,
    mode: op.mode,
    knownCreatedSeq: op.knownCreatedSeq,
    cachedVersion: op.cachedVersion,
    cache: op.cache === true,
  };
  if (datum.queue.length === 0 && compatible(datum, op.mode)) return grant(state, datum, waiter);
  datum.queue.push(waiter);
  state.contended.add(datum.name);
  session.waiting.set(reqNo, datum.name);
  return null;
}

function grant(state: StoreState, datum: Datum, waiter: Waiter): Reply {
  const hold: Hold = {
    id: state.nextHoldId++,
    session: waiter.session,
    name: datum.name,
    mode: waiter.mode,
    reqNo: waiter.reqNo,
    cacheable: waiter.cache,
    cached: false,
  };
  datum.holders.push(hold);
  state.holds.set(hold.id, hold);
  present(state.sessions.get(waiter.session), "a granted waiter has a session").holds.add(hold.id);
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
    offset: datum.firstPage * state.pageSize,
    size: datum.size,
    createdSeq: datum.createdSeq,
    version: datum.version,
    sendAfter: cacheValid ? waiter.cachedVersion : -1,
  };
}

/** Grants the waiters at the front of the queue that the current holders allow (FIFO). */
export function grantWaiters(state: StoreState, datum: Datum, outputs: Output[]): void {
  while (datum.queue.length > 0 && compatible(datum, datum.queue[0]!.mode)) {
    const waiter = present(datum.queue.shift(), "a non-empty queue has a first waiter");
    const session = present(state.sessions.get(waiter.session), "a waiter has a session");
    session.waiting.delete(waiter.reqNo);
    const reply = grant(state, datum, waiter);
    session.replies.set(waiter.reqNo, reply);
    outputs.push({ session: waiter.session, reqNo: waiter.reqNo, reply });
  }
}

export function release(state: StoreState, session: Session, holdId: number, pages: PageWrite[], seq: number, outputs: Output[]): Reply {
  const hold = state.holds.get(holdId);
  if (!hold || hold.session !== session.id) {
    return errorReply("ESTALE", `hold ${holdId} is not a hold of this session (released, expired or never granted)`);
  }
  const datum = present(state.data.get(hold.name), "a hold is on a known datum");
  if (pages.length > 0) {
    const problem = hold.mode === "read" ? "a read hold cannot ship pages" : pagesProblem(state, datum, pages);
    if (problem) return errorReply("EINVAL", problem);
    for (const page of pages) state.pages.write(page.page, page.bytes, seq);
    datum.version = seq;
  }
  if (hold.cacheable && datum.queue.length === 0) {
    // Nobody waits: the client keeps the hold, and uses it again without a message.
    hold.cached = true;
    return { type: "released", version: datum.version, cached: true };
  }
  // Waiters (a recall's answer, or they came while it was in use): the same update grants them.
  dropHold(state, hold);
  grantWaiters(state, datum, outputs);
  return { type: "released", version: datum.version, cached: false };
}

function pagesProblem(state: StoreState, datum: Datum, pages: PageWrite[]): string | null {
  for (const page of pages) {
    if (page.page < datum.firstPage || page.page >= datum.firstPage + datum.pageCount) {
      return `page ${page.page} is outside "${datum.name}"`;
    }
    if (page.bytes.length !== state.pageSize) return `page ${page.page} has ${page.bytes.length} bytes, not ${state.pageSize}`;
  }
  return null;
}

export function cancel(state: StoreState, session: Session, acquireReqNo: number, outputs: Output[]): Reply {
  if (session.waiting.has(acquireReqNo)) {
    session.replies.set(acquireReqNo, errorReply("ECANCELED", "the wait was cancelled"));
    withdrawWait(state, session, acquireReqNo, outputs);
    return { type: "ok" };
  }
  // Granted already: find the hold by the acquire's number, not through its stored reply.
  // A client that ignores the grant of an acquire it cancelled counts that reply as
  // received, so this very request's doneBelow has just made the state forget it; the
  // hold would then never be released while the session lives.
  for (const holdId of session.holds) {
    const hold = present(state.holds.get(holdId), "a session lists only known holds");
    if (hold.reqNo !== acquireReqNo) continue;
    dropHold(state, hold);
    grantWaiters(state, present(state.data.get(hold.name), "a hold is on a known datum"), outputs);
    return { type: "ok" };
  }
  // Not applied yet (its copy was refused, EUNAVAILABLE, or is still on its way): the acquire
  // is answered as cancelled when it comes, never applied. Applied after the cancel, it was
  // granted to a client that had given it up, and the hold lived as long as the session.
  if (acquireReqNo >= session.doneBelow && !session.replies.has(acquireReqNo)) {
    session.replies.set(acquireReqNo, errorReply("ECANCELED", "the wait was cancelled"));
  }
  return { type: "ok" };
}

export function dropHold(state: StoreState, hold: Hold): void {
  const datum = present(state.data.get(hold.name), "a hold is on a known datum");
  datum.holders = datum.holders.filter((h) => h.id !== hold.id);
  state.holds.delete(hold.id);
  state.sessions.get(hold.session)?.holds.delete(hold.id);
}

function compatible(datum: Datum, mode: Mode): boolean {
  if (mode === "write") return datum.holders.length === 0;
  return !datum.holders.some((hold) => hold.mode === "write");
}
