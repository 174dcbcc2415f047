/**
 * One server's replica logic for chain replication (van Renesse & Schneider,
 * OSDI 2004). It sequences client requests (as head), applies and forwards
 * updates, acknowledges them (as tail), detects failures from heartbeats,
 * issues new configurations, and brings joining servers up to date.
 *
 * Pure: no I/O, clock or randomness. Every event returns one Ready (ready.ts):
 * what the host must write, then send, persist before send.
 *
 * This file is what hosts drive: the events, dispatched to the parts, and the
 * step's actions turned into its Ready. The parts are functions over one
 * ReplicaShared (replica_shared.ts) they take explicitly — flow.ts (sequencing,
 * forward/ack/sync), membership.ts (heartbeats, suspicion, boot, join),
 * configuration.ts (issue and adopt configurations), paxos.ts (--quorum
 * majority), cached.ts (the head's recalls). One shared state, not classes
 * owning their fields: the concerns read each other's fields at every step
 * (adopting a configuration resets the downstream and the joiner), so split
 * ownership would add getters without making a part smaller. Hosts see only
 * the read-only getters below.
 */
import { type PeerMessage, type Request } from "../wire";
import { type ChainConfig, NO_CONFIG, NO_VOTE, type Vote, tailOf } from "./chain";
import { EpochHistory } from "./epochs";
import type { StoreState } from "./state";
import { type ClientView, type Ready, emptyReady, replyOut } from "./ready";
import { type Action, type ReplicaOptions, ReplicaShared } from "./replica_shared";
import { acceptsFrom, endPull, flushForwardsAndAcks, handleRequest, onAck, onAhead, onForward, onSnapshot, onSyncRequest, sequence, snapshotMessage, syncDownstream } from "./flow";
import { recallCachedGrants } from "./cached";
import { acknowledgedSeq, isReplyHeld, noteDurable, noteMemberSynced, releaseDurableReplies, replyWhenDurable, tellTailSynced } from "./chain_sync";
import { adoptConfig, issueConfig } from "./configuration";
import { becomeBooting, broadcastHeartbeat, keepJoining, keepServing, noteChainAtWork, onHeartbeat, onJoin, sendHeartbeat, tryBoot } from "./membership";
import { dropStaleProposal, onAccept, onPrepare, onPromise, onPropose } from "./paxos";

export type { Action, PeerView, ReplicaOptions } from "./replica_shared";

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
    /** From disk: the servers heard while not serving since the last configuration adopted (ReplicaShared.bootPeers). */
    bootPeers: number[] = [],
  ) {
    this.s = new ReplicaShared(options, state, lastEpoch, lastConfig, lastVote, epochs, bootPeers);
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

  /** As tail: the updates up to here are acknowledged, their replies sent or free to go (for the simulator's checks). */
  get acknowledgedSeq(): number {
    return acknowledgedSeq(this.s);
  }

  /** This server told the others its disk is full (setDiskFull). */
  get diskFull(): boolean {
    return this.s.diskFull;
  }

  /** The host must say when its syncs are done (onDurable): --fsync always. */
  get awaitsSync(): boolean {
    return this.s.options.awaitSync === true;
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

  /** No connection with a peer is left (ours to it and its own to us broke): suspect it sooner than suspectMs. */
  onPeerDisconnected(id: number): Ready {
    const view = this.s.peerViews.get(id);
    // A killed process closes both; the host does not call this for a reset of one of them
    // (the peer's heartbeats come on its own connection). Not at once even so (ReplicaShared.suspected).
    if (view && view.linksLostAtMs === null) view.linksLostAtMs = this.s.nowMs;
    return this.finish();
  }

  /**
   * A connection with a peer completed its handshake, ours to it or its own to us: the peer
   * lives, so a suspicion from lost connections ends (--suspect-ms still applies). Two resets
   * overlapping, each end's new connection still in its handshake when the other broke, made
   * servers 1 and 3 suspect each other early and serve as two chains (sim seed 351002008).
   */
  onPeerConnected(id: number): Ready {
    const view = this.s.peerViews.get(id);
    if (view) view.linksLostAtMs = null;
    // After a cut, the next heartbeat could be ~a heartbeat away and the one before it went
    // nowhere: cuts of 37 and 32 ms around a pause kept server 3 without word from 2 past
    // --suspect-ms, and each removed the other (sim seed 281005851).
    sendHeartbeat(this.s, id, 0);
    return this.finish();
  }

  onTick(nowMs: number): Ready {
    const tickGapMs = this.s.lastTickMs === null ? 0 : nowMs - this.s.lastTickMs;
    const pausedMs = tickGapMs - this.s.options.heartbeatMs;
    if (pausedMs > 0) {
      // This process was not running (stopped, swapped, a long GC): it cannot tell whether
      // the others were silent, so it does not suspect them for that time. Even a short pause:
      // what they sent meanwhile waits unread in our sockets, read only after this tick (a
      // 185 ms pause made server 2 remove 3 at its resume, 3's heartbeat unread: seed 281005851).
      for (const view of this.s.peerViews.values()) {
        view.lastHeardMs += pausedMs;
        if (view.linksLostAtMs !== null) view.linksLostAtMs += pausedMs;
      }
      // Nor did it wait for them while booting (it would form a chain alone, though what the
      // others sent waits unread in its sockets), nor hear its clients (their heartbeats too).
      this.s.bootStartMs += pausedMs;
      this.s.monitor.shift(pausedMs);
    }
    if (pausedMs > this.s.options.suspectMs / 2) {
      this.s.out.push({ kind: "note", text: `this server was paused for ${Math.round(pausedMs)} ms` });
      // Others suspect us once silent past --suspect-ms, but never within a busy time we
      // announced (a large update on a loaded machine: leaving the chain then stalled it).
      // Our silence runs from our last heartbeat, sent up to a heartbeat before our last tick,
      // and the next may reach them a heartbeat late: a pause of 396 ms kept us silent 487 ms
      // with --suspect-ms 400, we went on in the chain the others had removed us from, and
      // served without what they had acknowledged meanwhile (sim seed 53004585).
      const silentMs = nowMs - this.s.lastHeartbeatMs + this.s.options.heartbeatMs;
      const othersMaySuspectUs = silentMs > this.s.options.suspectMs && nowMs > this.s.busyUntilMs;
      // Whatever our status, a configuration waiting in our sockets may since have been
      // replaced by one without us: booting when stopped, a stale issued one must not make
      // us a member (sim seed 613001559: booting through a 1.4 s pause, server 2 became a
      // member of a chain gone for 1 s, removed its dead servers, and a joiner of the newer
      // one-server chain, whose only server had crashed, followed 2 and lost its update).
      if (othersMaySuspectUs) this.s.resumedAtMs = nowMs;
      if (othersMaySuspectUs && this.s.status === "member" && !this.s.majorityMode && this.s.options.peers.length > 1) {
        // Long enough for the others to remove us and acknowledge updates without us (we
        // would then lead a chain on a stale history: sim seed 33001083). Find the chain
        // again as a booting server does, waiting for the servers of our last chain. Alone in
        // our chain too: a joiner holding our history forms one without us when we fall
        // silent (sim seed 920001244, --no-cache --faults-ms 30000: [2] resumed and
        // acknowledged a request waiting in its socket beside [1,4]'s same seq).
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
    // Due, or due before the next tick (ticks need not divide --heartbeat-ms: with ticks 47 ms
    // apart, waiting for a full heartbeat sent one every 141 ms).
    if (nowMs - this.s.lastHeartbeatMs + tickGapMs > this.s.options.heartbeatMs) broadcastHeartbeat(this.s);
    dropStaleProposal(this.s);
    if (this.s.status === "booting") tryBoot(this.s);
    else if (this.s.status === "joining") keepJoining(this.s);
    else keepServing(this.s);
    return this.finish();
  }

  /** A message from another server; `nowMs` (when known) keeps the clock current between ticks. */
  onPeerMessage(message: PeerMessage, nowMs?: number): Ready {
    if (nowMs !== undefined) this.s.advanceClock(nowMs);
    noteChainAtWork(this.s, message);
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
        if (acceptsFrom(this.s, message.from, message.epoch)) onForward(this.s, message);
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
      case "synced":
        noteMemberSynced(this.s, message.from, message.epoch, message.seq, message.seqEpoch);
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
          // A joiner we cannot hear would be removed again at once (its tail learns from our heartbeats).
          if (!this.s.config.chain.includes(message.joiner) && !this.s.suspected(message.joiner)) issueConfig(this.s, [...this.s.config.chain, message.joiner]);
        }
        break;
    }
    return this.finish();
  }

  /**
   * Replies already produced for requests a (re)connecting client still waits on. With
   * --fsync always they too wait until the chain has synced what they rest on (a server that
   * just became tail may hold updates its predecessors have not synced yet).
   */
  storedReplies(sessionId: number, waiting: number[]): Ready {
    const session = this.s.state.sessions.get(sessionId);
    if (!session) return emptyReady();
    for (const reqNo of waiting) {
      if (isReplyHeld(this.s, sessionId, reqNo)) continue; // it leaves when the chain has synced
      const reply = session.replies.get(reqNo);
      if (reply) replyWhenDurable(this.s, { session: sessionId, reqNo, reply });
      else if (reply === null) this.s.out.push({ kind: "reply", output: { session: sessionId, reqNo, reply: { type: "queued" } } });
    }
    return this.finish();
  }

  /** The host has synced every update it logged up to `seq` (--fsync always: see chain_sync.ts). */
  onDurable(seq: number): Ready {
    noteDurable(this.s, seq);
    return this.finish();
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
    // Asked every tick: a step (and its Ready) only when the answer changes.
    if (full === this.s.diskFull) return emptyReady();
    this.s.advanceClock(nowMs);
    this.s.diskFull = full;
    broadcastHeartbeat(this.s);
    return this.finish();
  }

  /** A live member of our chain, other than us, whose disk is full (null: none). */
  memberWithFullDisk(): number | null {
    for (const id of this.s.config.chain) {
      if (id !== this.s.selfId && this.s.peerViews.get(id)?.diskFull && !this.s.suspected(id)) return id;
    }
    return null;
  }

  /** Flushes batched forwards and acks, recalls cached grants, and hands the actions over. */
  private finish(): Ready {
    releaseDurableReplies(this.s);
    flushForwardsAndAcks(this.s);
    tellTailSynced(this.s);
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
        case "boot_peers":
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

  /** Why this server does not serve, in words for an operator ("" while it serves). */
  whyNotServing(): string {
    const s = this.s;
    if (s.status === "member") return "";
    if (s.status === "joining") return `joining the chain of epoch ${s.config.epoch} [${s.config.chain}] (catching up with its tail)`;
    return s.bootWaitNote !== "" ? s.bootWaitNote : "booting: listening for the other servers of --peers";
  }

  /** The chain clients must use: none while this server does not serve. */
  clientView(): ClientView {
    return { epoch: this.s.config.epoch, chain: this.s.status === "member" ? [...this.s.config.chain] : [] };
  }
}
