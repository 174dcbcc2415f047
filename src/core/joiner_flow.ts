/**
 * How much a tail sends a joiner ahead of its acknowledgements.
 *
 * A joiner is fed the tail's forwards as they come, outside the chain: nothing waits for it,
 * so a joiner slower than the chain fell further behind for as long as the writes went on. A
 * restarted server is slower at first (it writes new log files, which cost ~11 µs a page to
 * fault in on our VM): under continuous 8 MiB rewrites it stayed joining for 20 s, ~60 updates
 * behind, while a snapshot of the state was one update's size (a CI failure of
 * test/failover.test.ts, reproduced by a script). So once what a joiner has not acknowledged
 * outgrows both twice the state a snapshot would carry and JOINER_BACKLOG_BYTES_MIN, the tail holds
 * back its forwards; when the joiner has acknowledged all it was sent, the tail resyncs it
 * (syncDownstream: the updates it lacks if still retained, else a snapshot at the tail's seq).
 * A joiner never serves, so what it is sent changes no promise.
 */
import { JOINER_BACKLOG_BYTES_MIN } from "../constants";
import type { Update } from "../wire";
import { encodedSize } from "./retained";
import type { Downstream, ReplicaShared } from "./replica_shared";
import type { StoreState } from "./state";

/** How the note a tail logs when it holds a joiner's forwards back ends (the simulator counts them). */
export const JOINER_HELD_NOTE = "holding its forwards back until it has what it was sent, then resyncing it";

/** Whether `update` goes downstream now (always, to a member); false: held back from a joiner too far behind. */
export function admitsForward(r: ReplicaShared, down: Downstream, update: Update): boolean {
  if (r.joiner?.id !== down.id) return true;
  if (down.holding) return false;
  const bytes = encodedSize(update);
  const limit = r.options.joinerBacklogBytes ?? JOINER_BACKLOG_BYTES_MIN;
  if (down.unacked.length > 0 && down.unackedBytes + bytes > limit && down.unackedBytes + bytes > 2 * snapshotBytes(r.state)) {
    down.holding = true;
    r.out.push({ kind: "note", text: `server ${down.id} (joining) is ${r.state.appliedSeq - r.joiner.ackedSeq} updates behind: ${JOINER_HELD_NOTE}` });
    return false;
  }
  noteSent(down, update.seq, bytes);
  return true;
}

/** A resync sends a joiner the retained updates it lacks: they count as sent to it. */
export function noteResent(r: ReplicaShared, down: Downstream, updates: Update[]): void {
  if (r.joiner?.id === down.id) for (const update of updates) noteSent(down, update.seq, encodedSize(update));
}

function noteSent(down: Downstream, seq: number, bytes: number): void {
  down.unacked.push({ seq, bytes });
  down.unackedBytes += bytes;
}

/** The joiner downstream acknowledged `seq`; true when it was held back and has now all it was sent (resync it). */
export function joinerAcknowledged(down: Downstream, seq: number): boolean {
  let acked = 0;
  while (acked < down.unacked.length && down.unacked[acked]!.seq <= seq) down.unackedBytes -= down.unacked[acked++]!.bytes;
  if (acked > 0) down.unacked.splice(0, acked);
  if (!down.holding || down.unacked.length > 0) return false;
  down.holding = false;
  return true;
}

/** What a resync sends from scratch: nothing of the forwards before it is outstanding any more. */
export function resetJoinerFlow(down: Downstream): void {
  down.unacked = [];
  down.unackedBytes = 0;
  down.holding = false;
}

/** About what a snapshot of `state` weighs: its pages in use. */
function snapshotBytes(state: StoreState): number {
  return (state.allocator.pageCount - state.allocator.freePages()) * state.pageSize;
}
