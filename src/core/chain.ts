/** Chain configurations: who is head, tail, whose successor; epoch numbering. */
import { SERVERS_MAX } from "../constants";
import type { AcceptedProposal } from "../wire";

export interface ChainConfig {
  /** Unique per configuration: issued by one server, larger than every epoch it has seen. */
  epoch: number;
  /** Server ids in chain order, head first. */
  chain: number[];
}

export const NO_CONFIG: ChainConfig = { epoch: 0, chain: [] };

/**
 * --quorum majority: what this server promised and accepted as a Paxos acceptor of
 * configurations. Kept on disk with the configuration (config.json) and written before
 * the promise or acceptance leaves: an acceptor that forgot it could accept two
 * configurations built on the same one.
 */
export interface Vote {
  /** The highest ballot promised: a prepare or proposal of a lower ballot is refused. */
  promised: number;
  /** The last proposal accepted, or null. */
  accepted: AcceptedProposal | null;
}

export const NO_VOTE: Vote = { promised: 0, accepted: null };

export function headOf(config: ChainConfig): number | null {
  return config.chain[0] ?? null;
}

export function tailOf(config: ChainConfig): number | null {
  return config.chain[config.chain.length - 1] ?? null;
}

export function successorOf(config: ChainConfig, id: number): number | null {
  const index = config.chain.indexOf(id);
  return index >= 0 && index + 1 < config.chain.length ? config.chain[index + 1]! : null;
}

export function predecessorOf(config: ChainConfig, id: number): number | null {
  const index = config.chain.indexOf(id);
  return index > 0 ? config.chain[index - 1]! : null;
}

/**
 * The next epoch issued by `issuer`: above every epoch seen, and different
 * from any epoch another issuer could pick from the same knowledge, so two
 * configurations issued on two sides of a partition never share an epoch.
 */
export function nextEpoch(highestSeen: number, issuer: number): number {
  return (Math.floor(highestSeen / SERVERS_MAX) + 1) * SERVERS_MAX + issuer;
}

/** The server that issued the configuration of `epoch` (nextEpoch embeds it). */
export function issuerOf(epoch: number): number {
  return epoch % SERVERS_MAX;
}

export function describeConfig(config: ChainConfig): string {
  return `epoch ${config.epoch} [${config.chain.join("→")}]`;
}
