/**
 * Sequencing and the flow of updates down the chain: the head sequences client requests,
 * every member applies and forwards (batched), the tail replies and acknowledges up the
 * chain (coalesced), and a server resynchronises its downstream — the missing updates, or
 * a snapshot when the histories parted — checking that what it applies extends its own
 * history. Also the head's pull of a longer history a joiner offers ("ahead").
 */
import { assert, present } from "../assert";
import { ACK_INTERVAL_MS, FORWARD_BATCH_MAX, REQUESTS_DEFERRED_MAX } from "../constants";
import { PREV_EPOCH_UNKNOWN, type PeerMessage, type Request, type Update } from "../wire";
import { type ChainConfig, describeConfig, predecessorOf, tailOf } from "./chain";
import { EpochHistory } from "./epochs";
import { decodeSnapshot, encodeSnapshot } from "./snapshot";
import type { Output } from "./state";
import { type ReplicaShared } from "./replica_shared";
import { adoptConfig } from "./configuration";
import { awaitsJoinerAppended, noticeCaughtUp } from "./membership";
import { durableToSay, isReplyHeld, noteUpstreamDurable, replyWhenDurable } from "./chain_sync";
import { needsSync } from "./durable";
import { admitsForward, joinerAcknowledged, noteResent, resetJoinerFlow } from "./joiner_flow";


export function handleRequest(r: ReplicaShared, request: Request): void {
  if (!r.isHead) return;
  r.monitor.heard(request.session);
  const session = r.state.sessions.get(request.session);
  const stored: Output[] = [];
  if (request.op.type !== "open_session" && session && r.state.isDuplicate(session, request.reqNo, stored)) {
    // Applied already (checked before the quorum: a resent release must not look failed);
    // the tail delivers (or re-delivers on subscribe) its reply.
    if (r.isTail) for (const output of stored) if (!isReplyHeld(r, output.session, output.reqNo)) replyWhenDurable(r, output);
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

export function sequence(r: ReplicaShared, update: Update): void {
  update.seq = r.state.appliedSeq + 1;
  update.epoch = r.config.epoch;
  apply(r, update);
}

export function apply(r: ReplicaShared, update: Update): void {
  const outputs = r.state.apply(update);
  r.lastEpoch = update.epoch;
  r.retained.append(update);
  r.epochs.note(update.seq, update.epoch);
  r.out.push({ kind: "log", update });
  if (needsSync(update)) {
    r.lastSyncNeededSeq = update.seq;
    if (r.options.awaitSync) r.undurable.push(update.seq);
  }
  if (update.op.type === "checkpoint") {
    // Taken now, at exactly this seq, on every replica: a recovery line.
    r.out.push({ kind: "checkpoint", seq: update.seq, epoch: update.epoch, snapshot: encodeSnapshot(r.state) });
  }
  if (r.isTail) {
    for (const output of outputs) replyWhenDurable(r, output);
    r.ackedSeq = update.seq;
  }
  if (r.down?.synced && admitsForward(r, r.down, update)) {
    r.toForward.push(update);
    r.down.sentUpTo = update.seq;
  }
  // The tail acknowledges up the chain; a joiner tells the tail how far it got.
  if (r.isTail || r.status === "joining") r.ackDue = true;
}

export function onForward(r: ReplicaShared, message: Extract<PeerMessage, { type: "forward" }>): void {
  const { updates, prevEpoch } = message;
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
  noteUpstreamDurable(r, message.from, message.epoch, message.durable);
}

/** The sender's history, as far as these updates show it, holds our last update. */
export function onSameHistory(r: ReplicaShared, updates: Update[], prevEpoch: number): boolean {
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

export function installSnapshot(r: ReplicaShared, bytes: Uint8Array, seq: number, epoch: number): void {
  r.lastUpstreamMs = r.nowMs;
  const state = decodeSnapshot(bytes);
  if (state.appliedSeq !== seq) throw new Error(`snapshot says seq ${seq} but holds ${state.appliedSeq}`);
  // Servers check each other's segment when they connect: a snapshot of another shape is a bug.
  assert(state.segmentSize === r.state.segmentSize && state.pageSize === r.state.pageSize, "a snapshot of another segment size or page size");
  r.state = state;
  r.lastEpoch = epoch;
  r.retained.reset(seq, epoch);
  r.epochs = new EpochHistory(seq, epoch);
  // A new history: durable once the host has written (and synced) the snapshot.
  r.durableSeq = 0;
  r.lastSyncNeededSeq = seq;
  r.undurable = r.options.awaitSync ? [seq] : [];
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
export function onSnapshot(r: ReplicaShared, message: Extract<PeerMessage, { type: "snapshot" }>): void {
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
export function onAhead(r: ReplicaShared, message: Extract<PeerMessage, { type: "ahead" }>): void {
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
    // What we took was sequenced in an older configuration, and our chain acknowledges it now:
    // ranked at a boot by its old last epoch, it lost to an unacknowledged history of a newer
    // one. 2, head of e450 [2], took 1's #96-98@321 and acknowledged them; after a power loss
    // of 2 and an outage, 3's #96@387, sequenced as head of e387 [3,2] and never forwarded, led
    // (sim seed 1200000191, --disks --one-way). The barrier, in our epoch and synced before any
    // reply that rests on the pulled history (durable.ts), makes this history rank as ours.
    sequence(r, { seq: 0, epoch: 0, session: 0, reqNo: 0, doneBelow: 0, op: { type: "barrier" } });
  }
  const deferred = r.deferred;
  r.deferred = [];
  for (const request of deferred) handleRequest(r, request);
}

export function snapshotMessage(r: ReplicaShared): PeerMessage {
  return { type: "snapshot", from: r.selfId, epoch: r.config.epoch, seq: r.state.appliedSeq, lastEpoch: r.lastEpoch, bytes: encodeSnapshot(r.state) };
}

/** A server forwards only to the server that asked it (sync) in the current epoch. */
export function acceptsFrom(r: ReplicaShared, from: number, epoch: number): boolean {
  return epoch === r.config.epoch && from === r.upstream && r.status !== "booting";
}

export function onAck(r: ReplicaShared, from: number, seq: number, seqEpoch: number): void {
  if (r.joiner?.id === from) {
    // Progress only if its history is a prefix of ours: a joiner still on a history of its
    // own (a snapshot it refused, or one lost on the way) acks positions we never sent it,
    // and taken for caught up it became a member that was no prefix (sim seed 58000733).
    if (!r.epochs.extends(seq, seqEpoch)) return;
    r.joiner.ackedSeq = Math.max(r.joiner.ackedSeq, seq);
    if (r.down?.id === from && joinerAcknowledged(r.down, seq)) syncDownstream(r, seq, seqEpoch);
    noticeCaughtUp(r);
    return;
  }
  if (seq <= r.ackedSeq) return;
  r.ackedSeq = Math.min(seq, r.state.appliedSeq);
  r.retained.trim(r.ackedSeq);
  r.ackDue = true;
}

export function startDownstream(r: ReplicaShared, id: number): void {
  r.down = {
    id,
    synced: false,
    sentUpTo: 0,
    durableSent: 0,
    lastSyncRequestMs: r.nowMs,
    seenApplied: -1,
    seenAppliedSinceMs: r.nowMs,
    unacked: [],
    unackedBytes: 0,
    holding: false,
  };
  r.send(id, { type: "sync_request", from: r.selfId, epoch: r.config.epoch, chain: r.config.chain });
}

/** The downstream server has applied up to (seq, epoch): send what it lacks. */
export function syncDownstream(r: ReplicaShared, seq: number, epoch: number): void {
  const down = present(r.down, "resend needs a downstream");
  down.durableSent = 0; // it asked where it stands: what it lacks, and how far we are durable
  const mine = r.state.appliedSeq;
  const isPrefix = seq <= mine && r.retained.epochAt(seq) === epoch;
  const missing = isPrefix ? r.retained.after(seq) : null;
  resetJoinerFlow(down);
  if (missing) {
    noteResent(r, down, missing);
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

export function onSyncRequest(r: ReplicaShared, from: number, config: ChainConfig): void {
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
export function followTail(r: ReplicaShared, config: ChainConfig): void {
  r.out.push({ kind: "note", text: `the tail ${tailOf(config)} serves in ${describeConfig(config)}, not in our ${describeConfig(r.config)}: joining there` });
  r.config = config;
  r.configSinceMs = r.nowMs;
  r.recordConfig();
}

export function sendSyncReply(r: ReplicaShared, to: number): void {
  r.send(to, {
    type: "sync_reply",
    from: r.selfId,
    epoch: r.config.epoch,
    appliedSeq: r.state.appliedSeq,
    lastEpoch: r.lastEpoch,
  });
}

/** Flushes the step's batched forwards, and its ack up the chain when one is due. */
export function flushForwardsAndAcks(r: ReplicaShared): void {
  if (r.toForward.length > 0 && r.down) {
    for (let i = 0; i < r.toForward.length; i += FORWARD_BATCH_MAX) {
      r.send(r.down.id, forwardMessage(r, r.toForward.slice(i, i + FORWARD_BATCH_MAX)));
    }
  }
  r.toForward = [];
  const down = r.down;
  const durable = down?.synced ? durableToSay(r) : undefined;
  if (down && durable && durable.seq > down.durableSent) {
    // Our sync (or our predecessor's) moved the chain's durable point: the tail waits for it.
    r.send(down.id, forwardMessage(r, []));
  }
  // Acks are not on any client's path (the tail replies itself): coalesce them, so
  // a stream of updates does not wake every upstream server once per update.
  if (r.ackDue && r.nowMs - r.lastAckMs >= ACK_INTERVAL_MS) {
    r.ackDue = false;
    r.lastAckMs = r.nowMs;
    const ackSeq = r.status === "joining" ? r.state.appliedSeq : r.ackedSeq;
    if (r.upstream !== null && (r.status === "joining" || r.status === "member")) {
      const seqEpoch = r.epochs.epochAt(ackSeq) ?? 0;
      r.send(r.upstream, { type: "ack", from: r.selfId, epoch: r.config.epoch, seq: ackSeq, seqEpoch });
    }
    if (r.status === "member") r.retained.trim(r.ackedSeq);
  }
}

export function forwardMessage(r: ReplicaShared, updates: Update[]): PeerMessage {
  const prevEpoch = updates.length === 0 ? PREV_EPOCH_UNKNOWN : (r.epochs.epochAt(updates[0]!.seq - 1) ?? PREV_EPOCH_UNKNOWN);
  const durable = durableToSay(r);
  if (!durable) return { type: "forward", from: r.selfId, epoch: r.config.epoch, prevEpoch, updates };
  if (r.down) r.down.durableSent = Math.max(r.down.durableSent, durable.seq);
  return { type: "forward", from: r.selfId, epoch: r.config.epoch, prevEpoch, updates, durable };
}
