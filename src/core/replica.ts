/**
 * One server's replica logic for chain replication (van Renesse & Schneider,
 * OSDI 2004). It sequences client requests (as head), applies and forwards
 * updates, acknowledges them (as tail), detects failures from heartbeats,
 * issues new configurations, and brings joining servers up to date.
 *
 * Pure: no I/O, clock or randomness. Every event returns one Ready (ready.ts):
 * what the host must write, then send, persist before send.
 */
import { present } from "../assert";
import { FORWARD_BATCH_MAX, REQUESTS_DEFERRED_MAX } from "../constants";
import { type AcceptedProposal, PREV_EPOCH_UNKNOWN, type PeerMessage, type ReplicaStatus, type Request, type Update } from "../wire";
import { type ChainConfig, NO_CONFIG, NO_VOTE, type Vote, describeConfig, issuerOf, nextEpoch, predecessorOf, successorOf, tailOf } from "./chain";
import { RetainedLog } from "./retained";
import { SessionMonitor } from "./sessions";
import { EpochHistory } from "./epochs";
import { decodeSnapshot, encodeSnapshot } from "./snapshot";
import { RecallScheduler } from "./cached";
import type { Output, Recall, StoreState } from "./state";
import { type ClientView, type Ready, emptyReady, replyOut } from "./ready";

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
}

/**
 * --quorum majority: a configuration this server proposes (Paxos, one ballot). Phase 1
 * gathers promises from a majority; phase 2 proposes the value: the pending proposal with
 * the highest ballot among the promises (one that may have been chosen), else `own`.
 */
interface Proposal {
  ballot: number;
  /** What this server wants (new chain, and the configuration it builds on). */
  own: { chain: number[]; baseEpoch: number; formed: boolean };
  /** Phase 1: the promises, with each acceptor's configuration epoch and last accepted proposal. */
  promises: Map<number, { configEpoch: number; accepted: AcceptedProposal | null }>;
  /** Phase 2 (null in phase 1): the value proposed, and who accepted it. */
  value: Omit<AcceptedProposal, "ballot"> | null;
  accepted: Set<number>;
  sinceMs: number;
}

/** A proposal is dropped if it has not gathered a majority within this many heartbeats. */
const PROPOSAL_HEARTBEATS = 5;

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
}

/** The server this one forwards to: its successor, or (as tail) a joiner. */
interface Downstream {
  id: number;
  /** Its position is known and the missing part was sent: new updates flow. */
  synced: boolean;
  sentUpTo: number;
  lastSyncRequestMs: number;
  /** Progress seen in its heartbeats, to resync a link that silently lost updates. */
  seenApplied: number;
  seenAppliedSinceMs: number;
}

/** At most one ack up the chain per this many ms (and at every tick). */
const ACK_INTERVAL_MS = 5;

export class Replica {
  readonly monitor = new SessionMonitor();
  private readonly recalls = new RecallScheduler();
  status: ReplicaStatus = "booting";
  config: ChainConfig = NO_CONFIG;
  /** Epoch of the update at state.appliedSeq. */
  lastEpoch: number;
  /** Highest sequence number the tail is known to have applied. */
  ackedSeq = 0;
  readonly peerViews = new Map<number, PeerView>();
  private retained: RetainedLog;
  /** The epoch of each update of our history, as far back as known (restarts included). */
  private epochs: EpochHistory;
  /** As head: a server whose history holds ours and more sends us its state; we sequence nothing meanwhile. */
  private pulling: { from: number; sinceMs: number } | null = null;
  /** Requests that arrived while pulling, handled once the state came (or the pull was given up). */
  private deferred: Request[] = [];
  private lastAheadMs = -Infinity;
  private down: Downstream | null = null;
  /** The server whose forwards this one accepts. */
  private upstream: number | null = null;
  private lastUpstreamMs = 0;
  /** As tail: a server catching up behind this one before it joins the chain. */
  private joiner: { id: number; ackedSeq: number; lastNoticeMs: number; caughtUpSinceMs: number | null } | null = null;
  private highestEpochSeen = 0;
  /** When this server adopted its current configuration. */
  private configSinceMs = 0;
  /** Configurations from issuers outside our chain seen without a break since sinceMs (last at lastMs). */
  private foreign: { sinceMs: number; lastMs: number } | null = null;
  /** The last configuration refused as issued from a stale view (noted once). */
  private refusedEpoch = 0;
  private nowMs = 0;
  private lastTickMs: number | null = null;
  /** Servers of the last chain a booting server waits for (noted when it changes). */
  private bootWaitingFor = "";
  private bootStartMs = 0;
  /** Servers that may hold acknowledged updates we lack, learnt while booting: form no chain without them. */
  private readonly bootRequired = new Set<number>();
  private lastHeartbeatMs = -Infinity;
  /** Until when we told the others we would be busy (they do not suspect us before). */
  private busyUntilMs = -Infinity;
  /** Our disk is full (the host says so): our heartbeats tell the head. */
  private diskFull = false;
  private lastJoinMs = -Infinity;
  /** As a joiner: when a member of the chain we join was last seen serving (or we started joining). */
  private joinedChainSinceMs = 0;
  private out: Action[] = [];
  private toForward: Update[] = [];
  private ackDue = false;
  private lastAckMs = -Infinity;
  /** --quorum majority: our proposal waiting for a majority. */
  private proposal: Proposal | null = null;
  /** --quorum majority: this server's promise and last accepted proposal, as an acceptor (on disk). */
  private vote: Vote;
  /** The last "no majority" note (noted when it changes). */
  private minorityNote = "";

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
  ) {
    this.epochs = epochs;
    this.lastEpoch = lastEpoch;
    this.config = lastConfig;
    this.vote = lastVote;
    this.retained = new RetainedLog(state.appliedSeq, lastEpoch);
    this.highestEpochSeen = Math.max(lastEpoch, lastConfig.epoch, lastVote.promised);
  }

  get selfId(): number {
    return this.options.selfId;
  }

  get isHead(): boolean {
    return this.status === "member" && this.config.chain[0] === this.selfId;
  }

  private get majorityMode(): boolean {
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

  // ---- events -------------------------------------------------------------

  /** A client request; only the head sequences (the server redirects the others). */
  onRequest(request: Request): Ready {
    this.handleRequest(request);
    return this.finish();
  }

  private handleRequest(request: Request): void {
    if (!this.isHead) return;
    this.monitor.heard(request.session);
    const session = this.state.sessions.get(request.session);
    const stored: Output[] = [];
    if (request.op.type !== "open_session" && session && this.state.isDuplicate(session, request.reqNo, stored)) {
      // Applied already (checked before the quorum: a resent release must not look failed);
      // the tail delivers (or re-delivers on subscribe) its reply.
      if (this.isTail) for (const output of stored) this.out.push({ kind: "reply", output });
      return;
    }
    if (this.pulling) {
      // Sequenced now, it would fork our history from the one we are taking over.
      if (this.deferred.length < REQUESTS_DEFERRED_MAX) this.deferred.push(request);
      return;
    }
    if (!this.hasQuorum) {
      // A minority chain (--quorum majority) acknowledges nothing: the other side may serve.
      const message = `no majority: ${this.liveInChain()} of ${this.options.peers.length} servers in the chain`;
      const reply = { type: "error" as const, code: "EUNAVAILABLE", message };
      this.out.push({ kind: "reply", output: { session: request.session, reqNo: request.reqNo, reply } });
      return;
    }
    if (request.op.type !== "open_session" && !session) {
      // The head has the newest state: a session it does not know is gone.
      const reply = { type: "error" as const, code: "ESESSION", message: "the session expired or is unknown: its holds were released; reconnect" };
      this.out.push({ kind: "reply", output: { session: request.session, reqNo: request.reqNo, reply } });
      return;
    }
    let op = request.op;
    if (op.type === "open_session" && op.timeoutMs === 0) op = { ...op, timeoutMs: this.options.sessionTimeoutMsDefault };
    this.sequence({ seq: 0, epoch: 0, session: request.session, reqNo: request.reqNo, doneBelow: request.doneBelow, op });
  }


  /**
   * A client's heartbeat. Its `doneBelow` may show replies this history never
   * produced (see StoreState.lostRequests): a client that sends no request after
   * a partition healed must not keep, for its session's life, holds it released
   * on the side that lost — its session is ended now.
   */
  onClientHeartbeat(session: number, doneBelow: number): Ready {
    this.monitor.heard(session);
    const known = this.state.sessions.get(session);
    if (known && this.hasQuorum && !this.pulling && this.state.lostRequests(known, doneBelow)) {
      this.sequence({ seq: 0, epoch: 0, session: 0, reqNo: 0, doneBelow: 0, op: { type: "expire_session", session } });
    }
    return this.finish();
  }

  /** The connection to a peer broke: suspect it now rather than after suspectMs. */
  onPeerDisconnected(id: number): Ready {
    const view = this.peerViews.get(id);
    // Our connection to it broke, but its heartbeats come over its own connection to us: a
    // reset alone does not make it dead. Suspecting it at once let both ends of a reset
    // remove each other and serve as two chains. Suspect it if it stays silent two heartbeats.
    if (view) view.lastHeardMs = Math.min(view.lastHeardMs, this.nowMs - this.options.suspectMs + 2 * this.options.heartbeatMs);
    return this.finish();
  }

  onTick(nowMs: number): Ready {
    const pausedMs = this.lastTickMs === null ? 0 : nowMs - this.lastTickMs - this.options.heartbeatMs;
    if (pausedMs > this.options.suspectMs / 2) {
      // This process was not running (stopped, swapped, a long GC): it cannot tell
      // whether the others were silent, so it does not suspect them for that time.
      for (const view of this.peerViews.values()) view.lastHeardMs += pausedMs;
      // Nor did it wait for them while booting (it would form a chain alone, though what the
      // others sent waits unread in its sockets), nor hear its clients (their heartbeats too).
      this.bootStartMs += pausedMs;
      this.monitor.shift(pausedMs);
      this.out.push({ kind: "note", text: `this server was paused for ${Math.round(pausedMs)} ms` });
      // Others suspect us once silent past --suspect-ms, but never within a busy time we
      // announced (a large update on a loaded machine: leaving the chain then stalled it).
      // Our silence runs from our last heartbeat, sent up to a heartbeat before our last tick,
      // and the next may reach them a heartbeat late: a pause of 396 ms kept us silent 487 ms
      // with --suspect-ms 400, we went on in the chain the others had removed us from, and
      // served without what they had acknowledged meanwhile (sim seed 53004585).
      const silentMs = nowMs - this.lastHeartbeatMs + this.options.heartbeatMs;
      const othersMaySuspectUs = silentMs > this.options.suspectMs && nowMs > this.busyUntilMs;
      if (othersMaySuspectUs && this.status === "member" && !this.majorityMode && this.config.chain.length > 1) {
        // Long enough for the others to remove us and acknowledge updates without us (we
        // would then lead a chain on a stale history: sim seed 33001083). Find the chain
        // again as a booting server does, waiting for the servers of our last chain.
        this.out.push({ kind: "note", text: "longer than --suspect-ms: the others may have served without us; finding the chain again" });
        // What we heard before the pause is stale: boot on what the others say from now on.
        this.advanceClock(nowMs);
        this.peerViews.clear();
        this.becomeBooting();
      }
    }
    this.lastTickMs = nowMs;
    this.advanceClock(nowMs);
    if (this.bootStartMs === 0) this.bootStartMs = nowMs;
    if (nowMs - this.lastHeartbeatMs >= this.options.heartbeatMs) this.broadcastHeartbeat();
    this.dropStaleProposal();
    if (this.status === "booting") this.tryBoot();
    else if (this.status === "joining") this.keepJoining();
    else this.keepServing();
    return this.finish();
  }

  /** A message from another server; `nowMs` (when known) keeps the clock current between ticks. */
  onPeerMessage(message: PeerMessage, nowMs?: number): Ready {
    if (nowMs !== undefined) this.advanceClock(nowMs);
    switch (message.type) {
      case "heartbeat":
        this.onHeartbeat(message);
        break;
      case "config":
        this.adoptConfig({ epoch: message.epoch, chain: message.chain }, message.issued ? message.from : null);
        break;
      case "sync_request":
        this.onSyncRequest(message.from, { epoch: message.epoch, chain: message.chain });
        break;
      case "sync_reply":
        if (this.down?.id === message.from && message.epoch === this.config.epoch) {
          this.syncDownstream(message.appliedSeq, message.lastEpoch);
        }
        break;
      case "forward":
        if (this.acceptsFrom(message.from, message.epoch)) this.onForward(message.updates, message.prevEpoch);
        break;
      case "snapshot":
        if (this.pulling?.from === message.from && message.epoch === this.config.epoch && this.isHead) this.endPull(message.seq > this.state.appliedSeq ? message : null);
        else if (this.acceptsFrom(message.from, message.epoch)) this.onSnapshot(message);
        break;
      case "ahead":
        this.onAhead(message);
        break;
      case "pull":
        if (message.epoch === this.config.epoch && message.from === this.config.chain[0] && this.state.appliedSeq > message.baseSeq) {
          this.send(message.from, this.snapshotMessage());
        }
        break;
      case "ack":
        if (message.epoch === this.config.epoch && this.down?.id === message.from) this.onAck(message.from, message.seq, message.seqEpoch);
        break;
      case "join":
        this.onJoin(message.from, message.appliedSeq, message.lastEpoch);
        break;
      case "config_prepare":
        this.onPrepare(message.from, message.ballot, message.baseEpoch);
        break;
      case "config_promise":
        this.onPromise(message.from, message.ballot, message.configEpoch, message.accepted);
        break;
      case "config_propose":
        this.onPropose(message.from, { ballot: message.ballot, epoch: message.epoch, chain: message.chain, baseEpoch: message.baseEpoch, formed: message.formed });
        break;
      case "config_accept":
        this.onAccept(message.from, message.ballot);
        break;
      case "config_refuse":
        this.highestEpochSeen = Math.max(this.highestEpochSeen, message.promised);
        break;
      case "caught_up":
        if (this.isHead && message.epoch === this.config.epoch && message.from === tailOf(this.config)) {
          if (!this.config.chain.includes(message.joiner)) this.issueConfig([...this.config.chain, message.joiner]);
        }
        break;
    }
    return this.finish();
  }

  /** Replies already produced for requests a (re)connecting client still waits on. */
  storedReplies(sessionId: number, waiting: number[]): Ready {
    const ready = emptyReady();
    const session = this.state.sessions.get(sessionId);
    if (!session) return ready;
    for (const reqNo of waiting) {
      const reply = session.replies.get(reqNo);
      if (reply) ready.send.push(replyOut(this.state, sessionId, reqNo, reply));
      else if (reply === null) ready.send.push(replyOut(this.state, sessionId, reqNo, { type: "queued" }));
    }
    return ready;
  }

  /** The answer to a client's list or stat query (the tail's state is the acknowledged one). */
  queryAnswer(kind: "list" | "stat", name: string): unknown {
    if (kind === "list") return this.state.list();
    const datum = this.state.data.get(name);
    if (!datum) return { error: { code: "ENOENT", message: `no datum named "${name}"` } };
    return this.state.info(datum);
  }

  private advanceClock(nowMs: number): void {
    if (nowMs < this.nowMs) return;
    this.nowMs = nowMs;
    this.monitor.nowMs = nowMs;
  }

  // ---- applying updates -----------------------------------------------------

  private sequence(update: Update): void {
    update.seq = this.state.appliedSeq + 1;
    update.epoch = this.config.epoch;
    this.apply(update);
  }

  private apply(update: Update): void {
    const outputs = this.state.apply(update);
    this.lastEpoch = update.epoch;
    this.retained.append(update);
    this.epochs.note(update.seq, update.epoch);
    this.out.push({ kind: "log", update });
    if (update.op.type === "checkpoint") {
      // Taken now, at exactly this seq, on every replica: a recovery line.
      this.out.push({ kind: "checkpoint", seq: update.seq, epoch: update.epoch, snapshot: encodeSnapshot(this.state) });
    }
    if (this.isTail) {
      for (const output of outputs) this.out.push({ kind: "reply", output });
      this.ackedSeq = update.seq;
    }
    if (this.down?.synced) {
      this.toForward.push(update);
      this.down.sentUpTo = update.seq;
    }
    // The tail acknowledges up the chain; a joiner tells the tail how far it got.
    if (this.isTail || this.status === "joining") this.ackDue = true;
  }

  private onForward(updates: Update[], prevEpoch: number): void {
    this.lastUpstreamMs = this.nowMs;
    if (this.awaitsJoinerAppended()) return;
    if (!this.onSameHistory(updates, prevEpoch)) {
      // The sender's history parts from ours at or before our last update (a snapshot it sent
      // us was lost: sim seed 58000733): applying its next updates on ours would mix the two.
      // Tell it where we are: it sends what we need, a snapshot if we diverged.
      this.sendSyncReply(present(this.upstream, "a sync request comes from the upstream"));
      return;
    }
    for (const update of updates) {
      if (update.seq <= this.state.appliedSeq) continue; // a resend after a resync
      if (update.seq !== this.state.appliedSeq + 1) {
        // A gap: updates were lost on the way. Ask for a resend from where we are.
        this.sendSyncReply(present(this.upstream, "a sync request comes from the upstream"));
        break;
      }
      this.apply(update);
    }
  }

  /** The sender's history, as far as these updates show it, holds our last update. */
  private onSameHistory(updates: Update[], prevEpoch: number): boolean {
    if (updates.length === 0) return true;
    const mine = this.state.appliedSeq;
    const first = updates[0]!.seq;
    const at = Math.min(mine, updates[updates.length - 1]!.seq);
    if (at < first - 1) return true; // a gap: handled as one
    const theirs = at === first - 1 ? prevEpoch : updates[at - first]!.epoch;
    if (theirs === PREV_EPOCH_UNKNOWN) return true;
    const ours = this.epochs.epochAt(at);
    return ours === null || ours === theirs;
  }

  private installSnapshot(bytes: Uint8Array, seq: number, epoch: number): void {
    this.lastUpstreamMs = this.nowMs;
    const state = decodeSnapshot(bytes);
    if (state.appliedSeq !== seq) throw new Error(`snapshot says seq ${seq} but holds ${state.appliedSeq}`);
    this.state = state;
    this.lastEpoch = epoch;
    this.retained.reset(seq, epoch);
    this.epochs = new EpochHistory(seq, epoch);
    this.out.push({ kind: "install", seq, epoch, snapshot: bytes });
    this.out.push({ kind: "note", text: `installed a snapshot at seq ${seq}` });
    if (this.isTail) this.ackedSeq = seq;
    // Our history changed under the downstream server: find out again what it lacks.
    if (this.down) this.startDownstream(this.down.id);
    this.ackDue = true;
  }

  /**
   * A snapshot from upstream. One older than our history that our history holds would take
   * us back over updates the chain never had, acknowledged by a chain we served in (two
   * chains after a cut, default mode: sim seed 9104021; or updates only we kept through a
   * whole-cluster crash: 9702343). We refuse it and offer the head our history instead.
   * Not with --quorum majority: a history taken so would be acknowledged in a newer
   * configuration while ranking by its older last epoch, below updates sequenced since and
   * never acknowledged, which the next boot would prefer (sim seed 77002376). There what only
   * we hold was never acknowledged (docs/protocol.md, why the last epoch ranks histories).
   */
  private onSnapshot(message: Extract<PeerMessage, { type: "snapshot" }>): void {
    const { seq, lastEpoch } = message;
    if (this.majorityMode || this.status !== "joining" || seq >= this.state.appliedSeq || !this.epochs.extends(seq, lastEpoch)) {
      this.installSnapshot(message.bytes, seq, lastEpoch);
      return;
    }
    // Not synced by this tail: our acks must not make it take us for caught up. We join again
    // later; once the chain has acknowledged past `seq`, its snapshot no longer takes us back.
    this.upstream = null;
    if (this.nowMs - this.lastAheadMs < this.options.heartbeatMs) return;
    this.lastAheadMs = this.nowMs;
    const head = this.config.chain[0]!;
    this.out.push({ kind: "note", text: `refusing a snapshot at seq ${seq}: our history holds it and goes on to ${this.state.appliedSeq}; offering ours to the head ${head}` });
    this.send(head, { type: "ahead", from: this.selfId, epoch: this.config.epoch, baseSeq: seq, baseEpoch: lastEpoch, appliedSeq: this.state.appliedSeq });
  }

  /** As head: a server says its history holds ours and more. Take it if we sequenced nothing since. */
  private onAhead(message: Extract<PeerMessage, { type: "ahead" }>): void {
    if (!this.isHead || message.epoch !== this.config.epoch || this.pulling) return;
    // Sequenced since the chain's history ended there: the histories part, ours stands.
    if (this.state.appliedSeq !== message.baseSeq || this.lastEpoch !== message.baseEpoch || message.appliedSeq <= message.baseSeq) return;
    this.pulling = { from: message.from, sinceMs: this.nowMs };
    this.out.push({ kind: "note", text: `server ${message.from} holds our history and more (to seq ${message.appliedSeq}): taking its state` });
    this.send(message.from, { type: "pull", from: this.selfId, epoch: this.config.epoch, baseSeq: message.baseSeq });
  }

  /** Stops pulling (with the state pulled, if any) and handles the requests that waited. */
  private endPull(pulled: Extract<PeerMessage, { type: "snapshot" }> | null): void {
    this.pulling = null;
    if (pulled) {
      this.installSnapshot(pulled.bytes, pulled.seq, pulled.lastEpoch);
      this.monitor.reset();
    }
    const deferred = this.deferred;
    this.deferred = [];
    for (const request of deferred) this.handleRequest(request);
  }

  private snapshotMessage(): PeerMessage {
    return { type: "snapshot", from: this.selfId, epoch: this.config.epoch, seq: this.state.appliedSeq, lastEpoch: this.lastEpoch, bytes: encodeSnapshot(this.state) };
  }

  /** A server forwards only to the server that asked it (sync) in the current epoch. */
  private acceptsFrom(from: number, epoch: number): boolean {
    return epoch === this.config.epoch && from === this.upstream && this.status !== "booting";
  }

  private onAck(from: number, seq: number, seqEpoch: number): void {
    if (this.joiner?.id === from) {
      // Progress only if its history is a prefix of ours: a joiner still on a history of its
      // own (a snapshot it refused, or one lost on the way) acks positions we never sent it,
      // and taken for caught up it became a member that was no prefix (sim seed 58000733).
      if (!this.epochs.extends(seq, seqEpoch)) return;
      this.joiner.ackedSeq = Math.max(this.joiner.ackedSeq, seq);
      this.noticeCaughtUp();
      return;
    }
    if (seq <= this.ackedSeq) return;
    this.ackedSeq = Math.min(seq, this.state.appliedSeq);
    this.retained.trim(this.ackedSeq);
    this.ackDue = true;
  }

  // ---- downstream: the server this one forwards to --------------------------

  private startDownstream(id: number): void {
    this.down = {
      id,
      synced: false,
      sentUpTo: 0,
      lastSyncRequestMs: this.nowMs,
      seenApplied: -1,
      seenAppliedSinceMs: this.nowMs,
    };
    this.send(id, { type: "sync_request", from: this.selfId, epoch: this.config.epoch, chain: this.config.chain });
  }

  /** The downstream server has applied up to (seq, epoch): send what it lacks. */
  private syncDownstream(seq: number, epoch: number): void {
    const down = present(this.down, "resend needs a downstream");
    const mine = this.state.appliedSeq;
    const isPrefix = seq <= mine && this.retained.epochAt(seq) === epoch;
    const missing = isPrefix ? this.retained.after(seq) : null;
    if (missing) {
      for (let i = 0; i < missing.length; i += FORWARD_BATCH_MAX) {
        this.send(down.id, this.forwardMessage(missing.slice(i, i + FORWARD_BATCH_MAX)));
      }
    } else {
      // Diverged, or too far behind what we retain: the whole state (allocated pages only).
      this.out.push({ kind: "note", text: `sending a snapshot at seq ${mine} to server ${down.id} (it is at ${seq}, epoch ${epoch})` });
      this.send(down.id, this.snapshotMessage());
    }
    down.synced = true;
    down.sentUpTo = mine;
  }

  private onSyncRequest(from: number, config: ChainConfig): void {
    if (config.epoch > this.config.epoch) this.adoptConfig(config, null);
    else if (config.epoch < this.config.epoch && this.status === "joining" && from === tailOf(this.config) && from === tailOf(config)) {
      this.followTail(config);
    }
    if (config.epoch !== this.config.epoch || this.status === "booting") return;
    const fromPredecessor = this.status === "member" && predecessorOf(this.config, this.selfId) === from;
    const fromTail = this.status === "joining" && tailOf(this.config) === from;
    if (!fromPredecessor && !fromTail) return;
    this.upstream = from;
    this.lastUpstreamMs = this.nowMs;
    this.sendSyncReply(from);
  }

  /**
   * The tail we asked to join answers from an older configuration than ours: ours was
   * never agreed (its issuer was removed without knowing it, and the members refused it —
   * default mode), and waiting in it would wait for ever, since no member will move to it.
   * A joiner serves nobody: it takes the configuration the tail serves in, and joins there.
   */
  private followTail(config: ChainConfig): void {
    this.out.push({ kind: "note", text: `the tail ${tailOf(config)} serves in ${describeConfig(config)}, not in our ${describeConfig(this.config)}: joining there` });
    this.config = config;
    this.configSinceMs = this.nowMs;
    this.out.push({ kind: "config", config });
  }

  private sendSyncReply(to: number): void {
    this.send(to, {
      type: "sync_reply",
      from: this.selfId,
      epoch: this.config.epoch,
      appliedSeq: this.state.appliedSeq,
      lastEpoch: this.lastEpoch,
    });
  }

  // ---- joining ------------------------------------------------------------

  private onJoin(from: number, appliedSeq: number, lastEpoch: number): void {
    if (!this.isTail || this.config.chain.includes(from)) return;
    // One joiner at a time; another one retries and finds the new tail.
    if (this.joiner && this.joiner.id !== from && !this.suspected(this.joiner.id)) return;
    if (this.joiner?.id === from && this.down?.id === from && !this.down.synced) return;
    // Its position counts as progress only if its history is a prefix of ours. A joiner
    // that diverged, or that is ahead of us with updates never acknowledged, would else be
    // declared caught up (and made tail) before the snapshot replacing its state reached it.
    const prefix = appliedSeq <= this.state.appliedSeq && this.retained.epochAt(appliedSeq) === lastEpoch;
    this.joiner = { id: from, ackedSeq: prefix ? appliedSeq : -1, lastNoticeMs: -Infinity, caughtUpSinceMs: null };
    this.startDownstream(from);
  }

  /**
   * As tail: the joiner has everything we have and the head is appending it. Until the new
   * configuration makes it the tail we apply nothing more: applied here, an update would be
   * acknowledged by us while the new tail lacks it, and if we and the head then crash before
   * it reaches the new tail, the survivor never gets it (sim seed 93000179, two crashes of
   * three). Our upstream resends it: it resynchronises us in the new configuration (or when
   * our heartbeats show no progress). We resume after suspectMs if the head does not append it.
   */
  private awaitsJoinerAppended(): boolean {
    const since = this.joiner?.caughtUpSinceMs ?? null;
    if (since === null || !this.isTail) return false;
    if (this.nowMs - since <= this.options.suspectMs) return true;
    present(this.joiner, "a joiner caught up").caughtUpSinceMs = null;
    return false;
  }

  private noticeCaughtUp(): void {
    const joiner = this.joiner;
    if (!joiner || !this.isTail || joiner.ackedSeq < this.state.appliedSeq) return;
    if (this.nowMs - joiner.lastNoticeMs < this.options.heartbeatMs) return;
    joiner.lastNoticeMs = this.nowMs;
    joiner.caughtUpSinceMs ??= this.nowMs;
    this.send(present(this.config.chain[0], "a member tail sees a chain with a head"), { type: "caught_up", from: this.selfId, epoch: this.config.epoch, joiner: joiner.id });
    if (this.config.chain[0] === this.selfId) {
      // A chain of one: this server is head and tail.
      this.issueConfig([...this.config.chain, joiner.id]);
    }
  }

  private keepJoining(): void {
    const members = this.config.chain.filter((id) => id !== this.selfId);
    const serves = (id: number) => !this.suspected(id) && this.peerViews.get(id)?.status === "member";
    if (members.some(serves)) this.joinedChainSinceMs = this.nowMs;
    else if (this.nowMs - this.joinedChainSinceMs > this.options.suspectMs / 2) {
      // The chain we wanted to join is gone (its servers died or restarted): start over and
      // find (or form) one. Our history may be the most advanced left: tryBoot weighs it.
      // Not at once: the members' heartbeats saying they serve in a configuration we just
      // learnt may still be on their way (the issuer's last one said "booting"); a joiner that
      // booted then formed a chain of its own over the serving one (sim seed 115006055).
      this.becomeBooting();
      return;
    }
    const tail = tailOf(this.config);
    const quiet = this.nowMs - this.lastUpstreamMs > this.options.suspectMs;
    if (tail !== null && tail !== this.selfId && quiet && this.nowMs - this.lastJoinMs > this.options.suspectMs / 2) {
      this.lastJoinMs = this.nowMs;
      this.send(tail, { type: "join", from: this.selfId, appliedSeq: this.state.appliedSeq, lastEpoch: this.lastEpoch });
    }
  }

  // ---- booting: find a chain, or form one --------------------------------------

  private tryBoot(): void {
    const others = this.options.peers.filter((id) => id !== this.selfId);
    const alive = others.filter((id) => this.peerViews.has(id) && !this.suspected(id));
    const serving = alive
      .map((id) => present(this.peerViews.get(id), "no view of a live peer"))
      .filter((view) => view.status === "member" && view.epoch > 0)
      .sort((a, b) => b.epoch - a.epoch)[0];
    if (serving) {
      if (serving.epoch > this.config.epoch) this.adoptConfig({ epoch: serving.epoch, chain: serving.chain }, null);
      else this.becomeJoining(); // a configuration we know already: we were removed from it
      return;
    }
    const heardEveryone = alive.length === others.length;
    if (!heardEveryone && this.nowMs - this.bootStartMs < this.options.suspectMs) return;
    // --quorum majority: a chain is formed only by a side that hears a majority of --peers.
    if (this.majorityMode && alive.length + 1 < this.majority) return;
    // The servers of the last chain we (or the other booting servers) knew may hold updates
    // we lack, acknowledged before the outage: forming a chain without them could wipe
    // those updates when they come back. Wait for them all. What we learnt stays learnt
    // while we boot: the peer that told us may crash again (sim seed 9300508).
    const required = this.bootRequired;
    for (const member of this.config.chain) required.add(member);
    for (const id of alive) {
      const view = present(this.peerViews.get(id), "no view of a live peer");
      if (view.status !== "member") for (const member of view.chain) required.add(member);
    }
    required.delete(this.selfId);
    const noConfigKnown = this.config.epoch === 0 && alive.every((id) => present(this.peerViews.get(id), "no view of a live peer").epoch === 0);
    if (noConfigKnown && !this.majorityMode && !heardEveryone && !this.options.forceBoot) {
      // Nobody we hear knows any configuration: either the cluster is new, or the servers we
      // do not hear formed chains while we were down (and hold what they acknowledged since:
      // sim seeds 9300244, 9301015). Only all of --peers together can tell.
      const missing = others.filter((id) => !alive.includes(id));
      this.noteBootWait(missing, "no configuration known here: waiting for every server of --peers");
      return;
    }
    const missing = [...required].filter((id) => !alive.includes(id)).sort((a, b) => a - b);
    if (missing.length > 0 && !this.options.forceBoot) {
      this.noteBootWait(missing, "of the last chain: they may hold acknowledged updates");
      return;
    }
    if (missing.length > 0 && this.bootWaitingFor !== "forced") {
      this.bootWaitingFor = "forced";
      this.out.push({
        kind: "note",
        text: `--force-boot: forming a chain without server(s) ${missing.join(",")}; updates they hold after seq ${this.state.appliedSeq} (epoch ${this.lastEpoch}) are lost`,
      });
    }
    // Nobody serves: the most advanced history among the servers not serving leads. A joining
    // server counts too: it may be the last one holding acknowledged updates (it goes
    // booting once no member of its chain serves, and then forms the chain itself).
    const candidates = [this.selfId, ...alive.filter((id) => present(this.peerViews.get(id), "no view of a live peer").status !== "member")];
    const position = (id: number) =>
      id === this.selfId ? { lastEpoch: this.lastEpoch, appliedSeq: this.state.appliedSeq } : present(this.peerViews.get(id), "no view of a live peer");
    const best = candidates.reduce((a, b) => {
      const order = compareHistory(position(a), position(b));
      return order > 0 || (order === 0 && a < b) ? a : b; // ties: the lowest id leads
    });
    if (best !== this.selfId || this.proposal) return;
    const mine = position(this.selfId);
    const same = candidates.filter((id) => compareHistory(position(id), mine) === 0).sort((a, b) => a - b);
    this.out.push({ kind: "note", text: `forming a chain of ${same.join(",")} at seq ${mine.appliedSeq}` });
    this.issueConfig(same);
  }

  private noteBootWait(missing: number[], why: string): void {
    const waitingFor = missing.join(",");
    if (waitingFor === this.bootWaitingFor) return;
    this.bootWaitingFor = waitingFor;
    this.out.push({ kind: "note", text: `waiting for server(s) ${waitingFor} ${why}` });
  }

  private becomeJoining(): void {
    this.status = "joining";
    this.joinedChainSinceMs = this.nowMs;
    this.lastJoinMs = -Infinity;
    this.lastUpstreamMs = -Infinity;
  }

  private becomeBooting(): void {
    this.status = "booting";
    this.bootStartMs = this.nowMs;
    this.bootRequired.clear();
    this.down = null;
    this.upstream = null;
    this.joiner = null;
  }

  // ---- serving: failure detection and reconfiguration --------------------------

  private keepServing(): void {
    const witness = this.staleWitness();
    if (witness !== null) {
      // A server of our chain has long served in a configuration without us: ours is stale
      // (we were removed and missed it). Forget it and find the chain as a booting server does.
      const view = present(this.peerViews.get(witness), "no view of the witness");
      this.out.push({ kind: "note", text: `server ${witness} serves in ${describeConfig(view)} without us: leaving our stale ${describeConfig(this.config)}` });
      this.becomeBooting();
      this.config = NO_CONFIG;
      this.out.push({ kind: "config", config: this.config });
      return;
    }
    if (this.isHead && this.hasQuorum && !this.pulling) this.expireSilentSessions();
    if (this.pulling && this.nowMs - this.pulling.sinceMs > this.options.suspectMs) {
      this.out.push({ kind: "note", text: `server ${this.pulling.from} did not send its state: sequencing again` });
      this.endPull(null);
    }
    this.noteMinority();
    if (this.isIssuer() && !this.proposal) {
      const failed = this.config.chain.filter((id) => id !== this.selfId && this.hasLeftChain(id));
      if (failed.length > 0) {
        this.out.push({ kind: "note", text: `removing server(s) ${failed.join(",")} from the chain` });
        this.issueConfig(this.config.chain.filter((id) => !failed.includes(id)));
      }
    }
    const down = this.down;
    if (down && !down.synced && this.nowMs - down.lastSyncRequestMs > 2 * this.options.heartbeatMs) {
      down.lastSyncRequestMs = this.nowMs;
      this.send(down.id, { type: "sync_request", from: this.selfId, epoch: this.config.epoch, chain: this.config.chain });
    }
    if (down?.synced && down.seenApplied < down.sentUpTo && this.nowMs - down.seenAppliedSinceMs > this.options.suspectMs / 2) {
      // Its heartbeats show no progress towards what we sent: the link lost updates.
      this.startDownstream(down.id);
    }
    if (this.joiner && this.suspected(this.joiner.id)) {
      if (this.down?.id === this.joiner.id) this.down = null;
      this.joiner = null;
    }
    this.noticeCaughtUp();
  }

  private expireSilentSessions(): void {
    for (const session of this.monitor.expired(this.state.sessions)) {
      this.sequence({ seq: 0, epoch: 0, session: 0, reqNo: 0, doneBelow: 0, op: { type: "expire_session", session } });
    }
  }

  /** Notes one more sighting of a configuration from outside our chain; true once they have lasted 2 × suspectMs. */
  private foreignHasLasted(): boolean {
    const gapMs = 2 * this.options.heartbeatMs;
    if (!this.foreign || this.nowMs - this.foreign.lastMs > gapMs) this.foreign = { sinceMs: this.nowMs, lastMs: this.nowMs };
    this.foreign.lastMs = this.nowMs;
    return this.nowMs - this.foreign.sinceMs > 2 * this.options.suspectMs;
  }

  /** Our history ends where `id` last said its own does (same seq, same epoch). */
  private hasHistoryOf(id: number): boolean {
    if (id === this.selfId) return true;
    const view = this.peerViews.get(id);
    return view !== undefined && view.appliedSeq === this.state.appliedSeq && view.lastEpoch === this.lastEpoch;
  }

  /** A live server of our chain that has served for longer than suspectMs in another configuration that leaves us out. */
  private staleWitness(): number | null {
    for (const id of this.config.chain) {
      if (id === this.selfId || this.suspected(id)) continue;
      const view = this.peerViews.get(id);
      if (!view || view.servesWithoutUsSinceMs === null || view.epoch === this.config.epoch) continue;
      if (this.nowMs - Math.max(view.servesWithoutUsSinceMs, this.configSinceMs) > this.options.suspectMs) return id;
    }
    return null;
  }

  /** The first server of the chain that has not left it issues configurations. */
  private isIssuer(): boolean {
    if (this.status !== "member") return false;
    for (const id of this.config.chain) {
      if (id === this.selfId) return true;
      // A head that restarted before anyone suspected it is alive but serves no more:
      // waiting for it to be suspected would leave the chain without a head for good.
      if (!this.hasLeftChain(id)) return false;
    }
    return false;
  }

  /** Suspected, or it says itself that it does not serve in our configuration (it restarted). */
  private hasLeftChain(id: number): boolean {
    if (this.suspected(id)) return true;
    const view = this.peerViews.get(id);
    // What it said before we adopted this configuration is no news: a joiner this very
    // configuration added last reported "booting" or "joining".
    if (!view || view.lastHeardMs < this.configSinceMs) return false;
    // Booting before ever serving is a server still starting up with the others, not a restart.
    return (view.status === "booting" && view.wasMember) || (view.status === "joining" && view.epoch >= this.config.epoch);
  }

  private suspected(id: number): boolean {
    const view = this.peerViews.get(id);
    const last = view ? view.lastHeardMs : this.bootStartMs;
    if (view && this.nowMs < view.busyUntilMs) return false; // it said it would be busy
    return this.nowMs - last > this.options.suspectMs;
  }

  /**
   * This server is about to be busy (a large update to decode, apply, log and
   * forward) and cannot heartbeat meanwhile: tell the others now, so they do
   * not take the silence for a crash.
   */
  onBusy(expectedMs: number, nowMs: number): Ready {
    this.advanceClock(nowMs);
    this.busyUntilMs = Math.max(this.busyUntilMs, nowMs + expectedMs);
    this.broadcastHeartbeat(Math.ceil(expectedMs));
    return this.finish();
  }

  private onHeartbeat(message: Extract<PeerMessage, { type: "heartbeat" }>): void {
    const previous = this.peerViews.get(message.from);
    const wasMember = (previous?.wasMember ?? false) || message.status === "member";
    const withoutUs = message.status === "member" && !message.chain.includes(this.selfId);
    this.peerViews.set(message.from, {
      wasMember,
      busyUntilMs: message.busyMs > 0 ? this.nowMs + message.busyMs : (previous?.busyUntilMs ?? 0),
      servesWithoutUsSinceMs: withoutUs ? (previous?.servesWithoutUsSinceMs ?? this.nowMs) : null,
      diskFull: message.diskFull ?? false,
      lastHeardMs: this.nowMs,
      epoch: message.epoch,
      chain: message.chain,
      status: message.status,
      appliedSeq: message.appliedSeq,
      lastEpoch: message.lastEpoch,
    });
    this.highestEpochSeen = Math.max(this.highestEpochSeen, message.epoch);
    const down = this.down;
    if (down?.id === message.from && message.appliedSeq !== down.seenApplied) {
      down.seenApplied = message.appliedSeq;
      down.seenAppliedSinceMs = this.nowMs;
    }
    // With --quorum majority every configuration a server holds was agreed by a majority, so
    // a member learns a newer one from anybody: a stale member whose proposals are refused as
    // built on an old configuration learns the current one from the refusal's heartbeat, even
    // when nobody serves in it any more (its servers restarted), and joins or forms a chain.
    const agreed = message.status === "member" || (this.majorityMode && this.status === "member");
    if (message.epoch > this.config.epoch && agreed) {
      this.adoptConfig({ epoch: message.epoch, chain: message.chain }, null);
    }
  }

  private broadcastHeartbeat(busyMs = 0): void {
    this.lastHeartbeatMs = this.nowMs;
    for (const id of this.options.peers) {
      if (id !== this.selfId) this.sendHeartbeat(id, busyMs);
    }
  }

  private sendHeartbeat(to: number, busyMs: number): void {
    this.send(to, {
      type: "heartbeat",
      from: this.selfId,
      epoch: this.config.epoch,
      chain: this.config.chain,
      status: this.status,
      appliedSeq: this.state.appliedSeq,
      lastEpoch: this.lastEpoch,
      busyMs,
      diskFull: this.diskFull,
    });
  }

  /**
   * The host says whether its disk is full: told to the others with the heartbeats,
   * so that a head refuses data that a successor could not log (the chain would stall).
   */
  setDiskFull(full: boolean, nowMs: number): Ready {
    this.advanceClock(nowMs);
    if (full !== this.diskFull) {
      this.diskFull = full;
      this.broadcastHeartbeat();
    }
    return this.finish();
  }

  /** A live member of our chain, other than us, whose disk is full (null: none). */
  memberWithFullDisk(): number | null {
    for (const id of this.config.chain) {
      if (id !== this.selfId && this.peerViews.get(id)?.diskFull && !this.suspected(id)) return id;
    }
    return null;
  }

  // ---- configurations -----------------------------------------------------------

  private issueConfig(chain: number[]): void {
    if (this.majorityMode) return this.propose(chain);
    this.commitConfig({ epoch: nextEpoch(Math.max(this.highestEpochSeen, this.config.epoch), this.selfId), chain }, true);
  }

  /** Sends a configuration to every server and adopts it. `issued`: ours, not another proposer's we complete. */
  private commitConfig(config: ChainConfig, issued: boolean): void {
    const chain = config.chain;
    // A heartbeat first, on the same connections: a booting receiver then knows our history
    // when it decides whether it may serve in this configuration directly (hasHistoryOf).
    this.broadcastHeartbeat();
    for (const id of this.options.peers) {
      if (id !== this.selfId) this.send(id, { type: "config", from: this.selfId, epoch: config.epoch, chain, issued });
    }
    this.adoptConfig(config, issued ? this.selfId : null);
  }

  /**
   * Moves to a newer configuration. `issuer`: the server that issued it and sent it to us
   * (this one, when it issues it); null when learnt second hand, or completed by a server
   * other than its issuer. A booting server then only learns where the chain is (it must
   * join), while a config message from its issuer can make it a member directly.
   */
  private adoptConfig(config: ChainConfig, issuer: number | null): void {
    if (config.epoch <= this.config.epoch) return;
    this.highestEpochSeen = Math.max(this.highestEpochSeen, config.epoch);
    // (With --quorum majority every configuration was agreed by a majority: it is followed.)
    if (!this.majorityMode && this.status === "member" && !this.config.chain.includes(issuerOf(config.epoch)) && !this.foreignHasLasted()) {
      // Issued by a server that is not in our chain: it was removed from the chain without
      // knowing it, and built this configuration on its stale view. Following it could make
      // a server that lacks acknowledged updates our predecessor, or our head (which would
      // then overwrite us with its shorter history). It steps down itself (staleWitness)
      // within about suspectMs; a configuration that lasts beyond that is a real chain (two
      // chains after a partition): then the higher epoch wins, as without this rule.
      if (this.refusedEpoch !== config.epoch) {
        this.refusedEpoch = config.epoch;
        this.out.push({ kind: "note", text: `ignoring ${describeConfig(config)}: its issuer ${issuerOf(config.epoch)} is not in our chain` });
      }
      return;
    }
    this.foreign = null;
    const proposal = this.proposal;
    if (proposal && config.epoch > (proposal.value ?? proposal.own).baseEpoch) {
      // Built on the configuration we are leaving: it will never take effect.
      this.proposal = null;
    }
    const wasHead = this.isHead;
    const wasTail = this.isTail;
    const inChain = config.chain.includes(this.selfId);
    const previousChain = this.config.chain;
    this.config = config;
    this.configSinceMs = this.nowMs;
    // A booting server is made a member directly only when it has the issuer's history (a
    // chain formed at start-up). A restarted, emptied server that a late configuration still
    // lists must join instead: as a member it would overwrite its successors with its empty state.
    // So must it when a proposal is completed (--quorum majority), even by its own issuer: the
    // histories may have changed since it was proposed (a restart), so nobody knows any more
    // which history the chain was formed with (the completing server itself joins too).
    if (this.status === "booting") this.status = inChain && issuer === issuerOf(config.epoch) && this.hasHistoryOf(issuer) ? "member" : "joining";
    // A member stays one only behind a server that was before it in its chain (a chain derived
    // from ours: that server's history holds ours). Listed behind any other — a chain a booting
    // server formed on a stale view of us (sim seed 115006055) — its history could be longer than
    // its new predecessor's: it joins, and is synchronised as any joiner.
    else if (this.status === "member" && (!inChain || !keepsPredecessorOrder(previousChain, config.chain, this.selfId))) this.status = "joining";
    // A joiner serves once it is added as the new tail right behind the tail that synced it.
    // Listed anywhere else, the configuration is stale (its issuer missed that we restarted):
    // we stay joining, and the issuer removes us when it sees it.
    // (A joiner that no tail synchronised has no upstream: a chain of it alone is not for it.)
    else if (this.status === "joining" && inChain && this.upstream !== null && predecessorOf(config, this.selfId) === this.upstream && tailOf(config) === this.selfId) this.status = "member";
    this.out.push({ kind: "note", text: `now ${this.status} in ${describeConfig(config)}` });
    this.out.push({ kind: "config", config });
    if (this.status === "joining") this.joinedChainSinceMs = this.nowMs;
    if (this.status !== "member") {
      this.down = null;
      this.joiner = null;
      this.upstream = null;
      this.lastJoinMs = -Infinity;
      this.lastUpstreamMs = -Infinity;
      return;
    }
    this.upstream = predecessorOf(config, this.selfId);
    if (this.joiner && config.chain.includes(this.joiner.id)) this.joiner = null;
    const successor = successorOf(config, this.selfId) ?? this.joiner?.id ?? null;
    if (successor !== null) this.startDownstream(successor);
    else this.down = null;
    if (this.isHead && !wasHead) this.monitor.reset();
    if (this.isTail) {
      // Everything this server applied is now on the whole (shorter) chain.
      this.ackedSeq = this.state.appliedSeq;
      if (!wasTail) this.ackDue = true;
    }
  }

  // ---- --quorum majority: configurations agreed by Paxos ------------------------------

  /**
   * Proposes `chain` (Paxos, with every server of --peers an acceptor): phase 1 asks a
   * majority to promise our ballot; phase 2 proposes a value they accept; it takes effect
   * (commitConfig) once a majority accepted it. One proposal at a time: the callers retry on
   * a later tick once a proposal that gathered no majority is dropped.
   */
  private propose(chain: number[]): void {
    if (this.proposal) return;
    // A member builds on its configuration; a booting server forms a chain on the newest
    // configuration it has heard of (nobody serves in it, or it would join).
    const baseEpoch = this.status === "member" ? this.config.epoch : Math.max(this.config.epoch, this.highestEpochSeen);
    const ballot = nextEpoch(Math.max(this.highestEpochSeen, this.config.epoch, this.vote.promised), this.selfId);
    this.highestEpochSeen = Math.max(this.highestEpochSeen, ballot);
    this.setVote({ promised: ballot, accepted: this.vote.accepted });
    this.proposal = {
      ballot,
      own: { chain, baseEpoch, formed: this.status !== "member" },
      promises: new Map([[this.selfId, { configEpoch: this.config.epoch, accepted: this.vote.accepted }]]),
      value: null,
      accepted: new Set(),
      sinceMs: this.nowMs,
    };
    this.out.push({ kind: "note", text: `proposing ${chain.join("→")} on epoch ${baseEpoch}, ballot ${ballot} (a majority is ${this.majority} of ${this.options.peers.length})` });
    for (const id of this.options.peers) {
      if (id !== this.selfId) this.send(id, { type: "config_prepare", from: this.selfId, ballot, baseEpoch });
    }
    this.maybeStartPhase2();
  }

  /** The acceptor's vote changed: the server writes it before what follows is sent. */
  private setVote(vote: Vote): void {
    this.vote = vote;
    this.out.push({ kind: "vote", vote });
  }

  /**
   * Phase 1. A promise is given to a ballot above every one promised, built on our
   * configuration or a newer one; it says what we accepted last, so that the proposer
   * completes a proposal that may have been chosen instead of choosing another.
   */
  private onPrepare(from: number, ballot: number, baseEpoch: number): void {
    this.highestEpochSeen = Math.max(this.highestEpochSeen, ballot);
    if (ballot <= this.vote.promised || baseEpoch < this.config.epoch) {
      this.refuse(from, ballot, `built on epoch ${baseEpoch}`);
      return;
    }
    this.setVote({ promised: ballot, accepted: this.vote.accepted });
    // Our own proposal, if any, cannot pass our own acceptor any more.
    if (this.proposal && this.proposal.ballot < ballot) this.proposal = null;
    this.send(from, { type: "config_promise", from: this.selfId, ballot, configEpoch: this.config.epoch, accepted: this.vote.accepted });
  }

  private onPromise(from: number, ballot: number, configEpoch: number, accepted: AcceptedProposal | null): void {
    const proposal = this.proposal;
    if (!proposal || proposal.ballot !== ballot || proposal.value) return;
    proposal.promises.set(from, { configEpoch, accepted });
    this.maybeStartPhase2();
  }

  /**
   * With a majority of promises: the value. A proposal accepted by one of them that builds
   * on the newest configuration any of them (or we) hold, and is newer than it, may have
   * been chosen (Paxos: any majority holds one of its acceptors): the one of the highest
   * ballot is proposed again, as it is (same epoch, same chain). Otherwise ours.
   */
  private maybeStartPhase2(): void {
    const proposal = this.proposal;
    if (!proposal || proposal.value || proposal.promises.size < this.majority) return;
    let known = this.config.epoch;
    for (const promise of proposal.promises.values()) known = Math.max(known, promise.configEpoch);
    let pending: AcceptedProposal | null = null;
    for (const { accepted } of proposal.promises.values()) {
      if (!accepted || accepted.epoch <= known || accepted.baseEpoch < known) continue;
      if (!pending || accepted.ballot > pending.ballot) pending = accepted;
    }
    if (pending) {
      proposal.value = { epoch: pending.epoch, chain: pending.chain, baseEpoch: pending.baseEpoch, formed: pending.formed };
      this.out.push({ kind: "note", text: `completing ${describeConfig(pending)} (accepted under ballot ${pending.ballot}) instead of ours` });
    } else {
      proposal.value = { epoch: proposal.ballot, ...proposal.own };
    }
    const message = { type: "config_propose" as const, from: this.selfId, ballot: proposal.ballot, ...proposal.value };
    for (const id of this.options.peers) {
      if (id !== this.selfId) this.send(id, message);
    }
    this.onPropose(this.selfId, { ballot: proposal.ballot, ...proposal.value });
  }

  /** Phase 2. Accepted under a ballot at least our promise, built on our configuration or a newer one. */
  private onPropose(from: number, proposed: AcceptedProposal): void {
    this.highestEpochSeen = Math.max(this.highestEpochSeen, proposed.ballot, proposed.epoch);
    // A chain a booting server has just formed is accepted only where no chain serves: it does
    // not descend from a serving chain (its base is just the newest epoch that server had
    // heard of), its servers become members at once, and it would put that chain's history,
    // with its acknowledged updates, behind servers that lack them. So a member refuses it, and
    // so does a server that hears one serving (the booting server may not hear it): the booting
    // server is to find that chain and join. A formed chain being completed makes nobody a
    // member (adoptConfig): it is accepted, or it would stay pending for ever.
    const fresh = proposed.epoch === proposed.ballot;
    const refused =
      proposed.ballot < this.vote.promised ||
      proposed.baseEpoch < this.config.epoch ||
      proposed.epoch <= this.config.epoch ||
      (proposed.formed && fresh && (this.status === "member" || this.hearsServing()));
    if (refused) {
      this.refuse(from, proposed.ballot, `${describeConfig(proposed)} built on epoch ${proposed.baseEpoch}`);
      return;
    }
    this.setVote({ promised: proposed.ballot, accepted: { ...proposed, chain: [...proposed.chain] } });
    if (this.proposal && this.proposal.ballot < proposed.ballot) this.proposal = null;
    if (from === this.selfId) this.onAccept(this.selfId, proposed.ballot);
    else this.send(from, { type: "config_accept", from: this.selfId, ballot: proposed.ballot });
  }

  /** A live server says it serves as a member of a configuration. */
  private hearsServing(): boolean {
    for (const [id, view] of this.peerViews) {
      if (view.status === "member" && view.epoch > 0 && !this.suspected(id)) return true;
    }
    return false;
  }

  /** Refused: our heartbeat tells the proposer our configuration (and a member's, to adopt), the refusal our promise. */
  private refuse(from: number, ballot: number, what: string): void {
    if (from === this.selfId) {
      this.proposal = null;
      return;
    }
    this.sendHeartbeat(from, 0);
    this.send(from, { type: "config_refuse", from: this.selfId, ballot, promised: this.vote.promised });
    if (this.refusedEpoch !== ballot) {
      this.refusedEpoch = ballot;
      this.out.push({ kind: "note", text: `refusing ballot ${ballot} of server ${from} (${what}): our configuration is ${this.config.epoch}, our promise ${this.vote.promised}` });
    }
  }

  private onAccept(from: number, ballot: number): void {
    const proposal = this.proposal;
    if (!proposal?.value || proposal.ballot !== ballot) return;
    proposal.accepted.add(from);
    if (proposal.accepted.size < this.majority) return;
    this.proposal = null;
    // Our configuration moved on meanwhile (adopted from the others): the proposal is void.
    if (this.config.epoch > proposal.value.baseEpoch) return;
    this.commitConfig({ epoch: proposal.value.epoch, chain: proposal.value.chain }, proposal.value.epoch === proposal.ballot);
  }

  private dropStaleProposal(): void {
    const proposal = this.proposal;
    if (!proposal || this.nowMs - proposal.sinceMs <= PROPOSAL_HEARTBEATS * this.options.heartbeatMs) return;
    this.proposal = null;
    const phase = proposal.value ? `accepted by ${proposal.accepted.size}` : `promised by ${proposal.promises.size}`;
    this.out.push({ kind: "note", text: `dropping the proposal of ballot ${proposal.ballot}: ${phase} of the ${this.majority} needed` });
  }

  private liveInChain(): number {
    return this.config.chain.filter((id) => id === this.selfId || !this.suspected(id)).length;
  }

  /** Notes (once per change) that the head refuses requests for want of a majority. */
  private noteMinority(): void {
    const note = this.isHead && !this.hasQuorum ? `no majority: ${this.liveInChain()} of ${this.options.peers.length} servers in the chain; refusing requests` : "";
    if (note !== this.minorityNote && note !== "") this.out.push({ kind: "note", text: note });
    this.minorityNote = note;
  }

  // ---- output -------------------------------------------------------------------

  private forwardMessage(updates: Update[]): PeerMessage {
    const prevEpoch = updates.length === 0 ? PREV_EPOCH_UNKNOWN : (this.epochs.epochAt(updates[0]!.seq - 1) ?? PREV_EPOCH_UNKNOWN);
    return { type: "forward", from: this.selfId, epoch: this.config.epoch, prevEpoch, updates };
  }

  private send(to: number, message: PeerMessage): void {
    this.out.push({ kind: "send", to, message });
  }

  /**
   * As head: recall the cached grants that block a waiter (docs/protocol.md#cached-holds),
   * after every event — an acquire that queued is answered by its recalls at once — and again
   * on ticks until given back. Derived from the state, so a new head resends what is owed.
   */
  private recallCachedGrants(): void {
    if (!this.isHead) return this.recalls.reset();
    if (this.state.contended.size === 0) return;
    for (const recall of this.recalls.due(this.state, this.nowMs)) this.out.push({ kind: "recall", recall });
  }

  /** Flushes batched forwards and acks, and hands the actions over. */
  private finish(): Ready {
    if (this.toForward.length > 0 && this.down) {
      for (let i = 0; i < this.toForward.length; i += FORWARD_BATCH_MAX) {
        this.send(this.down.id, this.forwardMessage(this.toForward.slice(i, i + FORWARD_BATCH_MAX)));
      }
    }
    this.toForward = [];
    // Acks are not on any client's path (the tail replies itself): coalesce them, so
    // a stream of updates does not wake every upstream server once per update.
    if (this.ackDue && this.nowMs - this.lastAckMs >= ACK_INTERVAL_MS) {
      this.ackDue = false;
      this.lastAckMs = this.nowMs;
      const ackSeq = this.status === "joining" ? this.state.appliedSeq : this.ackedSeq;
      if (this.upstream !== null && (this.status === "joining" || this.status === "member")) {
        const seqEpoch = this.epochs.epochAt(ackSeq) ?? 0;
        this.send(this.upstream, { type: "ack", from: this.selfId, epoch: this.config.epoch, seq: ackSeq, seqEpoch });
      }
      if (this.status === "member") this.retained.trim(this.ackedSeq);
    }
    this.recallCachedGrants();
    const actions = this.out;
    this.out = [];
    return this.readyOf(actions);
  }

  /** The step's actions as the host must carry them out (ready.ts): disk work first, then what leaves. */
  private readyOf(actions: Action[]): Ready {
    const ready = emptyReady();
    const configEpoch = this.config.epoch;
    for (const action of actions) {
      switch (action.kind) {
        case "log":
        case "vote":
          ready.persist.push(action);
          break;
        case "install":
        case "checkpoint":
          ready.persist.push({ ...action, configEpoch });
          break;
        case "config":
          ready.persist.push(action);
          ready.send.push({ kind: "announce", view: this.clientView() });
          break;
        case "reply":
          ready.send.push(replyOut(this.state, action.output.session, action.output.reqNo, action.output.reply));
          break;
        case "recall":
          ready.send.push(action);
          break;
        case "send":
          ready.send.push({ kind: "peer", to: action.to, message: action.message });
          break;
        case "note":
          ready.notes.push(action.text);
          break;
      }
    }
    return ready;
  }

  /** The chain clients must use: none while this server does not serve. */
  clientView(): ClientView {
    return { epoch: this.config.epoch, chain: this.status === "member" ? [...this.config.chain] : [] };
  }
}

/** `id`'s predecessor in `chain` is none, or a server that was before it in `previous`. */
function keepsPredecessorOrder(previous: number[], chain: number[], id: number): boolean {
  const index = chain.indexOf(id);
  if (index <= 0) return true;
  const before = previous.indexOf(chain[index - 1]!);
  return before >= 0 && before < previous.indexOf(id);
}

function compareHistory(a: { lastEpoch: number; appliedSeq: number }, b: { lastEpoch: number; appliedSeq: number }): number {
  return a.lastEpoch - b.lastEpoch || a.appliedSeq - b.appliedSeq;
}
