/**
 * --fsync always without one sync after another down the chain (issue 13, item 4).
 *
 * Every server forwards an update before it writes it (server/carrier.ts), and syncs while
 * the next server does the same: the chain's syncs overlap instead of adding up. The promise is
 * unchanged: the tail replies to an update only once every server of the chain has synced
 * it, and whatever depends on it (every later reply) waits too. How a tail knows: each
 * server says, on its forwards, how far it and every server before it have synced
 * (`durable`); a server whose own sync moves that point sends an empty forward to say so.
 *
 * "Durable through s" means every update up to s that needs a sync (core/durable.ts) is
 * synced; updates that need none (holds, sessions) wait for nothing of their own.
 *
 * Said down the chain, the head's sync reaches the tail one hop per server after it ends.
 * So every server before the tail also tells the tail directly how far it has synced
 * (`synced`), and the tail takes the better of two lower bounds: what its predecessor said
 * for the chain before it, and the least of what each server said of itself (a chain of
 * five: 4-12% off a cycle; of three, where the middle's sync is the last, nothing:
 * docs/benchmarks.md, session 26).
 */
import { tailOf } from "./chain";
import type { Output } from "./state";
import type { MemberSynced, ReplicaShared } from "./replica_shared";

/** How far this server and every server before it in the chain are durable (Infinity: syncs are not awaited). */
export function chainDurableSeq(r: ReplicaShared): number {
  if (!r.options.awaitSync) return Infinity;
  if (r.isHead) return r.durableSeq;
  const upstream = r.upstreamDurable;
  // Said by our predecessor in this configuration, about the history we share with it.
  const said = upstream.from === r.upstream && upstream.epoch === r.config.epoch ? upstream.seq : 0;
  return Math.min(r.durableSeq, r.isTail ? Math.max(said, membersSyncedSeq(r)) : said);
}

/** As tail: how far every server before us said it has synced, each of our history (0: one said nothing). */
function membersSyncedSeq(r: ReplicaShared): number {
  let seq = Infinity;
  for (const id of r.config.chain) {
    if (id === r.selfId) break;
    const said = r.memberSynced.get(id);
    if (said === undefined || said.epoch !== r.config.epoch) return 0;
    checkPendingSynced(r, said);
    seq = Math.min(seq, said.seq);
  }
  return seq === Infinity ? 0 : seq;
}

/**
 * A `synced` notice from a server of our chain, in our epoch. Equal (seq, epoch) pairs mean
 * equal histories, so it counts once our history has its `seq` with the same epoch; it may
 * overtake the forward that brings us that update (another connection): kept until then.
 */
export function noteMemberSynced(r: ReplicaShared, from: number, epoch: number, seq: number, seqEpoch: number): void {
  if (epoch !== r.config.epoch || !r.config.chain.includes(from)) return;
  let said = r.memberSynced.get(from);
  if (said === undefined || said.epoch !== epoch) {
    said = { epoch, seq: 0, pending: null };
    r.memberSynced.set(from, said);
  }
  if (seq > said.seq && seq > (said.pending?.seq ?? 0)) said.pending = { seq, seqEpoch };
  checkPendingSynced(r, said);
}

function checkPendingSynced(r: ReplicaShared, said: MemberSynced): void {
  const pending = said.pending;
  if (pending === null || pending.seq > r.state.appliedSeq) return;
  if (r.epochs.epochAt(pending.seq) === pending.seqEpoch) said.seq = Math.max(said.seq, pending.seq);
  said.pending = null;
}

/**
 * A member before the tail tells the tail how far it has synced, each time that moves (and in
 * each new epoch). Not a head whose successor is the tail: its forwards say just that.
 */
export function tellTailSynced(r: ReplicaShared): void {
  if (!r.options.awaitSync || r.status !== "member" || r.isTail || (r.isHead && r.config.chain.length === 2)) return;
  const seq = Math.min(r.durableSeq, r.state.appliedSeq);
  const told = r.syncedTold;
  if (seq <= 0 || (told.epoch === r.config.epoch && seq <= told.seq)) return;
  const seqEpoch = r.epochs.epochAt(seq);
  const tail = tailOf(r.config);
  if (seqEpoch === null || tail === null) return;
  r.syncedTold = { epoch: r.config.epoch, seq };
  r.send(tail, { type: "synced", from: r.selfId, epoch: r.config.epoch, seq, seqEpoch });
}

/** As tail: a reply goes now if everything it rests on is durable on the whole chain, else it waits. */
export function replyWhenDurable(r: ReplicaShared, output: Output): void {
  const needs = r.lastSyncNeededSeq;
  if (r.heldReplies.length === 0 && needs <= chainDurableSeq(r)) {
    r.out.push({ kind: "reply", output });
    return;
  }
  r.heldReplies.push({ needs, output });
}

/** Sends the replies whose updates the chain has now synced; drops them if we are no longer the tail. */
export function releaseDurableReplies(r: ReplicaShared): void {
  if (r.undurable.length > 0) {
    const durable = chainDurableSeq(r);
    let synced = 0;
    while (synced < r.undurable.length && r.undurable[synced]! <= durable) synced++;
    if (synced > 0) r.undurable.splice(0, synced);
  }
  if (r.heldReplies.length === 0) return;
  if (!r.isTail) {
    // The next tail delivers them (clients subscribe again and get the stored replies).
    r.heldReplies = [];
    return;
  }
  const durable = chainDurableSeq(r);
  let sent = 0;
  while (sent < r.heldReplies.length && r.heldReplies[sent]!.needs <= durable) {
    r.out.push({ kind: "reply", output: r.heldReplies[sent]!.output });
    sent++;
  }
  if (sent > 0) r.heldReplies.splice(0, sent);
}

/**
 * As tail, how far the history is acknowledged: every update before the first one the chain
 * has not synced (its reply, and every later one, waits). Without awaited syncs: all of it.
 */
export function acknowledgedSeq(r: ReplicaShared): number {
  const first = r.undurable[0];
  return first === undefined ? r.state.appliedSeq : first - 1;
}

/** Whether a reply for this request waits in the queue (a resubscribe must not deliver it twice). */
export function isReplyHeld(r: ReplicaShared, session: number, reqNo: number): boolean {
  return r.heldReplies.some((held) => held.output.session === session && held.output.reqNo === reqNo);
}

/** The host synced every update it logged up to `seq`. */
export function noteDurable(r: ReplicaShared, seq: number): void {
  if (seq > r.durableSeq) r.durableSeq = Math.min(seq, r.state.appliedSeq);
}

/**
 * What our predecessor `from` says (in a forward, or again in a heartbeat) of the chain
 * before us in `epoch`, if it speaks of our history.
 */
export function noteUpstreamDurable(r: ReplicaShared, from: number, epoch: number, durable: { seq: number; epoch: number } | undefined): void {
  if (!durable || durable.seq > r.state.appliedSeq || r.epochs.epochAt(durable.seq) !== durable.epoch) return;
  const upstream = r.upstreamDurable;
  if (upstream.from !== from || upstream.epoch !== epoch) r.upstreamDurable = { from, epoch, seq: durable.seq };
  else upstream.seq = Math.max(upstream.seq, durable.seq);
}

/** The `durable` a forward we send carries (undefined when syncs are not awaited, or nothing is durable yet). */
export function durableToSay(r: ReplicaShared): { seq: number; epoch: number } | undefined {
  if (!r.options.awaitSync) return undefined;
  const seq = Math.min(chainDurableSeq(r), r.state.appliedSeq);
  if (seq <= 0) return undefined;
  const epoch = r.epochs.epochAt(seq);
  return epoch === null ? undefined : { seq, epoch };
}
