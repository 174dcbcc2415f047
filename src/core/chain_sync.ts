/**
 * --fsync always without one sync after another down the chain (issue 13, item 4).
 *
 * Every server forwards an update as soon as it has written it, and syncs while the next
 * server does the same: the chain's syncs overlap instead of adding up. The promise is
 * unchanged: the tail replies to an update only once every server of the chain has synced
 * it, and whatever depends on it (every later reply) waits too. How a tail knows: each
 * server says, on its forwards, how far it and every server before it have synced
 * (`durable`); a server whose own sync moves that point sends an empty forward to say so.
 *
 * "Durable through s" means every update up to s that needs a sync (core/durable.ts) is
 * synced; updates that need none (holds, sessions) wait for nothing of their own.
 */
import type { Output } from "./state";
import type { ReplicaShared } from "./replica_shared";

/** How far this server and every server before it in the chain are durable (Infinity: syncs are not awaited). */
export function chainDurableSeq(r: ReplicaShared): number {
  if (!r.options.awaitSync) return Infinity;
  if (r.isHead) return r.durableSeq;
  const upstream = r.upstreamDurable;
  // Said by our predecessor in this configuration, about the history we share with it.
  const said = upstream.from === r.upstream && upstream.epoch === r.config.epoch ? upstream.seq : 0;
  return Math.min(r.durableSeq, said);
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
