/**
 * Membership: who is alive and who serves. Heartbeats (sent and heard) and suspicion;
 * booting (find a serving chain, or form one from the most advanced history once every
 * server that may hold acknowledged updates is heard); joining behind the tail until
 * caught up; and, while serving, removing failed servers and leaving a stale chain.
 */
import { present } from "../assert";
import { type PeerMessage } from "../wire";
import { NO_CONFIG, describeConfig, tailOf } from "./chain";
import { type ReplicaShared } from "./replica_shared";
import { adoptConfig, issueConfig } from "./configuration";
import { noteMinority } from "./paxos";
import { endPull, followTail, sequence, startDownstream } from "./flow";
import { durableToSay, noteUpstreamDurable } from "./chain_sync";

export function compareHistory(a: { lastEpoch: number; appliedSeq: number }, b: { lastEpoch: number; appliedSeq: number }): number {
  return a.lastEpoch - b.lastEpoch || a.appliedSeq - b.appliedSeq;
}

export function onJoin(r: ReplicaShared, from: number, appliedSeq: number, lastEpoch: number): void {
  if (!r.isTail || r.config.chain.includes(from)) return;
  // One joiner at a time; another one retries and finds the new tail.
  if (r.joiner && r.joiner.id !== from && !r.suspected(r.joiner.id)) return;
  if (r.joiner?.id === from && r.down?.id === from && !r.down.synced) return;
  // Its position counts as progress only if its history is a prefix of ours. A joiner
  // that diverged, or that is ahead of us with updates never acknowledged, would else be
  // declared caught up (and made tail) before the snapshot replacing its state reached it.
  const prefix = appliedSeq <= r.state.appliedSeq && r.retained.epochAt(appliedSeq) === lastEpoch;
  r.joiner = { id: from, ackedSeq: prefix ? appliedSeq : -1, lastNoticeMs: -Infinity, caughtUpSinceMs: null };
  startDownstream(r, from);
}

/**
 * As tail: the joiner has everything we have and the head is appending it. Until the new
 * configuration makes it the tail we apply nothing more: applied here, an update would be
 * acknowledged by us while the new tail lacks it, and if we and the head then crash before
 * it reaches the new tail, the survivor never gets it (sim seed 93000179, two crashes of
 * three). Our upstream resends it: it resynchronises us in the new configuration (or when
 * our heartbeats show no progress). We resume after suspectMs if the head does not append it.
 */
export function awaitsJoinerAppended(r: ReplicaShared): boolean {
  const since = r.joiner?.caughtUpSinceMs ?? null;
  if (since === null || !r.isTail) return false;
  if (r.nowMs - since <= r.options.suspectMs) return true;
  present(r.joiner, "a joiner caught up").caughtUpSinceMs = null;
  return false;
}

export function noticeCaughtUp(r: ReplicaShared): void {
  const joiner = r.joiner;
  if (!joiner || !r.isTail || joiner.ackedSeq < r.state.appliedSeq) return;
  // Not before our sync with it is done: until it answered our sync_request in this
  // configuration we are not its upstream, and appended behind us it stays joining. An
  // empty tail took an empty joiner's `join` for caught up at once, paused (awaitsJoinerAppended),
  // and the head appended and removed the joiner for 40 s (sim seed 386002363).
  if (r.down?.id !== joiner.id || !r.down.synced) return;
  // Not while the head says it cannot hear the joiner (a link broken one way): appended, it would
  // be removed at once, over and over, ten configurations a second (chaos seed 23002), and we
  // would stop applying while we waited for each append (awaitsJoinerAppended).
  const head = r.config.chain[0]!;
  if (head !== r.selfId && r.peerViews.get(head)?.unheard.includes(joiner.id)) return;
  if (r.nowMs - joiner.lastNoticeMs < r.options.heartbeatMs) return;
  joiner.lastNoticeMs = r.nowMs;
  joiner.caughtUpSinceMs ??= r.nowMs;
  r.send(present(r.config.chain[0], "a member tail sees a chain with a head"), { type: "caught_up", from: r.selfId, epoch: r.config.epoch, joiner: joiner.id });
  if (r.config.chain[0] === r.selfId) {
    // A chain of one: this server is head and tail.
    issueConfig(r, [...r.config.chain, joiner.id]);
  }
}

/**
 * A joiner that sees a member of its chain at work in its configuration (syncing it, sending it
 * a snapshot or forwards) knows that chain serves, whatever that member's last heartbeat said:
 * heartbeats queue behind such traffic, and a joiner that counted only heartbeats gave up a
 * serving chain while one was late, and formed a chain of its own beside it (sim seeds
 * 163000724, 163002720).
 */
export function noteChainAtWork(r: ReplicaShared, message: PeerMessage): void {
  if (r.status !== "joining") return;
  if (message.type !== "sync_request" && message.type !== "snapshot" && message.type !== "forward") return;
  if (message.epoch === r.config.epoch && r.config.chain.includes(message.from)) r.joinedChainSinceMs = r.nowMs;
}

export function keepJoining(r: ReplicaShared): void {
  const members = r.config.chain.filter((id) => id !== r.selfId);
  const serves = (id: number) => !r.suspected(id) && r.peerViews.get(id)?.status === "member";
  if (members.some(serves)) r.joinedChainSinceMs = r.nowMs;
  else if (r.nowMs - r.joinedChainSinceMs > r.options.suspectMs / 2) {
    // The chain we wanted to join is gone (its servers died or restarted): start over and
    // find (or form) one. Our history may be the most advanced left: tryBoot weighs it.
    // Not at once: the members' heartbeats saying they serve in a configuration we just
    // learnt may still be on their way (the issuer's last one said "booting"); a joiner that
    // booted then formed a chain of its own over the serving one (sim seed 115006055).
    becomeBooting(r);
    return;
  }
  const tail = tailOf(r.config);
  const quiet = r.nowMs - r.lastUpstreamMs > r.options.suspectMs;
  if (tail !== null && tail !== r.selfId && quiet && r.nowMs - r.lastJoinMs > r.options.suspectMs / 2) {
    r.lastJoinMs = r.nowMs;
    r.send(tail, { type: "join", from: r.selfId, appliedSeq: r.state.appliedSeq, lastEpoch: r.lastEpoch });
  }
}

export function tryBoot(r: ReplicaShared): void {
  r.bootWaitNote = ""; // said again below while it still holds
  const others = r.options.peers.filter((id) => id !== r.selfId);
  const alive = others.filter((id) => r.peerViews.has(id) && !r.suspected(id) && !heardBeforeOurConfig(r, id));
  const serving = alive
    .map((id) => present(r.peerViews.get(id), "no view of a live peer"))
    .filter((view) => view.status === "member" && view.epoch > 0)
    .sort((a, b) => b.epoch - a.epoch)[0];
  if (serving) {
    const config = { epoch: serving.epoch, chain: serving.chain };
    if (serving.epoch > r.config.epoch) adoptConfig(r, config, null);
    else {
      // Older than ours: ours was issued and never served (its servers crashed, default
      // mode), while a server that never heard of it went on alone. Waiting in ours would
      // wait for ever — its other servers boot into it too and join each other (sim seed
      // 272007723): join the chain that serves, as a joiner whose tail answers from an
      // older configuration does. Equal: a configuration we know already (we were removed).
      if (serving.epoch < r.config.epoch && !r.majorityMode) followTail(r, config);
      becomeJoining(r);
    }
    return;
  }
  const heardEveryone = alive.length === others.length;
  if (!heardEveryone && r.nowMs - r.bootStartMs < r.options.suspectMs) return;
  // --quorum majority: a chain is formed only by a side that hears a majority of --peers.
  if (r.majorityMode && alive.length + 1 < r.majority) return;
  // The servers of the last chain we (or the other booting servers) knew may hold updates
  // we lack, acknowledged before the outage: forming a chain without them could wipe
  // those updates when they come back. Wait for them all. What we learnt stays learnt
  // while we boot: the peer that told us may crash again (sim seed 9300508).
  const required = r.bootRequired;
  for (const member of r.config.chain) required.add(member);
  for (const id of alive) {
    const view = present(r.peerViews.get(id), "no view of a live peer");
    if (view.status !== "member") for (const member of view.chain) required.add(member);
  }
  required.delete(r.selfId);
  const noConfigKnown = r.config.epoch === 0 && alive.every((id) => present(r.peerViews.get(id), "no view of a live peer").epoch === 0);
  if (noConfigKnown && !r.majorityMode && !heardEveryone && !r.options.forceBoot) {
    // Nobody we hear knows any configuration: either the cluster is new, or the servers we
    // do not hear formed chains while we were down (and hold what they acknowledged since:
    // sim seeds 9300244, 9301015). Only all of --peers together can tell.
    const missing = others.filter((id) => !alive.includes(id));
    noteBootWait(r, missing, "of --peers: no configuration is known here, and a new cluster starts with all of them");
    return;
  }
  // And the servers we heard at a boot we did not see through: one may have formed a chain
  // from ours that we never learnt of (bootPeers, ReplicaShared).
  const missingOfChains = [...required].filter((id) => !alive.includes(id)).sort((a, b) => a - b);
  const missingHeard = [...r.bootPeers].filter((id) => id !== r.selfId && !required.has(id) && !alive.includes(id)).sort((a, b) => a - b);
  const missing = [...missingOfChains, ...missingHeard].sort((a, b) => a - b);
  if (missing.length > 0 && !r.options.forceBoot) {
    noteBootWait(r, missing, bootWaitReason(missingOfChains, missingHeard));
    return;
  }
  if (missing.length > 0 && r.bootWaitingFor !== "forced") {
    r.bootWaitingFor = "forced";
    r.out.push({
      kind: "note",
      text: `--force-boot: forming a chain without server(s) ${missing.join(",")}; updates they hold after seq ${r.state.appliedSeq} (epoch ${r.lastEpoch}) are lost`,
    });
  }
  // Nobody serves: the most advanced history among the servers not serving leads. A joining
  // server counts too: it may be the last one holding acknowledged updates (it goes
  // booting once no member of its chain serves, and then forms the chain itself).
  const candidates = [r.selfId, ...alive.filter((id) => present(r.peerViews.get(id), "no view of a live peer").status !== "member")];
  const viewOf = (id: number): BootView => {
    if (id !== r.selfId) return present(r.peerViews.get(id), "no view of a live peer");
    return { lastEpoch: r.lastEpoch, appliedSeq: r.state.appliedSeq, epoch: r.config.epoch, chain: r.config.chain };
  };
  const isAlive = (peer: number) => peer === r.selfId || alive.includes(peer);
  const ranks = new Map(candidates.map((id) => [id, bootRank(id, viewOf, isAlive, r.options.awaitSync === true)]));
  const rank = (id: number) => present(ranks.get(id), "a candidate's rank");
  const best = candidates.reduce((a, b) => {
    const order = compareRank(rank(a), rank(b));
    return order > 0 || (order === 0 && a < b) ? a : b; // ties: the lowest id leads
  });
  if (best !== r.selfId || r.proposal) return;
  // Every candidate must have us on its disk first: one killed before it adopts what we issue
  // would know only its old chain, and if it was that chain's only server it could form it
  // again alone from its shorter history, beside the one we serve (docs/protocol.md).
  const unrecorded = r.majorityMode || r.options.forceBoot ? [] : candidates.filter((id) => id !== r.selfId && !viewOf(id).chain.includes(r.selfId) && !present(r.peerViews.get(id), "no view of a candidate").bootPeers.includes(r.selfId));
  if (unrecorded.length > 0) {
    noteBootWait(r, unrecorded, "to record this server on disk before it leads");
    return;
  }
  const mine = rank(r.selfId);
  const same = candidates.filter((id) => compareRank(rank(id), mine) === 0).sort((a, b) => a - b);
  r.out.push({ kind: "note", text: `forming a chain of ${same.join(",")} at seq ${r.state.appliedSeq}` });
  issueConfig(r, same);
}

/**
 * A member of our configuration whose last word predates it (heard before we adopted it, from
 * an older epoch): since, it has served in ours or a later one, or crashed first; its view
 * cannot say which, so it counts as unheard until it speaks again. Taken as it stood, a joiner
 * cut off one way from both members of its new chain [1,2,3] saw them "booting, at seq 0" from
 * before they formed it, outranked them as a member, and formed [3] alone beside the [1,2]
 * they had gone on to serve and acknowledge in (sim seed 1152004061, --one-way).
 */
function heardBeforeOurConfig(r: ReplicaShared, id: number): boolean {
  const view = r.peerViews.get(id);
  // At the same instant too: a peer's heartbeat and then its configuration, read together.
  return view !== undefined && r.config.chain.includes(id) && view.lastHeardMs <= r.configSinceMs && view.epoch < r.config.epoch;
}

/** What a booting server knows of a candidate: its history's position and its configuration. */
interface BootView {
  lastEpoch: number;
  appliedSeq: number;
  epoch: number;
  chain: number[];
}

/** A candidate's place in the boot order: its history's position, and whether it was ranked down. */
interface BootRank {
  lastEpoch: number;
  appliedSeq: number;
  /** 1 as it is; 0 ranked just below the tail of its last configuration (see bootRank). */
  standing: number;
  /** 1 if its last configuration lists it (a member), 0 for a joiner: see compareRank. */
  member: number;
}

/**
 * By history, then standing; at equal history a member of its configuration leads a joiner
 * of it. The leader issues the new configuration and persists it first: a joiner that led
 * issued [2,3] for 3, the sole member of e5379 [3], which was killed before adopting it; 2
 * removed 3 and acknowledged alone; 3, restarted, knew only [3] and formed it alone from the
 * same base: two histories, both acknowledged (chaos seed 21061, session 21). Led by the
 * member, the configuration is on its disk before anyone serves in it, and a joiner that
 * never adopts it knows a chain that lists the member, so it waits for it at its next boot.
 */
function compareRank(a: BootRank, b: BootRank): number {
  return compareHistory(a, b) || a.standing - b.standing || a.member - b.member;
}

/**
 * A candidate ranks by its history's position, except when the updates of its last
 * configuration can never have been acknowledged: that configuration's tail is alive, and its
 * own last configuration is older, holds updates sequenced in it and does not list the
 * candidate — it never adopted the candidate's (a server's configurations only grow), and
 * only a configuration's tail acknowledges. Such a candidate ranks
 * just below that tail, whatever the epochs' numbers say: two servers that each outlived the
 * other issue configurations from the same base, numbered by issuer. 3 issued e387 [3,2]
 * and crashed before 2 adopted it; 2 issued e386 [2] and acknowledged updates in it; after a
 * total outage 3's unacknowledged suffix in e387 outranked them (sim seed 403004127).
 * A tail that restarted empty (epoch 0, no disks) proves nothing: it may have acknowledged
 * and lost them, and the candidate holds the only copy (sim seed 421000723). With --fsync
 * always two more rank just below the tail: a member whose configuration's tail went on past
 * it holding none of its epoch's updates (tailHoldsNoneOfItsEpoch), and a joiner ahead of
 * that tail (joinedBeyondTail).
 */
function bootRank(id: number, viewOf: (id: number) => BootView, isAlive: (id: number) => boolean, acksSynced: boolean): BootRank {
  const view = viewOf(id);
  const member = view.chain.includes(id) ? 1 : 0;
  const own = { lastEpoch: view.lastEpoch, appliedSeq: view.appliedSeq, standing: 1, member };
  const tail = tailOf(view);
  if (tail === null || tail === id || view.lastEpoch !== view.epoch || !isAlive(tail)) return own;
  const tailView = viewOf(tail);
  const neverAdopted = view.chain.includes(id)
    ? (tailView.epoch > 0 && tailView.epoch < view.epoch && tailView.lastEpoch === tailView.epoch && !tailView.chain.includes(id)) ||
      (acksSynced && tailHoldsNoneOfItsEpoch(view, tail, tailView))
    : acksSynced && joinedBeyondTail(view, tailView);
  if (!neverAdopted || compareHistory(tailView, view) >= 0) return own;
  return { lastEpoch: tailView.lastEpoch, appliedSeq: tailView.appliedSeq, standing: 0, member };
}

/**
 * A joiner of a configuration whose tail is still in it and holds less of its updates: the
 * joiner's surplus was forwarded to it and lost by that tail (a power loss before its sync),
 * so, with --fsync always (the tail acknowledges only what the chain synced), never
 * acknowledged. Ranked first, the joiner formed a chain of its own at the tail's side; a cut
 * kept the news from the tail, the joiner died, and the tail formed its own chain from the
 * same base: two histories, both acknowledged (sim seed 897001196). With --fsync off or batch
 * the tail acknowledges before its sync, and a power loss may leave the joiner the only copy
 * of what it acknowledged (sim seed 905002995): the joiner keeps its rank. A tail that
 * restarted empty (epoch 0) proves nothing, as above.
 */
function joinedBeyondTail(view: BootView, tailView: BootView): boolean {
  return tailView.epoch > 0 && tailView.epoch === view.epoch && tailView.lastEpoch === view.lastEpoch;
}

/**
 * A member whose updates of its last configuration's epoch the tail of that configuration,
 * gone on past it, holds none of: only that tail acknowledged them, and with --fsync always
 * what it acknowledged is on its disk, so none was. 3, head of e195 [3,4], sequenced #20-21
 * and crashed before forwarding them; 4 went on, took 1's #20-21@65 (`ahead`, `pull`) and
 * acknowledged them in e324. After an outage 3's 21@195 outranked 4's 21@65 by its epoch,
 * and 3 formed [3] over what e324 acknowledged (sim seed 1156002536, --disks). Not a tail
 * still in that configuration: a joiner that never synced there, restarted, ranked every
 * member below its empty history (sim seed 1163000557). Nor a tail that only joins a newer
 * configuration, which it holds none of yet: 5, tail of e321, restarted from a power loss at
 * 59@257 and joined e385 [1,2], which 1 had formed from its 67@321 and acknowledged in; ranked
 * below 5, 1 and 2 lost to 4's 66@257, and 4 formed [4] beside them (sim seed 1225003732).
 */
function tailHoldsNoneOfItsEpoch(view: BootView, tail: number, tailView: BootView): boolean {
  return tailView.chain.includes(tail) && tailView.epoch > view.epoch && tailView.lastEpoch < view.lastEpoch;
}

/** What a booting server waits for, as `noteBootWait` says it after the ids. */
function bootWaitReason(ofChains: number[], heard: number[]): string {
  const hold = "they may hold acknowledged updates";
  if (heard.length === 0) return `of the last chain: ${hold}`;
  const heardWhere = "heard at a boot this server did not see through";
  if (ofChains.length === 0) return `(${heardWhere}): one may have formed a chain from it`;
  return `(${ofChains.join(",")} of the last chain, ${heard.join(",")} ${heardWhere}): ${hold}`;
}

/** Says once (until it changes) whom a booting server waits for; status tells clients too (whyNotServing). */
export function noteBootWait(r: ReplicaShared, missing: number[], why: string): void {
  const waitingFor = missing.join(",");
  r.bootWaitNote = `waiting for server(s) ${waitingFor} ${why}`;
  if (waitingFor === r.bootWaitingFor) return;
  r.bootWaitingFor = waitingFor;
  r.out.push({ kind: "note", text: r.bootWaitNote });
}

export function becomeJoining(r: ReplicaShared): void {
  r.status = "joining";
  r.joinedChainSinceMs = r.nowMs;
  r.lastJoinMs = -Infinity;
  r.lastUpstreamMs = -Infinity;
}

export function becomeBooting(r: ReplicaShared): void {
  r.status = "booting";
  r.bootStartMs = r.nowMs;
  r.bootRequired.clear();
  r.down = null;
  r.upstream = null;
  r.joiner = null;
}

export function keepServing(r: ReplicaShared): void {
  const witness = staleWitness(r);
  if (witness !== null) {
    // A server of our chain has long served in a configuration without us: ours is stale
    // (we were removed and missed it). Forget it and find the chain as a booting server does.
    const view = present(r.peerViews.get(witness), "no view of the witness");
    r.out.push({ kind: "note", text: `server ${witness} serves in ${describeConfig(view)} without us: leaving our stale ${describeConfig(r.config)}` });
    becomeBooting(r);
    r.config = NO_CONFIG;
    r.recordConfig();
    return;
  }
  if (r.isHead && r.hasQuorum && !r.pulling) expireSilentSessions(r);
  if (r.pulling && r.nowMs - r.pulling.sinceMs > r.options.suspectMs) {
    r.out.push({ kind: "note", text: `server ${r.pulling.from} did not send its state: sequencing again` });
    endPull(r, null);
  }
  noteMinority(r);
  if (isIssuer(r) && !r.proposal) {
    const failed = r.config.chain.filter((id) => id !== r.selfId && hasLeftChain(r, id));
    if (failed.length > 0) {
      r.out.push({ kind: "note", text: `removing server(s) ${failed.join(",")} from the chain` });
      issueConfig(r, r.config.chain.filter((id) => !failed.includes(id)));
    }
  }
  const down = r.down;
  if (down && !down.synced && r.nowMs - down.lastSyncRequestMs > 2 * r.options.heartbeatMs) {
    down.lastSyncRequestMs = r.nowMs;
    r.send(down.id, { type: "sync_request", from: r.selfId, epoch: r.config.epoch, chain: r.config.chain });
  }
  if (down?.synced && down.seenApplied < down.sentUpTo && r.nowMs - down.seenAppliedSinceMs > r.options.suspectMs / 2) {
    // Its heartbeats show no progress towards what we sent: the link lost updates.
    startDownstream(r, down.id);
  }
  if (r.joiner && r.suspected(r.joiner.id)) {
    if (r.down?.id === r.joiner.id) r.down = null;
    r.joiner = null;
  }
  noticeCaughtUp(r);
}

export function expireSilentSessions(r: ReplicaShared): void {
  for (const session of r.monitor.expired(r.state.sessions)) {
    sequence(r, { seq: 0, epoch: 0, session: 0, reqNo: 0, doneBelow: 0, op: { type: "expire_session", session } });
  }
}

/** Notes one more sighting of a configuration from outside our chain; true once they have lasted 2 × suspectMs. */
export function foreignHasLasted(r: ReplicaShared): boolean {
  const gapMs = 2 * r.options.heartbeatMs;
  if (!r.foreign || r.nowMs - r.foreign.lastMs > gapMs) r.foreign = { sinceMs: r.nowMs, lastMs: r.nowMs };
  r.foreign.lastMs = r.nowMs;
  return r.nowMs - r.foreign.sinceMs > 2 * r.options.suspectMs;
}

/** Our history ends where `id` last said its own does (same seq, same epoch). */
export function hasHistoryOf(r: ReplicaShared, id: number): boolean {
  if (id === r.selfId) return true;
  const view = r.peerViews.get(id);
  return view !== undefined && view.appliedSeq === r.state.appliedSeq && view.lastEpoch === r.lastEpoch;
}

/** A live server of our chain that has served for longer than suspectMs in another configuration that leaves us out. */
export function staleWitness(r: ReplicaShared): number | null {
  for (const id of r.config.chain) {
    if (id === r.selfId || r.suspected(id)) continue;
    const view = r.peerViews.get(id);
    if (!view || view.servesWithoutUsSinceMs === null || view.epoch === r.config.epoch) continue;
    if (r.nowMs - Math.max(view.servesWithoutUsSinceMs, r.configSinceMs) > r.options.suspectMs) return id;
  }
  return null;
}

/** The first server of the chain that has not left it issues configurations. */
export function isIssuer(r: ReplicaShared): boolean {
  if (r.status !== "member") return false;
  for (const id of r.config.chain) {
    if (id === r.selfId) return true;
    // A head that restarted before anyone suspected it is alive but serves no more:
    // waiting for it to be suspected would leave the chain without a head for good.
    if (!hasLeftChain(r, id)) return false;
  }
  return false;
}

/** Suspected, or it says itself that it does not serve in our configuration (it restarted). */
export function hasLeftChain(r: ReplicaShared, id: number): boolean {
  if (r.suspected(id)) return true;
  const view = r.peerViews.get(id);
  // What it said before we adopted this configuration is no news: a joiner this very
  // configuration added last reported "booting" or "joining".
  if (!view || view.lastHeardMs < r.configSinceMs) return false;
  // Booting before ever serving is a server still starting up with the others, not a restart.
  return (view.status === "booting" && view.wasMember) || (view.status === "joining" && view.epoch >= r.config.epoch);
}

export function onHeartbeat(r: ReplicaShared, message: Extract<PeerMessage, { type: "heartbeat" }>): void {
  if (message.durable && message.from === r.upstream && message.epoch === r.config.epoch) noteUpstreamDurable(r, message.from, message.epoch, message.durable);
  const previous = r.peerViews.get(message.from);
  const wasMember = (previous?.wasMember ?? false) || message.status === "member";
  const withoutUs = message.status === "member" && !message.chain.includes(r.selfId);
  r.peerViews.set(message.from, {
    wasMember,
    busyUntilMs: message.busyMs > 0 ? r.nowMs + message.busyMs : (previous?.busyUntilMs ?? 0),
    servesWithoutUsSinceMs: withoutUs ? (previous?.servesWithoutUsSinceMs ?? r.nowMs) : null,
    diskFull: message.diskFull ?? false,
    bootPeers: message.bootPeers ?? [],
    unheard: message.unheard ?? [],
    lastHeardMs: r.nowMs,
    linksLostAtMs: null,
    epoch: message.epoch,
    chain: message.chain,
    status: message.status,
    appliedSeq: message.appliedSeq,
    lastEpoch: message.lastEpoch,
  });
  r.highestEpochSeen = Math.max(r.highestEpochSeen, message.epoch);
  if (!r.majorityMode && r.status !== "member" && message.status !== "member" && !r.bootPeers.has(message.from)) {
    // A candidate of a boot we take part in: it may lead it. On our disk first, then said at once.
    r.recordBootPeer(message.from);
    broadcastHeartbeat(r);
  }
  const down = r.down;
  if (down?.id === message.from && message.appliedSeq !== down.seenApplied) {
    down.seenApplied = message.appliedSeq;
    down.seenAppliedSinceMs = r.nowMs;
  }
  // With --quorum majority every configuration a server holds was agreed by a majority, so
  // a member learns a newer one from anybody: a stale member whose proposals are refused as
  // built on an old configuration learns the current one from the refusal's heartbeat, even
  // when nobody serves in it any more (its servers restarted), and joins or forms a chain.
  const agreed = message.status === "member" || (r.majorityMode && r.status === "member");
  if (message.epoch > r.config.epoch && agreed) {
    adoptConfig(r, { epoch: message.epoch, chain: message.chain }, null);
  }
}

export function broadcastHeartbeat(r: ReplicaShared, busyMs = 0): void {
  r.lastHeartbeatMs = r.nowMs;
  for (const id of r.options.peers) {
    if (id !== r.selfId) sendHeartbeat(r, id, busyMs);
  }
}

export function sendHeartbeat(r: ReplicaShared, to: number, busyMs: number): void {
  // Our successor hears how far the chain up to us is durable (a lost notice is repaired here).
  const durable = r.down?.id === to && r.down.synced ? durableToSay(r) : undefined;
  const unheard = r.options.peers.filter((id) => id !== r.selfId && r.suspected(id));
  r.send(to, {
    type: "heartbeat",
    from: r.selfId,
    epoch: r.config.epoch,
    chain: r.config.chain,
    status: r.status,
    appliedSeq: r.state.appliedSeq,
    lastEpoch: r.lastEpoch,
    busyMs,
    diskFull: r.diskFull,
    ...(durable ? { durable } : {}),
    ...(r.bootPeers.size > 0 ? { bootPeers: r.bootPeerList() } : {}),
    ...(unheard.length > 0 ? { unheard } : {}),
  });
}
