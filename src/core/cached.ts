/**
 * The head's side of cached holds: which recalls to send now. What is owed comes from
 * replicated state alone (StoreState.recallsDue: cached grants that block a datum's first
 * waiter), so a new head owes exactly what the old one did; this only spaces the sends.
 * A recall is sent when first due, then again every RECALL_RESEND_MS until the give-back
 * (or the session's end) is applied: a recall lost with a connection, or sent by a head
 * that failed, is sent again by whoever is head.
 */
import { RECALL_RESEND_MS } from "../constants";
import type { Recall, StoreState } from "./state";
import type { ReplicaShared } from "./replica_shared";

export class RecallScheduler {
  /** Hold id → when its recall was last sent (soft state: a new head starts empty). */
  private readonly sentAtMs = new Map<number, number>();

  /** The recalls to send at `nowMs`. */
  due(state: StoreState, nowMs: number): Recall[] {
    const owed = state.recallsDue();
    const send: Recall[] = [];
    const owedIds = new Set<number>();
    for (const recall of owed) {
      owedIds.add(recall.holdId);
      const last = this.sentAtMs.get(recall.holdId);
      if (last !== undefined && nowMs - last < RECALL_RESEND_MS) continue;
      this.sentAtMs.set(recall.holdId, nowMs);
      send.push(recall);
    }
    for (const holdId of this.sentAtMs.keys()) if (!owedIds.has(holdId)) this.sentAtMs.delete(holdId);
    return send;
  }

  /** This server stopped being head, or its state was replaced: send everything afresh when head. */
  reset(): void {
    this.sentAtMs.clear();
  }
}

/**
 * As head: recall the cached grants that block a waiter (docs/protocol.md#cached-holds),
 * after every event — an acquire that queued is answered by its recalls at once — and again
 * on ticks until given back. Derived from the state, so a new head resends what is owed.
 */
export function recallCachedGrants(r: ReplicaShared): void {
  if (!r.isHead) return r.recalls.reset();
  if (r.state.contended.size === 0) return;
  for (const recall of r.recalls.due(r.state, r.nowMs)) r.out.push({ kind: "recall", recall });
}
