/**
 * What every part of the replica (replica.ts) reads and writes: the one server's view
 * of the chain, its history's bookkeeping, and the actions of the step under way. The
 * parts (flow, membership, configuration, paxos, cached) are functions taking it
 * explicitly; the Replica holds it privately and hosts see only its read-only getters.
 */
import { type PeerMessage, type ReplicaStatus, type Request, type Update } from "../wire";
import { type ChainConfig, NO_CONFIG, NO_VOTE, type Vote, tailOf } from "./chain";
import { EARLY_SUSPECT_HEARTBEATS } from "../constants";
import { RetainedLog } from "./retained";
import { SessionMonitor } from "./sessions";
import { EpochHistory } from "./epochs";
import { RecallScheduler } from "./cached";
import type { Output, Recall, StoreState } from "./state";
import type { Proposal } from "./paxos";

/** What one event made the replica do, in the order done; finish() turns them into the step's Ready. */
export type Action =
  /** Append to the write-ahead log (issue 4 makes it durable). */
  | { kind: "log"; update: Update }
  /** The state was replaced by this snapshot at `seq`: the log restarts there. */
  | { kind: "install"; seq: number; epoch: number; snapshot: Uint8Array }
  /** A checkpoint update was applied: write this snapshot (taken at exactly `seq`) to disk. */
  | { kind: "checkpoint"; seq: number; epoch: number; snapshot: Uint8Array }
  /** Deliver a reply to the client of `output.session` (only the tail does). */
  | { kind: "reply"; output: Output }
  /** Ask a client to give back a cached grant (only the head does; lost ones are sent again). */
  | { kind: "recall"; recall: Recall }
  | { kind: "send"; to: number; message: PeerMessage }
  /** The configuration changed: clients must learn the new head and tail. */
  | { kind: "config"; config: ChainConfig }
  /** --quorum majority: the acceptor's vote changed; write it (synced) before sending anything after it. */
  | { kind: "vote"; vote: Vote }
  /** The servers heard while not serving changed (ReplicaShared.bootPeers): write them (synced) before our heartbeats say so. */
  | { kind: "boot_peers"; peers: number[] }
  /** Something an operator wants in the log. */
  | { kind: "note"; text: string };

export interface ReplicaOptions {
  selfId: number;
  /** Every server id of the cluster, this one included. */
  peers: number[];
  sessionTimeoutMsDefault: number;
  heartbeatMs: number;
  suspectMs: number;
  /**
   * "none" (default): a configuration takes effect when its issuer sends it, and a chain of
   * one server serves. "majority": a configuration takes effect only once a majority of
   * `peers` accepted it, and the head sequences only while the chain holds a majority, so
   * the two sides of a partition never both acknowledge writes.
   */
  quorum?: "none" | "majority";
  /**
   * The operator's override after a total outage whose servers are gone for good: form a
   * chain from the servers heard, without waiting for the others, losing what only they hold.
   */
  forceBoot?: boolean;
  /**
   * The host syncs updates that need it (--fsync always) and says so (Replica.onDurable):
   * forwards leave before the sync, and the tail replies once the whole chain has synced
   * (chain_sync.ts). False: what the host writes counts as done at once.
   */
  awaitSync?: boolean;
  /** JOINER_BACKLOG_BYTES_MIN, smaller in the simulator so that its small updates reach it. */
  joinerBacklogBytes?: number;
}

/** What this replica last heard from another server. */
export interface PeerView {
  lastHeardMs: number;
  epoch: number;
  chain: number[];
  status: ReplicaStatus;
  appliedSeq: number;
  lastEpoch: number;
  /** It has reported serving as a member: a later "booting" means it restarted. */
  wasMember: boolean;
  /** It announced it would be busy (a large update) until then: not suspected before. */
  busyUntilMs: number;
  /** Since when it has kept reporting that it serves in a configuration without us (null: it does not). */
  servesWithoutUsSinceMs: number | null;
  /** Its disk is full, as its last heartbeat said. */
  diskFull: boolean;
  /** The servers it heard while not serving, on its disk (its bootPeers). */
  bootPeers: number[];
  /** The servers it suspected when it sent that heartbeat (a link broken one way: it cannot hear them). */
  unheard: number[];
  /**
   * Since when no connection with it is left (null: one is, or we heard it since): it is
   * suspected two heartbeats later unless a connection comes back (Replica.onPeerConnected).
   */
  linksLostAtMs: number | null;
}

/** The server this one forwards to: its successor, or (as tail) a joiner. */
export interface Downstream {
  id: number;
  /** Its position is known and the missing part was sent: new updates flow. */
  synced: boolean;
  sentUpTo: number;
  /** The `durable` seq last told it (--fsync always, chain_sync.ts). */
  durableSent: number;
  lastSyncRequestMs: number;
  /** Progress seen in its heartbeats, to resync a link that silently lost updates. */
  seenApplied: number;
  seenAppliedSinceMs: number;
  /** A joiner's forwards sent and not yet acknowledged, oldest first, and their bytes (joiner_flow.ts). */
  unacked: { seq: number; bytes: number }[];
  unackedBytes: number;
  /** Forwards to this joiner are held back until it acknowledges what it was sent; then it is resynced. */
  holding: boolean;
}

/** A server's `synced` notices in `epoch`: `seq` checked against our history, `pending` not yet (we lack it). */
export interface MemberSynced {
  epoch: number;
  seq: number;
  pending: { seq: number; seqEpoch: number } | null;
}

/** What every part of the replica reads and writes. */
export class ReplicaShared {
  readonly monitor = new SessionMonitor();
  readonly recalls = new RecallScheduler();
  status: ReplicaStatus = "booting";
  config: ChainConfig = NO_CONFIG;
  /** Epoch of the update at state.appliedSeq. */
  lastEpoch: number;
  /** Highest sequence number the tail is known to have applied. */
  ackedSeq = 0;
  readonly peerViews = new Map<number, PeerView>();
  retained: RetainedLog;
  /** The epoch of each update of our history, as far back as known (restarts included). */
  epochs: EpochHistory;
  /** As head: a server whose history holds ours and more sends us its state; we sequence nothing meanwhile. */
  pulling: { from: number; sinceMs: number } | null = null;
  /** Requests that arrived while pulling, handled once the state came (or the pull was given up). */
  deferred: Request[] = [];
  lastAheadMs = -Infinity;
  down: Downstream | null = null;
  /** The server whose forwards this one accepts. */
  upstream: number | null = null;
  lastUpstreamMs = 0;
  /** As tail: a server catching up behind this one before it joins the chain. */
  joiner: { id: number; ackedSeq: number; lastNoticeMs: number; caughtUpSinceMs: number | null } | null = null;
  highestEpochSeen = 0;
  /** When this server adopted its current configuration. */
  configSinceMs = 0;
  /** Configurations from issuers outside our chain seen without a break since sinceMs (last at lastMs). */
  foreign: { sinceMs: number; lastMs: number } | null = null;
  /** The last configuration refused as issued from a stale view (noted once). */
  refusedEpoch = 0;
  nowMs = 0;
  lastTickMs: number | null = null;
  /** Servers of the last chain a booting server waits for (noted when it changes). */
  bootWaitingFor = "";
  /** The note that said it, for clients asking why this server does not serve ("" when it waits for nobody). */
  bootWaitNote = "";
  bootStartMs = 0;
  /** Servers that may hold acknowledged updates we lack, learnt while booting: form no chain without them. */
  readonly bootRequired = new Set<number>();
  /**
   * On disk (config.json) until we adopt a configuration: the servers we heard while not
   * serving (booting or joining) — any of them may lead a boot we take part in, and serve in a
   * configuration we never learn if we die first. We wait for them at our next boot; a booting
   * server leads only once every candidate lists it here (membership.ts, tryBoot). Default mode.
   */
  readonly bootPeers: Set<number>;
  lastHeartbeatMs = -Infinity;
  /** When we went back to booting after a pause past --suspect-ms (what waited for us since is stale). */
  resumedAtMs = -Infinity;
  /** Until when we told the others we would be busy (they do not suspect us before). */
  busyUntilMs = -Infinity;
  /** Our disk is full (the host says so): our heartbeats tell the head. */
  diskFull = false;
  lastJoinMs = -Infinity;
  /** As a joiner: when a member of the chain we join was last seen serving (or we started joining). */
  joinedChainSinceMs = 0;
  out: Action[] = [];
  toForward: Update[] = [];
  /** --fsync always (chain_sync.ts): our log is synced through this seq (what needs a sync). */
  durableSeq: number;
  /** What our predecessor `from` said in `epoch`: it and the servers before it are durable through `seq`. */
  upstreamDurable = { from: -1, epoch: -1, seq: 0 };
  /** As tail: what each server before us said directly (`synced`) of its own syncs, by id (chain_sync.ts). */
  readonly memberSynced = new Map<number, MemberSynced>();
  /** What we last told our tail of our own syncs (`synced`), in `epoch`. */
  syncedTold = { epoch: -1, seq: 0 };
  /** The last update applied that needs a sync: a reply produced now rests on it. */
  lastSyncNeededSeq: number;
  /** Updates applied that need a sync and that the chain up to us has not all synced yet, in order. */
  undurable: number[] = [];
  /** As tail: replies waiting for the chain to sync what they rest on (`needs`), in order. */
  heldReplies: { needs: number; output: Output }[] = [];
  ackDue = false;
  lastAckMs = -Infinity;
  /** --quorum majority: our proposal waiting for a majority. */
  proposal: Proposal | null = null;
  /** --quorum majority: this server's promise and last accepted proposal, as an acceptor (on disk). */
  vote: Vote;
  /** The last "no majority" note (noted when it changes). */
  minorityNote = "";

  constructor(
    readonly options: ReplicaOptions,
    public state: StoreState,
    /** From disk (issue 4): the epoch of the last applied update. */
    lastEpoch = 0,
    /** From disk: the last configuration this server knew. It boots with it (not serving). */
    lastConfig: ChainConfig = NO_CONFIG,
    /** From disk (--quorum majority): what this server promised and accepted. */
    lastVote: Vote = NO_VOTE,
    /** From disk: the epochs of the recovered history (the checkpoint's, then the replayed log's). */
    epochs: EpochHistory = new EpochHistory(state.appliedSeq, lastEpoch),
    /** From disk: the servers heard while not serving since the last configuration adopted. */
    bootPeers: number[] = [],
  ) {
    this.epochs = epochs;
    this.bootPeers = new Set(bootPeers);
    this.lastEpoch = lastEpoch;
    this.config = lastConfig;
    this.vote = lastVote;
    this.retained = new RetainedLog(state.appliedSeq, lastEpoch);
    // What a server recovers is what it had written: it counts as synced (see chain_sync.ts).
    this.durableSeq = state.appliedSeq;
    this.lastSyncNeededSeq = state.appliedSeq;
    this.highestEpochSeen = Math.max(lastEpoch, lastConfig.epoch, lastVote.promised);
  }

  get selfId(): number {
    return this.options.selfId;
  }

  get isHead(): boolean {
    return this.status === "member" && this.config.chain[0] === this.selfId;
  }

  get majorityMode(): boolean {
    return this.options.quorum === "majority";
  }

  /** Servers that make a majority of --peers. */
  get majority(): number {
    return Math.floor(this.options.peers.length / 2) + 1;
  }

  /**
   * The head may sequence: always by default; with --quorum majority, while the chain holds
   * a majority of --peers that it still hears (a head cut off from its chain refuses at once
   * instead of taking requests that cannot be acknowledged).
   */
  get hasQuorum(): boolean {
    if (!this.majorityMode) return true;
    return this.config.chain.filter((id) => id === this.selfId || !this.suspected(id)).length >= this.majority;
  }

  get isTail(): boolean {
    return this.status === "member" && tailOf(this.config) === this.selfId;
  }

  advanceClock(nowMs: number): void {
    if (nowMs < this.nowMs) return;
    this.nowMs = nowMs;
    this.monitor.nowMs = nowMs;
  }

  suspected(id: number): boolean {
    const view = this.peerViews.get(id);
    const last = view ? view.lastHeardMs : this.bootStartMs;
    if (view && this.nowMs < view.busyUntilMs) return false; // it said it would be busy
    if (view?.linksLostAtMs != null && this.nowMs - view.linksLostAtMs > EARLY_SUSPECT_HEARTBEATS * this.options.heartbeatMs) return true;
    return this.nowMs - last > this.options.suspectMs;
  }

  liveInChain(): number {
    return this.config.chain.filter((id) => id === this.selfId || !this.suspected(id)).length;
  }

  send(to: number, message: PeerMessage): void {
    this.out.push({ kind: "send", to, message });
  }

  /** Our configuration changed: it goes to disk, and the servers heard while booting are forgotten with it (the store clears them too). */
  recordConfig(): void {
    this.bootPeers.clear();
    this.out.push({ kind: "config", config: this.config });
  }

  /** A server heard while not serving: on disk before any heartbeat of ours says so (persist before send). */
  recordBootPeer(id: number): void {
    this.bootPeers.add(id);
    this.out.push({ kind: "boot_peers", peers: this.bootPeerList() });
  }

  /** bootPeers in id order, as the disk and heartbeats carry them. */
  bootPeerList(): number[] {
    return [...this.bootPeers].sort((a, b) => a - b);
  }
}
