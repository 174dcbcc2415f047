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
import { PREV_EPOCH_UNKNOWN, type PeerMessage, type Request, type Update } from "../wire";
import { type ChainConfig, NO_CONFIG, NO_VOTE, type Vote, describeConfig, predecessorOf, tailOf } from "./chain";
import { EpochHistory } from "./epochs";
import { decodeSnapshot, encodeSnapshot } from "./snapshot";
import type { Output, StoreState } from "./state";
import { type ClientView, type Ready, emptyReady, replyOut } from "./ready";
import { type Action, type ReplicaOptions, ReplicaShared } from "./replica_shared";
import { adoptConfig, issueConfig } from "./configuration";
import { awaitsJoinerAppended, becomeBooting, broadcastHeartbeat, keepJoining, keepServing, noticeCaughtUp, onHeartbeat, onJoin, tryBoot } from "./membership";
import { dropStaleProposal, onAccept, onPrepare, onPromise, onPropose } from "./paxos";

export type { Action, PeerView, ReplicaOptions } from "./replica_shared";

/** At most one ack up the chain per this many ms (and at every tick). */
const ACK_INTERVAL_MS = 5;

export class Replica {
  private readonly s: ReplicaShared;

  constructor(
    options: ReplicaOptions,
    state: StoreState,
    /** From disk (issue 4): the epoch of the last applied update. */
    lastEpoch = 0,
    /** From disk: the last configuration this server knew. It boots with it (not serving). */
    lastConfig: ChainConfig = NO_CONFIG,
    /** From disk (--quorum majority): what this server promised and accepted. */
    lastVote: Vote = NO_VOTE,
    /** From disk: the epochs of the recovered history (the checkpoint's, then the replayed log's). */
    epochs: EpochHistory = new EpochHistory(state.appliedSeq, lastEpoch),
  ) {
    this.s = new ReplicaShared(options, state, lastEpoch, lastConfig, lastVote, epochs);
  }

  get options() {
    return this.s.options;
  }

  get state() {
    return this.s.state;
  }

  get monitor() {
    return this.s.monitor;
  }

  get status() {
    return this.s.status;
  }

  get config() {
    return this.s.config;
  }

  get lastEpoch() {
    return this.s.lastEpoch;
  }

  get ackedSeq() {
    return this.s.ackedSeq;
  }

  get peerViews() {
    return this.s.peerViews;
  }

  get selfId() {
    return this.s.selfId;
  }

  get isHead() {
    return this.s.isHead;
  }

  get majority() {
    return this.s.majority;
  }

  get hasQuorum() {
    return this.s.hasQuorum;
  }

  get isTail() {
    return this.s.isTail;
  }

  // ---- events -------------------------------------------------------------

  /** A client request; only the head sequences (the server redirects the others). */
  onRequest(request: Request): Ready {
    handleRequest(this.s, request);
    return this.finish();
  }

  /**
   * A client's heartbeat. Its `doneBelow` may show replies this history never
   * produced (see StoreState.lostRequests): a client that sends no request after
   * a partition healed must not keep, for its session's life, holds it released
   * on the side that lost — its session is ended now.
   */
  onClientHeartbeat(session: number, doneBelow: number): Ready {
    this.s.monitor.heard(session);
    const known = this.s.state.sessions.get(session);
    if (known && this.s.hasQuorum && !this.s.pulling && this.s.state.lostRequests(known, doneBelow)) {
      sequence(this.s, { seq: 0, epoch: 0, session: 0, reqNo: 0, doneBelow: 0, op: { type: "expire_session", session } });
    }
    return this.finish();
  }

  /** The connection to a peer broke: suspect it now rather than after suspectMs. */
  onPeerDisconnected(id: number): Ready {
    const view = this.s.peerViews.get(id);
    // Our connection to it broke, but its heartbeats come over its own connection to us: a
    // reset alone does not make it dead. Suspecting it at once let both ends of a reset
    // remove each other and serve as two chains. Suspect it if it stays silent two heartbeats.
    if (view) view.lastHeardMs = Math.min(view.lastHeardMs, this.s.nowMs - this.s.options.suspectMs + 2 * this.s.options.heartbeatMs);
    return this.finish();
  }

  onTick(nowMs: number): Ready {
    const pausedMs = this.s.lastTickMs === null ? 0 : nowMs - this.s.lastTickMs - this.s.options.heartbeatMs;
    if (pausedMs > this.s.options.suspectMs / 2) {
      // This process was not running (stopped, swapped, a long GC): it cannot tell
      // whether the others were silent, so it does not suspect them for that time.
      for (const view of this.s.peerViews.values()) view.lastHeardMs += pausedMs;
      // Nor did it wait for them while booting (it would form a chain alone, though what the
      // others sent waits unread in its sockets), nor hear its clients (their heartbeats too).
      this.s.bootStartMs += pausedMs;
      this.s.monitor.shift(pausedMs);
      this.s.out.push({ kind: "note", text: `this server was paused for ${Math.round(pausedMs)} ms` });
      // Others suspect us once silent past --suspect-ms, but never within a busy time we
      // announced (a large update on a loaded machine: leaving the chain then stalled it).
      // Our silence runs from our last heartbeat, sent up to a heartbeat before our last tick,
      // and the next may reach them a heartbeat late: a pause of 396 ms kept us silent 487 ms
      // with --suspect-ms 400, we went on in the chain the others had removed us from, and
      // served without what they had acknowledged meanwhile (sim seed 53004585).
      const silentMs = nowMs - this.s.lastHeartbeatMs + this.s.options.heartbeatMs;
      const othersMaySuspectUs = silentMs > this.s.options.suspectMs && nowMs > this.s.busyUntilMs;
      if (othersMaySuspectUs && this.s.status === "member" && !this.s.majorityMode && this.s.config.chain.length > 1) {
        // Long enough for the others to remove us and acknowledge updates without us (we
        // would then lead a chain on a stale history: sim seed 33001083). Find the chain
        // again as a booting server does, waiting for the servers of our last chain.
        this.s.out.push({ kind: "note", text: "longer than --suspect-ms: the others may have served without us; finding the chain again" });
        // What we heard before the pause is stale: boot on what the others say from now on.
        this.s.advanceClock(nowMs);
        this.s.peerViews.clear();
        becomeBooting(this.s);
      }
    }
    this.s.lastTickMs = nowMs;
    this.s.advanceClock(nowMs);
    if (this.s.bootStartMs === 0) this.s.bootStartMs = nowMs;
    if (nowMs - this.s.lastHeartbeatMs >= this.s.options.heartbeatMs) broadcastHeartbeat(this.s);
    dropStaleProposal(this.s);
    if (this.s.status === "booting") tryBoot(this.s);
    else if (this.s.status === "joining") keepJoining(this.s);
    else keepServing(this.s);
    return this.finish();
  }

  /** A message from another server; `nowMs` (when known) keeps the clock current between ticks. */
  onPeerMessage(message: PeerMessage, nowMs?: number): Ready {
    if (nowMs !== undefined) this.s.advanceClock(nowMs);
    switch (message.type) {
      case "heartbeat":
        onHeartbeat(this.s, message);
        break;
      case "config":
        adoptConfig(this.s, { epoch: message.epoch, chain: message.chain }, message.issued ? message.from : null);
        break;
      case "sync_request":
        onSyncRequest(this.s, message.from, { epoch: message.epoch, chain: message.chain });
        break;
      case "sync_reply":
        if (this.s.down?.id === message.from && message.epoch === this.s.config.epoch) {
          syncDownstream(this.s, message.appliedSeq, message.lastEpoch);
        }
        break;
      case "forward":
        if (acceptsFrom(this.s, message.from, message.epoch)) onForward(this.s, message.updates, message.prevEpoch);
        break;
      case "snapshot":
        if (this.s.pulling?.from === message.from && message.epoch === this.s.config.epoch && this.s.isHead) endPull(this.s, message.seq > this.s.state.appliedSeq ? message : null);
        else if (acceptsFrom(this.s, message.from, message.epoch)) onSnapshot(this.s, message);
        break;
      case "ahead":
        onAhead(this.s, message);
        break;
      case "pull":
        if (message.epoch === this.s.config.epoch && message.from === this.s.config.chain[0] && this.s.state.appliedSeq > message.baseSeq) {
          this.s.send(message.from, snapshotMessage(this.s));
        }
        break;
      case "ack":
        if (message.epoch === this.s.config.epoch && this.s.down?.id === message.from) onAck(this.s, message.from, message.seq, message.seqEpoch);
        break;
      case "join":
        onJoin(this.s, message.from, message.appliedSeq, message.lastEpoch);
        break;
      case "config_prepare":
        onPrepare(this.s, message.from, message.ballot, message.baseEpoch);
        break;
      case "config_promise":
        onPromise(this.s, message.from, message.ballot, message.configEpoch, message.accepted);
        break;
      case "config_propose":
        onPropose(this.s, message.from, { ballot: message.ballot, epoch: message.epoch, chain: message.chain, baseEpoch: message.baseEpoch, formed: message.formed });
        break;
      case "config_accept":
        onAccept(this.s, message.from, message.ballot);
        break;
      case "config_refuse":
        this.s.highestEpochSeen = Math.max(this.s.highestEpochSeen, message.promised);
        break;
      case "caught_up":
        if (this.s.isHead && message.epoch === this.s.config.epoch && message.from === tailOf(this.s.config)) {
          if (!this.s.config.chain.includes(message.joiner)) issueConfig(this.s, [...this.s.config.chain, message.joiner]);
        }
        break;
    }
    return this.finish();
  }

  /** Replies already produced for requests a (re)connecting client still waits on. */
  storedReplies(sessionId: number, waiting: number[]): Ready {
    const ready = emptyReady();
    const session = this.s.state.sessions.get(sessionId);
    if (!session) return ready;
    for (const reqNo of waiting) {
      const reply = session.replies.get(reqNo);
      if (reply) ready.send.push(replyOut(this.s.state, sessionId, reqNo, reply));
      else if (reply === null) ready.send.push(replyOut(this.s.state, sessionId, reqNo, { type: "queued" }));
    }
    return ready;
  }

  /** The answer to a client's list or stat query (the tail's state is the acknowledged one). */
  queryAnswer(kind: "list" | "stat", name: string): unknown {
    if (kind === "list") return this.s.state.list();
    const datum = this.s.state.data.get(name);
    if (!datum) return { error: { code: "ENOENT", message: `no datum named "${name}"` } };
    return this.s.state.info(datum);
  }

  /**
   * This server is about to be busy (a large update to decode, apply, log and
   * forward) and cannot heartbeat meanwhile: tell the others now, so they do
   * not take the silence for a crash.
   */
  onBusy(expectedMs: number, nowMs: number): Ready {
    this.s.advanceClock(nowMs);
    this.s.busyUntilMs = Math.max(this.s.busyUntilMs, nowMs + expectedMs);
    broadcastHeartbeat(this.s, Math.ceil(expectedMs));
    return this.finish();
  }

  /**
   * The host says whether its disk is full: told to the others with the heartbeats,
   * so that a head refuses data that a successor could not log (the chain would stall).
   */
  setDiskFull(full: boolean, nowMs: number): Ready {
    this.s.advanceClock(nowMs);
    if (full !== this.s.diskFull) {
      this.s.diskFull = full;
      broadcastHeartbeat(this.s);
    }
    return this.finish();
  }

  /** A live member of our chain, other than us, whose disk is full (null: none). */
  memberWithFullDisk(): number | null {
    for (const id of this.s.config.chain) {
      if (id !== this.s.selfId && this.s.peerViews.get(id)?.diskFull && !this.s.suspected(id)) return id;
    }
    return null;
  }

  /** Flushes batched forwards and acks, and hands the actions over. */
  private finish(): Ready {
    if (this.s.toForward.length > 0 && this.s.down) {
      for (let i = 0; i < this.s.toForward.length; i += FORWARD_BATCH_MAX) {
        this.s.send(this.s.down.id, forwardMessage(this.s, this.s.toForward.slice(i, i + FORWARD_BATCH_MAX)));
      }
    }
    this.s.toForward = [];
    // Acks are not on any client's path (the tail replies itself): coalesce them, so
    // a stream of updates does not wake every upstream server once per update.
    if (this.s.ackDue && this.s.nowMs - this.s.lastAckMs >= ACK_INTERVAL_MS) {
      this.s.ackDue = false;
      this.s.lastAckMs = this.s.nowMs;
      const ackSeq = this.s.status === "joining" ? this.s.state.appliedSeq : this.s.ackedSeq;
      if (this.s.upstream !== null && (this.s.status === "joining" || this.s.status === "member")) {
        const seqEpoch = this.s.epochs.epochAt(ackSeq) ?? 0;
        this.s.send(this.s.upstream, { type: "ack", from: this.s.selfId, epoch: this.s.config.epoch, seq: ackSeq, seqEpoch });
      }
      if (this.s.status === "member") this.s.retained.trim(this.s.ackedSeq);
    }
    recallCachedGrants(this.s);
    const actions = this.s.out;
    this.s.out = [];
    return this.readyOf(actions);
  }

  /** The step's actions as the host must carry them out (ready.ts): disk work first, then what leaves. */
  private readyOf(actions: Action[]): Ready {
    const ready = emptyReady();
    const configEpoch = this.s.config.epoch;
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
          ready.send.push(replyOut(this.s.state, action.output.session, action.output.reqNo, action.output.reply));
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
    return { epoch: this.s.config.epoch, chain: this.s.status === "member" ? [...this.s.config.chain] : [] };
  }
}

function handleRequest(r: ReplicaShared, request: Request): void {
  if (!r.isHead) return;
  r.monitor.heard(request.session);
  const session = r.state.sessions.get(request.session);
  const stored: Output[] = [];
  if (request.op.type !== "open_session" && session && r.state.isDuplicate(session, request.reqNo, stored)) {
    // Applied already (checked before the quorum: a resent release must not look failed);
    // the tail delivers (or re-delivers on subscribe) its reply.
    if (r.isTail) for (const output of stored) r.out.push({ kind: "reply", output });
    return;
  }
  if (r.pulling) {
    // Sequenced now, it would fork our history from the one we are taking over.
    if (r.deferred.length < REQUESTS_DEFERRED_MAX) r.deferred.push(request);
    return;
  }
  if (!r.hasQuorum) {
    // A minority chain (--quorum majority) acknowledges nothing: the other side may serve.
    const message = `no majority: ${r.liveInChain()} of ${r.options.peers.length} servers in the chain`;
    const reply = { type: "error" as const, code: "EUNAVAILABLE", message };
    r.out.push({ kind: "reply", output: { session: request.session, reqNo: request.reqNo, reply } });
    return;
  }
  if (request.op.type !== "open_session" && !session) {
    // The head has the newest state: a session it does not know is gone.
    const reply = { type: "error" as const, code: "ESESSION", message: "the session expired or is unknown: its holds were released; reconnect" };
    r.out.push({ kind: "reply", output: { session: request.session, reqNo: request.reqNo, reply } });
    return;
  }
  let op = request.op;
  if (op.type === "open_session" && op.timeoutMs === 0) op = { ...op, timeoutMs: r.options.sessionTimeoutMsDefault };
  sequence(r, { seq: 0, epoch: 0, session: request.session, reqNo: request.reqNo, doneBelow: request.doneBelow, op });
}

// ---- applying updates -----------------------------------------------------

export function sequence(r: ReplicaShared, update: Update): void {
  update.seq = r.state.appliedSeq + 1;
  update.epoch = r.config.epoch;
  apply(r, update);
}

function apply(r: ReplicaShared, update: Update): void {
  const outputs = r.state.apply(update);
  r.lastEpoch = update.epoch;
  r.retained.append(update);
  r.epochs.note(update.seq, update.epoch);
  r.out.push({ kind: "log", update });
  if (update.op.type === "checkpoint") {
    // Taken now, at exactly this seq, on every replica: a recovery line.
    r.out.push({ kind: "checkpoint", seq: update.seq, epoch: update.epoch, snapshot: encodeSnapshot(r.state) });
  }
  if (r.isTail) {
    for (const output of outputs) r.out.push({ kind: "reply", output });
    r.ackedSeq = update.seq;
  }
  if (r.down?.synced) {
    r.toForward.push(update);
    r.down.sentUpTo = update.seq;
  }
  // The tail acknowledges up the chain; a joiner tells the tail how far it got.
  if (r.isTail || r.status === "joining") r.ackDue = true;
}

function onForward(r: ReplicaShared, updates: Update[], prevEpoch: number): void {
  r.lastUpstreamMs = r.nowMs;
  if (awaitsJoinerAppended(r)) return;
  if (!onSameHistory(r, updates, prevEpoch)) {
    // The sender's history parts from ours at or before our last update (a snapshot it sent
    // us was lost: sim seed 58000733): applying its next updates on ours would mix the two.
    // Tell it where we are: it sends what we need, a snapshot if we diverged.
    sendSyncReply(r, present(r.upstream, "a sync request comes from the upstream"));
    return;
  }
  for (const update of updates) {
    if (update.seq <= r.state.appliedSeq) continue; // a resend after a resync
    if (update.seq !== r.state.appliedSeq + 1) {
      // A gap: updates were lost on the way. Ask for a resend from where we are.
      sendSyncReply(r, present(r.upstream, "a sync request comes from the upstream"));
      break;
    }
    apply(r, update);
  }
}

/** The sender's history, as far as these updates show it, holds our last update. */
function onSameHistory(r: ReplicaShared, updates: Update[], prevEpoch: number): boolean {
  if (updates.length === 0) return true;
  const mine = r.state.appliedSeq;
  const first = updates[0]!.seq;
  const at = Math.min(mine, updates[updates.length - 1]!.seq);
  if (at < first - 1) return true; // a gap: handled as one
  const theirs = at === first - 1 ? prevEpoch : updates[at - first]!.epoch;
  if (theirs === PREV_EPOCH_UNKNOWN) return true;
  const ours = r.epochs.epochAt(at);
  return ours === null || ours === theirs;
}

function installSnapshot(r: ReplicaShared, bytes: Uint8Array, seq: number, epoch: number): void {
  r.lastUpstreamMs = r.nowMs;
  const state = decodeSnapshot(bytes);
  if (state.appliedSeq !== seq) throw new Error(`snapshot says seq ${seq} but holds ${state.appliedSeq}`);
  r.state = state;
  r.lastEpoch = epoch;
  r.retained.reset(seq, epoch);
  r.epochs = new EpochHistory(seq, epoch);
  r.out.push({ kind: "install", seq, epoch, snapshot: bytes });
  r.out.push({ kind: "note", text: `installed a snapshot at seq ${seq}` });
  if (r.isTail) r.ackedSeq = seq;
  // Our history changed under the downstream server: find out again what it lacks.
  if (r.down) startDownstream(r, r.down.id);
  r.ackDue = true;
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
function onSnapshot(r: ReplicaShared, message: Extract<PeerMessage, { type: "snapshot" }>): void {
  const { seq, lastEpoch } = message;
  if (r.majorityMode || r.status !== "joining" || seq >= r.state.appliedSeq || !r.epochs.extends(seq, lastEpoch)) {
    installSnapshot(r, message.bytes, seq, lastEpoch);
    return;
  }
  // Not synced by this tail: our acks must not make it take us for caught up. We join again
  // later; once the chain has acknowledged past `seq`, its snapshot no longer takes us back.
  r.upstream = null;
  if (r.nowMs - r.lastAheadMs < r.options.heartbeatMs) return;
  r.lastAheadMs = r.nowMs;
  const head = r.config.chain[0]!;
  r.out.push({ kind: "note", text: `refusing a snapshot at seq ${seq}: our history holds it and goes on to ${r.state.appliedSeq}; offering ours to the head ${head}` });
  r.send(head, { type: "ahead", from: r.selfId, epoch: r.config.epoch, baseSeq: seq, baseEpoch: lastEpoch, appliedSeq: r.state.appliedSeq });
}

/** As head: a server says its history holds ours and more. Take it if we sequenced nothing since. */
function onAhead(r: ReplicaShared, message: Extract<PeerMessage, { type: "ahead" }>): void {
  if (!r.isHead || message.epoch !== r.config.epoch || r.pulling) return;
  // Sequenced since the chain's history ended there: the histories part, ours stands.
  if (r.state.appliedSeq !== message.baseSeq || r.lastEpoch !== message.baseEpoch || message.appliedSeq <= message.baseSeq) return;
  r.pulling = { from: message.from, sinceMs: r.nowMs };
  r.out.push({ kind: "note", text: `server ${message.from} holds our history and more (to seq ${message.appliedSeq}): taking its state` });
  r.send(message.from, { type: "pull", from: r.selfId, epoch: r.config.epoch, baseSeq: message.baseSeq });
}

/** Stops pulling (with the state pulled, if any) and handles the requests that waited. */
export function endPull(r: ReplicaShared, pulled: Extract<PeerMessage, { type: "snapshot" }> | null): void {
  r.pulling = null;
  if (pulled) {
    installSnapshot(r, pulled.bytes, pulled.seq, pulled.lastEpoch);
    r.monitor.reset();
  }
  const deferred = r.deferred;
  r.deferred = [];
  for (const request of deferred) handleRequest(r, request);
}

function snapshotMessage(r: ReplicaShared): PeerMessage {
  return { type: "snapshot", from: r.selfId, epoch: r.config.epoch, seq: r.state.appliedSeq, lastEpoch: r.lastEpoch, bytes: encodeSnapshot(r.state) };
}

/** A server forwards only to the server that asked it (sync) in the current epoch. */
function acceptsFrom(r: ReplicaShared, from: number, epoch: number): boolean {
  return epoch === r.config.epoch && from === r.upstream && r.status !== "booting";
}

function onAck(r: ReplicaShared, from: number, seq: number, seqEpoch: number): void {
  if (r.joiner?.id === from) {
    // Progress only if its history is a prefix of ours: a joiner still on a history of its
    // own (a snapshot it refused, or one lost on the way) acks positions we never sent it,
    // and taken for caught up it became a member that was no prefix (sim seed 58000733).
    if (!r.epochs.extends(seq, seqEpoch)) return;
    r.joiner.ackedSeq = Math.max(r.joiner.ackedSeq, seq);
    noticeCaughtUp(r);
    return;
  }
  if (seq <= r.ackedSeq) return;
  r.ackedSeq = Math.min(seq, r.state.appliedSeq);
  r.retained.trim(r.ackedSeq);
  r.ackDue = true;
}

// ---- downstream: the server this one forwards to --------------------------

export function startDownstream(r: ReplicaShared, id: number): void {
  r.down = {
    id,
    synced: false,
    sentUpTo: 0,
    lastSyncRequestMs: r.nowMs,
    seenApplied: -1,
    seenAppliedSinceMs: r.nowMs,
  };
  r.send(id, { type: "sync_request", from: r.selfId, epoch: r.config.epoch, chain: r.config.chain });
}

/** The downstream server has applied up to (seq, epoch): send what it lacks. */
function syncDownstream(r: ReplicaShared, seq: number, epoch: number): void {
  const down = present(r.down, "resend needs a downstream");
  const mine = r.state.appliedSeq;
  const isPrefix = seq <= mine && r.retained.epochAt(seq) === epoch;
  const missing = isPrefix ? r.retained.after(seq) : null;
  if (missing) {
    for (let i = 0; i < missing.length; i += FORWARD_BATCH_MAX) {
      r.send(down.id, forwardMessage(r, missing.slice(i, i + FORWARD_BATCH_MAX)));
    }
  } else {
    // Diverged, or too far behind what we retain: the whole state (allocated pages only).
    r.out.push({ kind: "note", text: `sending a snapshot at seq ${mine} to server ${down.id} (it is at ${seq}, epoch ${epoch})` });
    r.send(down.id, snapshotMessage(r));
  }
  down.synced = true;
  down.sentUpTo = mine;
}

function onSyncRequest(r: ReplicaShared, from: number, config: ChainConfig): void {
  if (config.epoch > r.config.epoch) adoptConfig(r, config, null);
  else if (config.epoch < r.config.epoch && r.status === "joining" && from === tailOf(r.config) && from === tailOf(config)) {
    followTail(r, config);
  }
  if (config.epoch !== r.config.epoch || r.status === "booting") return;
  const fromPredecessor = r.status === "member" && predecessorOf(r.config, r.selfId) === from;
  const fromTail = r.status === "joining" && tailOf(r.config) === from;
  if (!fromPredecessor && !fromTail) return;
  r.upstream = from;
  r.lastUpstreamMs = r.nowMs;
  sendSyncReply(r, from);
}

/**
 * The tail we asked to join answers from an older configuration than ours: ours was
 * never agreed (its issuer was removed without knowing it, and the members refused it —
 * default mode), and waiting in it would wait for ever, since no member will move to it.
 * A joiner serves nobody: it takes the configuration the tail serves in, and joins there.
 */
function followTail(r: ReplicaShared, config: ChainConfig): void {
  r.out.push({ kind: "note", text: `the tail ${tailOf(config)} serves in ${describeConfig(config)}, not in our ${describeConfig(r.config)}: joining there` });
  r.config = config;
  r.configSinceMs = r.nowMs;
  r.out.push({ kind: "config", config });
}

function sendSyncReply(r: ReplicaShared, to: number): void {
  r.send(to, {
    type: "sync_reply",
    from: r.selfId,
    epoch: r.config.epoch,
    appliedSeq: r.state.appliedSeq,
    lastEpoch: r.lastEpoch,
  });
}

// ---- joining ------------------------------------------------------------

// ---- booting: find a chain, or form one --------------------------------------

// ---- serving: failure detection and reconfiguration --------------------------

// ---- configurations -----------------------------------------------------------

// ---- --quorum majority: configurations agreed by Paxos ------------------------------

// ---- output -------------------------------------------------------------------

function forwardMessage(r: ReplicaShared, updates: Update[]): PeerMessage {
  const prevEpoch = updates.length === 0 ? PREV_EPOCH_UNKNOWN : (r.epochs.epochAt(updates[0]!.seq - 1) ?? PREV_EPOCH_UNKNOWN);
  return { type: "forward", from: r.selfId, epoch: r.config.epoch, prevEpoch, updates };
}

/**
 * As head: recall the cached grants that block a waiter (docs/protocol.md#cached-holds),
 * after every event — an acquire that queued is answered by its recalls at once — and again
 * on ticks until given back. Derived from the state, so a new head resends what is owed.
 */
function recallCachedGrants(r: ReplicaShared): void {
  if (!r.isHead) return r.recalls.reset();
  if (r.state.contended.size === 0) return;
  for (const recall of r.recalls.due(r.state, r.nowMs)) r.out.push({ kind: "recall", recall });
}