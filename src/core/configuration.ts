/**
 * How a server moves from one chain configuration to the next, in both modes: issuing one
 * (at once by default, through paxos.ts with --quorum majority), sending it to every server,
 * and adopting it — which decides whether this server is a member, joins, or refuses a
 * configuration built on a stale view, and who it forwards to and accepts forwards from.
 */
import { type ChainConfig, describeConfig, issuerOf, nextEpoch, predecessorOf, successorOf, tailOf } from "./chain";
import { type ReplicaShared } from "./replica_shared";
import { propose } from "./paxos";
import { broadcastHeartbeat, foreignHasLasted, hasHistoryOf } from "./membership";
import { startDownstream } from "./flow";

/** `id`'s predecessor in `chain` is none, or a server that was before it in `previous`. */
export function keepsPredecessorOrder(previous: number[], chain: number[], id: number): boolean {
  const index = chain.indexOf(id);
  if (index <= 0) return true;
  const before = previous.indexOf(chain[index - 1]!);
  return before >= 0 && before < previous.indexOf(id);
}

export function issueConfig(r: ReplicaShared, chain: number[]): void {
  if (r.majorityMode) return propose(r, chain);
  commitConfig(r, { epoch: nextEpoch(Math.max(r.highestEpochSeen, r.config.epoch), r.selfId), chain }, true);
}

/** Sends a configuration to every server and adopts it. `issued`: ours, not another proposer's we complete. */
export function commitConfig(r: ReplicaShared, config: ChainConfig, issued: boolean): void {
  const chain = config.chain;
  // A heartbeat first, on the same connections: a booting receiver then knows our history
  // when it decides whether it may serve in this configuration directly (hasHistoryOf).
  broadcastHeartbeat(r);
  for (const id of r.options.peers) {
    if (id !== r.selfId) r.send(id, { type: "config", from: r.selfId, epoch: config.epoch, chain, issued });
  }
  adoptConfig(r, config, issued ? r.selfId : null);
}

/**
 * Moves to a newer configuration. `issuer`: the server that issued it and sent it to us
 * (this one, when it issues it); null when learnt second hand, or completed by a server
 * other than its issuer. A booting server then only learns where the chain is (it must
 * join), while a config message from its issuer can make it a member directly.
 */
export function adoptConfig(r: ReplicaShared, config: ChainConfig, issuer: number | null): void {
  if (config.epoch <= r.config.epoch) return;
  r.highestEpochSeen = Math.max(r.highestEpochSeen, config.epoch);
  // (With --quorum majority every configuration was agreed by a majority: it is followed.)
  if (!r.majorityMode && r.status === "member" && !r.config.chain.includes(issuerOf(config.epoch)) && !foreignHasLasted(r)) {
    // Issued by a server that is not in our chain: it was removed from the chain without
    // knowing it, and built this configuration on its stale view. Following it could make
    // a server that lacks acknowledged updates our predecessor, or our head (which would
    // then overwrite us with its shorter history). It steps down itself (staleWitness)
    // within about suspectMs; a configuration that lasts beyond that is a real chain (two
    // chains after a partition): then the higher epoch wins, as without this rule.
    if (r.refusedEpoch !== config.epoch) {
      r.refusedEpoch = config.epoch;
      r.out.push({ kind: "note", text: `ignoring ${describeConfig(config)}: its issuer ${issuerOf(config.epoch)} is not in our chain` });
    }
    return;
  }
  r.foreign = null;
  const proposal = r.proposal;
  if (proposal && config.epoch > (proposal.value ?? proposal.own).baseEpoch) {
    // Built on the configuration we are leaving: it will never take effect.
    r.proposal = null;
  }
  const wasHead = r.isHead;
  const wasTail = r.isTail;
  const inChain = config.chain.includes(r.selfId);
  const previousChain = r.config.chain;
  r.config = config;
  r.configSinceMs = r.nowMs;
  // A booting server is made a member directly only when it has the issuer's history (a
  // chain formed at start-up). A restarted, emptied server that a late configuration still
  // lists must join instead: as a member it would overwrite its successors with its empty state.
  // So must it when a proposal is completed (--quorum majority), even by its own issuer: the
  // histories may have changed since it was proposed (a restart), so nobody knows any more
  // which history the chain was formed with (the completing server itself joins too).
  // Nor right after a pause that sent us back to booting: the configuration may be one that
  // waited in our sockets while we were stopped, its issuer since gone, and the chain moved on
  // without us (sim seed 283024131: made a member of a stale chain, we removed its dead servers
  // and served a history older than one acknowledged meanwhile). Joining checks with the tail.
  const freshFromPause = r.nowMs - r.resumedAtMs <= 2 * r.options.heartbeatMs;
  if (r.status === "booting") r.status = inChain && issuer === issuerOf(config.epoch) && hasHistoryOf(r, issuer) && !freshFromPause ? "member" : "joining";
  // A member stays one only behind a server that was before it in its chain (a chain derived
  // from ours: that server's history holds ours). Listed behind any other — a chain a booting
  // server formed on a stale view of us (sim seed 115006055) — its history could be longer than
  // its new predecessor's: it joins, and is synchronised as any joiner.
  else if (r.status === "member" && (!inChain || !keepsPredecessorOrder(previousChain, config.chain, r.selfId))) r.status = "joining";
  // A joiner serves once it is added as the new tail right behind the tail that synced it.
  // Listed anywhere else, the configuration is stale (its issuer missed that we restarted):
  // we stay joining, and the issuer removes us when it sees it.
  // (A joiner that no tail synchronised has no upstream: a chain of it alone is not for it.)
  else if (r.status === "joining" && inChain && r.upstream !== null && predecessorOf(config, r.selfId) === r.upstream && tailOf(config) === r.selfId) r.status = "member";
  r.out.push({ kind: "note", text: `now ${r.status} in ${describeConfig(config)}` });
  r.recordConfig();
  if (r.status === "joining") r.joinedChainSinceMs = r.nowMs;
  if (r.status !== "member") {
    r.down = null;
    r.joiner = null;
    r.upstream = null;
    r.lastJoinMs = -Infinity;
    r.lastUpstreamMs = -Infinity;
    return;
  }
  r.upstream = predecessorOf(config, r.selfId);
  if (r.joiner && config.chain.includes(r.joiner.id)) r.joiner = null;
  const successor = successorOf(config, r.selfId) ?? r.joiner?.id ?? null;
  if (successor !== null) startDownstream(r, successor);
  else r.down = null;
  if (r.isHead && !wasHead) r.monitor.reset();
  if (r.isTail) {
    // Everything this server applied is now on the whole (shorter) chain.
    r.ackedSeq = r.state.appliedSeq;
    if (!wasTail) r.ackDue = true;
  }
}
