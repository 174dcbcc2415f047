/**
 * --quorum majority: configurations agreed by Paxos (one ballot per proposal), every server
 * of --peers an acceptor. A proposer gathers promises from a majority (phase 1), proposes
 * the pending value that may have been chosen or else its own (phase 2), and commits it
 * (configuration.ts) once a majority accepted. The acceptor's vote is written before
 * anything sent after it changed (the "vote" action). Also: the head's "no majority" note.
 */
import { PROPOSAL_HEARTBEATS } from "../constants";
import { type AcceptedProposal } from "../wire";
import { type Vote, describeConfig, nextEpoch } from "./chain";
import { type ReplicaShared } from "./replica_shared";
import { commitConfig } from "./configuration";
import { sendHeartbeat } from "./membership";


/**
 * Proposes `chain` (Paxos, with every server of --peers an acceptor): phase 1 asks a
 * majority to promise our ballot; phase 2 proposes a value they accept; it takes effect
 * (commitConfig) once a majority accepted it. One proposal at a time: the callers retry on
 * a later tick once a proposal that gathered no majority is dropped.
 */
export function propose(r: ReplicaShared, chain: number[]): void {
  if (r.proposal) return;
  // A member builds on its configuration; a booting server forms a chain on the newest
  // configuration it has heard of (nobody serves in it, or it would join).
  const baseEpoch = r.status === "member" ? r.config.epoch : Math.max(r.config.epoch, r.highestEpochSeen);
  const ballot = nextEpoch(Math.max(r.highestEpochSeen, r.config.epoch, r.vote.promised), r.selfId);
  r.highestEpochSeen = Math.max(r.highestEpochSeen, ballot);
  setVote(r, { promised: ballot, accepted: r.vote.accepted });
  r.proposal = {
    ballot,
    own: { chain, baseEpoch, formed: r.status !== "member" },
    promises: new Map([[r.selfId, { configEpoch: r.config.epoch, accepted: r.vote.accepted }]]),
    value: null,
    accepted: new Set(),
    sinceMs: r.nowMs,
  };
  r.out.push({ kind: "note", text: `proposing ${chain.join("→")} on epoch ${baseEpoch}, ballot ${ballot} (a majority is ${r.majority} of ${r.options.peers.length})` });
  for (const id of r.options.peers) {
    if (id !== r.selfId) r.send(id, { type: "config_prepare", from: r.selfId, ballot, baseEpoch });
  }
  maybeStartPhase2(r);
}

/** The acceptor's vote changed: the server writes it before what follows is sent. */
export function setVote(r: ReplicaShared, vote: Vote): void {
  r.vote = vote;
  r.out.push({ kind: "vote", vote });
}

/**
 * Phase 1. A promise is given to a ballot above every one promised, built on our
 * configuration or a newer one; it says what we accepted last, so that the proposer
 * completes a proposal that may have been chosen instead of choosing another.
 */
export function onPrepare(r: ReplicaShared, from: number, ballot: number, baseEpoch: number): void {
  r.highestEpochSeen = Math.max(r.highestEpochSeen, ballot);
  if (ballot <= r.vote.promised || baseEpoch < r.config.epoch) {
    refuse(r, from, ballot, `built on epoch ${baseEpoch}`);
    return;
  }
  setVote(r, { promised: ballot, accepted: r.vote.accepted });
  // Our own proposal, if any, cannot pass our own acceptor any more.
  if (r.proposal && r.proposal.ballot < ballot) r.proposal = null;
  r.send(from, { type: "config_promise", from: r.selfId, ballot, configEpoch: r.config.epoch, accepted: r.vote.accepted });
}

export function onPromise(r: ReplicaShared, from: number, ballot: number, configEpoch: number, accepted: AcceptedProposal | null): void {
  const proposal = r.proposal;
  if (!proposal || proposal.ballot !== ballot || proposal.value) return;
  proposal.promises.set(from, { configEpoch, accepted });
  maybeStartPhase2(r);
}

/**
 * With a majority of promises: the value. A proposal accepted by one of them that builds
 * on the newest configuration any of them (or we) hold, and is newer than it, may have
 * been chosen (Paxos: any majority holds one of its acceptors): the one of the highest
 * ballot is proposed again, as it is (same epoch, same chain). Otherwise ours.
 */
export function maybeStartPhase2(r: ReplicaShared): void {
  const proposal = r.proposal;
  if (!proposal || proposal.value || proposal.promises.size < r.majority) return;
  let known = r.config.epoch;
  for (const promise of proposal.promises.values()) known = Math.max(known, promise.configEpoch);
  let pending: AcceptedProposal | null = null;
  for (const { accepted } of proposal.promises.values()) {
    if (!accepted || accepted.epoch <= known || accepted.baseEpoch < known) continue;
    if (!pending || accepted.ballot > pending.ballot) pending = accepted;
  }
  if (pending) {
    proposal.value = { epoch: pending.epoch, chain: pending.chain, baseEpoch: pending.baseEpoch, formed: pending.formed };
    r.out.push({ kind: "note", text: `completing ${describeConfig(pending)} (accepted under ballot ${pending.ballot}) instead of ours` });
  } else {
    proposal.value = { epoch: proposal.ballot, ...proposal.own };
  }
  const message = { type: "config_propose" as const, from: r.selfId, ballot: proposal.ballot, ...proposal.value };
  for (const id of r.options.peers) {
    if (id !== r.selfId) r.send(id, message);
  }
  onPropose(r, r.selfId, { ballot: proposal.ballot, ...proposal.value });
}

/** Phase 2. Accepted under a ballot at least our promise, built on our configuration or a newer one. */
export function onPropose(r: ReplicaShared, from: number, proposed: AcceptedProposal): void {
  r.highestEpochSeen = Math.max(r.highestEpochSeen, proposed.ballot, proposed.epoch);
  // A chain a booting server has just formed is accepted only where no chain serves: it does
  // not descend from a serving chain (its base is just the newest epoch that server had
  // heard of), its servers become members at once, and it would put that chain's history,
  // with its acknowledged updates, behind servers that lack them. So a member refuses it, and
  // so does a server that hears one serving (the booting server may not hear it): the booting
  // server is to find that chain and join. A formed chain being completed makes nobody a
  // member (adoptConfig): it is accepted, or it would stay pending for ever.
  const fresh = proposed.epoch === proposed.ballot;
  const refused =
    proposed.ballot < r.vote.promised ||
    proposed.baseEpoch < r.config.epoch ||
    proposed.epoch <= r.config.epoch ||
    (proposed.formed && fresh && (r.status === "member" || hearsServing(r)));
  if (refused) {
    refuse(r, from, proposed.ballot, `${describeConfig(proposed)} built on epoch ${proposed.baseEpoch}`);
    return;
  }
  setVote(r, { promised: proposed.ballot, accepted: { ...proposed, chain: [...proposed.chain] } });
  if (r.proposal && r.proposal.ballot < proposed.ballot) r.proposal = null;
  if (from === r.selfId) onAccept(r, r.selfId, proposed.ballot);
  else r.send(from, { type: "config_accept", from: r.selfId, ballot: proposed.ballot });
}

/** A live server says it serves as a member of a configuration. */
export function hearsServing(r: ReplicaShared): boolean {
  for (const [id, view] of r.peerViews) {
    if (view.status === "member" && view.epoch > 0 && !r.suspected(id)) return true;
  }
  return false;
}

/** Refused: our heartbeat tells the proposer our configuration (and a member's, to adopt), the refusal our promise. */
export function refuse(r: ReplicaShared, from: number, ballot: number, what: string): void {
  if (from === r.selfId) {
    r.proposal = null;
    return;
  }
  sendHeartbeat(r, from, 0);
  r.send(from, { type: "config_refuse", from: r.selfId, ballot, promised: r.vote.promised });
  if (r.refusedEpoch !== ballot) {
    r.refusedEpoch = ballot;
    r.out.push({ kind: "note", text: `refusing ballot ${ballot} of server ${from} (${what}): our configuration is ${r.config.epoch}, our promise ${r.vote.promised}` });
  }
}

export function onAccept(r: ReplicaShared, from: number, ballot: number): void {
  const proposal = r.proposal;
  if (!proposal?.value || proposal.ballot !== ballot) return;
  proposal.accepted.add(from);
  if (proposal.accepted.size < r.majority) return;
  r.proposal = null;
  // Our configuration moved on meanwhile (adopted from the others): the proposal is void.
  if (r.config.epoch > proposal.value.baseEpoch) return;
  commitConfig(r, { epoch: proposal.value.epoch, chain: proposal.value.chain }, proposal.value.epoch === proposal.ballot);
}

export function dropStaleProposal(r: ReplicaShared): void {
  const proposal = r.proposal;
  if (!proposal || r.nowMs - proposal.sinceMs <= PROPOSAL_HEARTBEATS * r.options.heartbeatMs) return;
  r.proposal = null;
  const phase = proposal.value ? `accepted by ${proposal.accepted.size}` : `promised by ${proposal.promises.size}`;
  r.out.push({ kind: "note", text: `dropping the proposal of ballot ${proposal.ballot}: ${phase} of the ${r.majority} needed` });
}

/** Notes (once per change) that the head refuses requests for want of a majority. */
export function noteMinority(r: ReplicaShared): void {
  const note = r.isHead && !r.hasQuorum ? `no majority: ${r.liveInChain()} of ${r.options.peers.length} servers in the chain; refusing requests` : "";
  if (note !== r.minorityNote && note !== "") r.out.push({ kind: "note", text: note });
  r.minorityNote = note;
}
/**
 * --quorum majority: a configuration this server proposes (Paxos, one ballot). Phase 1
 * gathers promises from a majority; phase 2 proposes the value: the pending proposal with
 * the highest ballot among the promises (one that may have been chosen), else `own`.
 */
export interface Proposal {
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
