/**
 * The replica's output: one Ready per step (etcd raft's Ready), everything the
 * host must do because of that step, already in the form it must be done.
 *
 * PERSIST BEFORE SEND. Every item of `persist` must be written, in order, and
 * synced before any item of `send` leaves: a forward or a reply may rest on an
 * update logged in the same step (a reply acknowledges it; a forward makes the
 * successor hold what we might lose), a promise on the vote saved with it.
 * Readys are carried out in the order they were made; the sends of a later
 * Ready never overtake the disk work of an earlier one. Both hosts obey this
 * through one function: ReadyCarrier.release (src/server/carrier.ts). One exception:
 * the forwards that lead a batch of log records leave before it is written (once it
 * is written when it also holds a configuration or a checkpoint, and before its sync
 * then). Each mode's promise rests on the tail instead: with --fsync off/batch it
 * writes before it replies; when the replica awaits syncs (--fsync always) what rests
 * on a sync (the tail's replies) waits for the whole chain's (chain_sync.ts).
 *
 * The host never reads the replica's state back to build what it sends:
 * a reply carries its pages, an announcement the chain clients must see.
 */
import type { PageWrite, PeerMessage, Reply, Update } from "../wire";
import type { ChainConfig, Vote } from "./chain";
import type { Recall, StoreState } from "./state";

/** Disk work, in order. */
export type Persist =
  | { kind: "log"; update: Update }
  /** The state was replaced by this snapshot at `seq`: the log restarts there. */
  | { kind: "install"; seq: number; epoch: number; configEpoch: number; snapshot: Uint8Array }
  /** A checkpoint update was applied: this snapshot (taken at exactly `seq`) goes to disk. */
  | { kind: "checkpoint"; seq: number; epoch: number; configEpoch: number; snapshot: Uint8Array }
  | { kind: "config"; config: ChainConfig }
  /** --quorum majority: the acceptor's promise or acceptance. */
  | { kind: "vote"; vote: Vote }
  /**
   * The servers heard while not serving (ReplicaShared.bootPeers), all of them. Kept with the
   * configuration, and forgotten when a `config` item replaces it.
   */
  | { kind: "boot_peers"; peers: number[] };

/** The chain clients must be told: server ids, head first; empty while this server does not serve. */
export interface ClientView {
  epoch: number;
  chain: number[];
}

/** What leaves, in order, once the Ready's disk work (and that of every earlier Ready) is done. */
export type Outbound =
  | { kind: "peer"; to: number; message: PeerMessage }
  /** To the client of `session` (only the tail replies); a grant carries the pages the client lacks. */
  | { kind: "reply"; session: number; reqNo: number; reply: Reply; pages: PageWrite[] }
  /** Ask a client to give back a cached grant (only the head does; lost ones are sent again). */
  | { kind: "recall"; recall: Recall }
  /** The configuration changed: every client connection hears the new chain. */
  | { kind: "announce"; view: ClientView };

export interface Ready {
  persist: Persist[];
  send: Outbound[];
  /** Things an operator wants in the log (no ordering with the rest). */
  notes: string[];
}

export function emptyReady(): Ready {
  return { persist: [], send: [], notes: [] };
}

export function isEmptyReady(ready: Ready): boolean {
  return ready.persist.length === 0 && ready.send.length === 0 && ready.notes.length === 0;
}

/** One reply as it leaves: a grant with the pages written after the client's copy (`sendAfter`). */
export function replyOut(state: StoreState, session: number, reqNo: number, reply: Reply): Outbound {
  const pages = reply.type === "granted" ? state.pagesAfter(reply.offset, reply.size, reply.sendAfter, reply.version, reply.createdSeq) : [];
  return { kind: "reply", session, reqNo, reply, pages };
}

/** The last sequence number a batch of disk work writes (0: none). */
export function lastSeqOf(persist: Persist[]): number {
  let seq = 0;
  for (const item of persist) {
    if (item.kind === "log") seq = Math.max(seq, item.update.seq);
    else if (item.kind === "install" || item.kind === "checkpoint") seq = Math.max(seq, item.seq);
  }
  return seq;
}
