/**
 * The sessions' part of the state machine: opening one, forgetting the replies its
 * client confirmed, and ending one (close or expiry), which frees its holds and waits.
 * Functions of the StoreState, called by its apply (state.ts). Pure: no I/O, clock or randomness.
 */
import { present } from "../assert";
import { SESSIONS_MAX, SESSION_TIMEOUT_MS_MAX, SESSION_TIMEOUT_MS_MIN } from "../constants";
import type { Reply, Update } from "../wire";
import type { StoreState } from "./state";
import { dropHold, grantWaiters, withdrawWait } from "./state_holds";
import { type Output, type Session, errorReply } from "./state_types";

export function forgetConfirmed(state: StoreState, session: Session, doneBelow: number, outputs: Output[]): void {
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
    if (reqNo < doneBelow) withdrawWait(state, session, reqNo, outputs);
  }
}

export function openSession(state: StoreState, update: Update, timeoutMs: number, outputs: Output[]): void {
  const existing = state.sessions.get(update.session);
  if (existing) {
    state.isDuplicate(existing, update.reqNo, outputs);
    return;
  }
  if (update.session === 0) {
    outputs.push({ session: 0, reqNo: update.reqNo, reply: errorReply("EINVAL", "session id 0 is reserved") });
    return;
  }
  if (!Number.isInteger(timeoutMs) || timeoutMs < SESSION_TIMEOUT_MS_MIN || timeoutMs > SESSION_TIMEOUT_MS_MAX) {
    const message = `a session timeout is ${SESSION_TIMEOUT_MS_MIN}..${SESSION_TIMEOUT_MS_MAX} ms (got ${timeoutMs})`;
    outputs.push({ session: update.session, reqNo: update.reqNo, reply: errorReply("EINVAL", message) });
    return;
  }
  if (state.sessions.size >= SESSIONS_MAX) {
    const reply = errorReply("ELIMIT", `the cluster serves at most ${SESSIONS_MAX} sessions`);
    outputs.push({ session: update.session, reqNo: update.reqNo, reply });
    return;
  }
  const reply: Reply = { type: "session", timeoutMs };
  state.sessions.set(update.session, {
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

/** Releases a session's holds (discarding unreleased writes), drops its waits, grants the next waiters. */
export function endSession(state: StoreState, id: number, outputs: Output[]): void {
  const session = state.sessions.get(id);
  if (!session) return;
  const touched = new Set<string>();
  for (const holdId of session.holds) {
    const hold = present(state.holds.get(holdId), "a session lists only known holds");
    touched.add(hold.name);
    dropHold(state, hold);
  }
  for (const [reqNo, name] of session.waiting) {
    const datum = present(state.data.get(name), "a touched datum is known");
    datum.queue = datum.queue.filter((w) => !(w.session === id && w.reqNo === reqNo));
    touched.add(name);
  }
  state.sessions.delete(id);
  for (const name of touched) grantWaiters(state, present(state.data.get(name), "a touched datum is known"), outputs);
}
