/**
 * Messages between servers: heartbeats, configurations, and the chain's
 * traffic (sync, forward, snapshot, ack, join). Every one carries the
 * sender's id and epoch; receivers refuse chain traffic of other epochs.
 */
import { Reader, WireError, Writer, concatBytes } from "./codec";
import { FRAME_HEADER_BYTES } from "./frame";
import { frame } from "./messages";
import { type Update, encodeUpdateParts, readUpdateKeepingBytes } from "./ops";

export type ReplicaStatus = "booting" | "joining" | "member";

export type PeerMessage =
  | {
      type: "heartbeat";
      from: number;
      epoch: number;
      chain: number[];
      status: ReplicaStatus;
      appliedSeq: number;
      /** Epoch of the update at appliedSeq: equal (seq, epoch) pairs mean equal histories. */
      lastEpoch: number;
      /** The sender is about to be busy this long (a large update): do not suspect it meanwhile. */
      busyMs: number;
      /** The sender's disk is full (or nearly): a head refuses what grows the data (ENOSPC). Absent: false. */
      diskFull?: boolean;
      /** As a forward's `durable`, said again every heartbeat: a notice lost in a cut is not waited for. Absent: nothing said. */
      durable?: { seq: number; epoch: number };
      /**
       * The servers the sender heard while not serving, on its disk (config.json) until it adopts a
       * configuration: a booting server leads only once every candidate lists it here. Absent: none.
       */
      bootPeers?: number[];
      /**
       * The servers the sender suspects now (nothing heard from them for --suspect-ms): a tail
       * does not report a joiner caught up to a head that cannot hear it. Absent: none.
       */
      unheard?: number[];
    }
  /**
   * A configuration that takes effect. `issued`: the sender issued it itself, from the
   * histories it sees now (not one it completes for another proposer, --quorum majority).
   */
  | { type: "config"; from: number; epoch: number; chain: number[]; issued: boolean }
  /** From a predecessor (or the tail, to a joiner): "tell me where you are". */
  | { type: "sync_request"; from: number; epoch: number; chain: number[] }
  /** Also sent on a gap, to ask for a resend from appliedSeq + 1. */
  | { type: "sync_reply"; from: number; epoch: number; appliedSeq: number; lastEpoch: number }
  /**
   * `prevEpoch`: the epoch of the update just before the first one in the sender's history
   * (PREV_EPOCH_UNKNOWN if it no longer knows): the receiver applies them only on the same
   * history (Raft's consistency check of AppendEntries).
   */
  | {
      type: "forward";
      from: number;
      epoch: number;
      prevEpoch: number;
      updates: Update[];
      /**
       * --fsync always: the sender and every server before it in the chain have synced every
       * update up to `seq` that needs a sync (`epoch`: the epoch at `seq` in the sender's
       * history). With no updates, the forward only says this (the tail replies once the
       * chain has synced what it acknowledges). Absent: nothing said.
       */
      durable?: { seq: number; epoch: number };
    }
  | { type: "snapshot"; from: number; epoch: number; seq: number; lastEpoch: number; bytes: Uint8Array }
  /** `seqEpoch`: the epoch of the update at `seq` in the sender's history (0 if unknown). */
  | { type: "ack"; from: number; epoch: number; seq: number; seqEpoch: number }
  /**
   * --fsync always, to the tail from each server before it in the chain: the sender has
   * synced every update up to `seq` that needs a sync (`seqEpoch`: the epoch at `seq` in its
   * history). The tail need not wait for this to travel down the chain (chain_sync.ts).
   */
  | { type: "synced"; from: number; epoch: number; seq: number; seqEpoch: number }
  /** A server outside the chain asks the tail to bring it up to date. */
  | { type: "join"; from: number; appliedSeq: number; lastEpoch: number }
  /** The tail tells the head that a joiner has everything: append it to the chain. */
  | { type: "caught_up"; from: number; epoch: number; joiner: number }
  /**
   * A joiner to the head: my history holds the chain's, which ends at (baseSeq, baseEpoch),
   * and goes on to appliedSeq — take mine rather than make me go back (updates the chain
   * acknowledged are in it; the ones after it were acknowledged by a chain of ours).
   */
  | { type: "ahead"; from: number; epoch: number; baseSeq: number; baseEpoch: number; appliedSeq: number }
  /** The head to that joiner: send me your state (a snapshot); I sequence nothing meanwhile. */
  | { type: "pull"; from: number; epoch: number; baseSeq: number }
  /**
   * --quorum majority, Paxos phase 1: promise to accept no proposal of a ballot below `ballot`
   * (one that builds on `baseEpoch`), and say which proposal you accepted last.
   */
  | { type: "config_prepare"; from: number; ballot: number; baseEpoch: number }
  /** The promise, with the acceptor's configuration and its last accepted proposal (if any). */
  | { type: "config_promise"; from: number; ballot: number; configEpoch: number; accepted: AcceptedProposal | null }
  /** Phase 2: accept `chain` as the configuration `epoch`, built on `baseEpoch`, under `ballot`. */
  | ({ type: "config_propose"; from: number } & AcceptedProposal)
  /** The proposal of `ballot` is accepted. */
  | { type: "config_accept"; from: number; ballot: number }
  /** A prepare or proposal of `ballot` is refused; `promised` is the acceptor's highest promise (a heartbeat follows). */
  | { type: "config_refuse"; from: number; ballot: number; promised: number };

/** --quorum majority: a proposal an acceptor accepted (kept on disk with the configuration). */
export interface AcceptedProposal {
  ballot: number;
  epoch: number;
  chain: number[];
  baseEpoch: number;
  /**
   * A chain formed by a booting server from the histories it saw, not derived from the chain
   * of `baseEpoch` (a member accepts none: its chain serves, the booting server must join it).
   */
  formed: boolean;
}

/** A forward's prevEpoch when the sender no longer knows it: not checked. */
export const PREV_EPOCH_UNKNOWN = Number.MAX_SAFE_INTEGER;

export const PEER_TYPES = {
  heartbeat: 20,
  config: 21,
  sync_request: 22,
  sync_reply: 23,
  forward: 24,
  snapshot: 25,
  ack: 26,
  join: 27,
  caught_up: 28,
  config_propose: 29,
  config_accept: 30,
  config_prepare: 31,
  config_promise: 32,
  config_refuse: 33,
  ahead: 34,
  pull: 35,
  synced: 36,
} as const;

const STATUS_CODES: Record<ReplicaStatus, number> = { booting: 1, joining: 2, member: 3 };
const STATUS_BY_CODE = new Map(Object.entries(STATUS_CODES).map(([k, v]) => [v, k as ReplicaStatus]));

function chainSize(chain: number[]): number {
  return 2 + 2 * chain.length;
}

function writeChain(w: Writer, chain: number[]): void {
  w.u16(chain.length);
  for (const id of chain) w.u16(id);
}

function readChain(r: Reader): number[] {
  const count = r.u16();
  if (count * 2 > r.remaining) throw new WireError(`chain of ${count} servers does not fit in the frame`);
  const chain: number[] = [];
  for (let i = 0; i < count; i++) chain.push(r.u16());
  return chain;
}

/** u53 ballot, u53 epoch, chain, u53 baseEpoch, u8 formed. */
function writeProposal(w: Writer, p: AcceptedProposal): void {
  w.u53(p.ballot).u53(p.epoch);
  writeChain(w, p.chain);
  w.u53(p.baseEpoch).u8(p.formed ? 1 : 0);
}

function readProposal(r: Reader): AcceptedProposal {
  return { ballot: r.u53(), epoch: r.u53(), chain: readChain(r), baseEpoch: r.u53(), formed: readFlag(r) };
}

function readFlag(r: Reader): boolean {
  const flag = r.u8();
  if (flag > 1) throw new WireError(`bad flag ${flag}`);
  return flag === 1;
}

export function isPeerFrameType(type: number): boolean {
  return type >= PEER_TYPES.heartbeat && type <= PEER_TYPES.synced;
}

export function encodePeer(m: PeerMessage): Uint8Array {
  switch (m.type) {
    case "heartbeat":
      return frame(PEER_TYPES.heartbeat, 2 + 8 + chainSize(m.chain) + 1 + 8 + 8 + 4 + 1 + 8 + 8 + chainSize(m.bootPeers ?? []) + chainSize(m.unheard ?? []), (w) => {
        w.u16(m.from).u53(m.epoch);
        writeChain(w, m.chain);
        w.u8(STATUS_CODES[m.status]).u53(m.appliedSeq).u53(m.lastEpoch).u32(m.busyMs).u8(m.diskFull ? 1 : 0);
        w.u53(m.durable?.seq ?? 0).u53(m.durable?.epoch ?? 0);
        writeChain(w, m.bootPeers ?? []);
        writeChain(w, m.unheard ?? []);
      });
    case "config":
      return frame(PEER_TYPES.config, 2 + 8 + chainSize(m.chain) + 1, (w) => {
        w.u16(m.from).u53(m.epoch);
        writeChain(w, m.chain);
        w.u8(m.issued ? 1 : 0);
      });
    case "sync_request":
      return frame(PEER_TYPES.sync_request, 2 + 8 + chainSize(m.chain), (w) => {
        w.u16(m.from).u53(m.epoch);
        writeChain(w, m.chain);
      });
    case "sync_reply":
      return frame(PEER_TYPES.sync_reply, 2 + 8 * 3, (w) => w.u16(m.from).u53(m.epoch).u53(m.appliedSeq).u53(m.lastEpoch));
    case "forward":
      return concatBytes(encodePeerParts(m));
    case "snapshot":
      return frame(PEER_TYPES.snapshot, 2 + 8 * 3 + 4 + m.bytes.length, (w) =>
        w.u16(m.from).u53(m.epoch).u53(m.seq).u53(m.lastEpoch).blob(m.bytes),
      );
    case "ack":
      return frame(PEER_TYPES.ack, 2 + 8 * 3, (w) => w.u16(m.from).u53(m.epoch).u53(m.seq).u53(m.seqEpoch));
    case "synced":
      return frame(PEER_TYPES.synced, 2 + 8 * 3, (w) => w.u16(m.from).u53(m.epoch).u53(m.seq).u53(m.seqEpoch));
    case "join":
      return frame(PEER_TYPES.join, 2 + 8 + 8, (w) => w.u16(m.from).u53(m.appliedSeq).u53(m.lastEpoch));
    case "caught_up":
      return frame(PEER_TYPES.caught_up, 2 + 8 + 2, (w) => w.u16(m.from).u53(m.epoch).u16(m.joiner));
    case "config_prepare":
      return frame(PEER_TYPES.config_prepare, 2 + 8 + 8, (w) => w.u16(m.from).u53(m.ballot).u53(m.baseEpoch));
    case "config_promise": {
      const a = m.accepted;
      return frame(PEER_TYPES.config_promise, 2 + 8 + 8 + 1 + (a ? 8 + 8 + chainSize(a.chain) + 8 + 1 : 0), (w) => {
        w.u16(m.from).u53(m.ballot).u53(m.configEpoch).u8(a ? 1 : 0);
        if (a) writeProposal(w, a);
      });
    }
    case "config_propose":
      return frame(PEER_TYPES.config_propose, 2 + 8 + 8 + chainSize(m.chain) + 8 + 1, (w) => {
        w.u16(m.from);
        writeProposal(w, m);
      });
    case "config_accept":
      return frame(PEER_TYPES.config_accept, 2 + 8, (w) => w.u16(m.from).u53(m.ballot));
    case "config_refuse":
      return frame(PEER_TYPES.config_refuse, 2 + 8 + 8, (w) => w.u16(m.from).u53(m.ballot).u53(m.promised));
    case "ahead":
      return frame(PEER_TYPES.ahead, 2 + 8 * 4, (w) => w.u16(m.from).u53(m.epoch).u53(m.baseSeq).u53(m.baseEpoch).u53(m.appliedSeq));
    case "pull":
      return frame(PEER_TYPES.pull, 2 + 8 * 2, (w) => w.u16(m.from).u53(m.epoch).u53(m.baseSeq));
  }
}

/**
 * A message as a list of buffers to send one after the other: a forward's
 * updates go out as the bytes they were received or first encoded as, without
 * copying their pages into a new frame.
 */
export function encodePeerParts(m: PeerMessage): Uint8Array[] {
  if (m.type !== "forward") return [encodePeer(m)];
  const bodies = m.updates.flatMap(encodeUpdateParts);
  const head = new Writer(FRAME_HEADER_BYTES + 2 + 8 + 8 + 8 + 8 + 4);
  const total = head.bytes.length + bodies.reduce((n, b) => n + b.length, 0);
  // The frame's length field covers the bodies sent after this head.
  head.u32(total - 4).u8(PEER_TYPES.forward).u16(m.from).u53(m.epoch).u53(m.prevEpoch);
  head.u53(m.durable?.seq ?? 0).u53(m.durable?.epoch ?? 0).u32(m.updates.length);
  return [head.bytes, ...bodies];
}


export function decodePeer(type: number, body: Uint8Array): PeerMessage {
  const r = new Reader(body);
  const message = decodePeerBody(type, r);
  r.done();
  return message;
}

function decodePeerBody(type: number, r: Reader): PeerMessage {
  switch (type) {
    case PEER_TYPES.heartbeat: {
      const from = r.u16();
      const epoch = r.u53();
      const chain = readChain(r);
      const status = STATUS_BY_CODE.get(r.u8());
      if (!status) throw new WireError("unknown replica status");
      const heartbeat = { type: "heartbeat" as const, from, epoch, chain, status, appliedSeq: r.u53(), lastEpoch: r.u53(), busyMs: r.u32(), diskFull: readFlag(r) };
      const durableSeq = r.u53();
      const durableEpoch = r.u53();
      const bootPeers = readChain(r);
      const unheard = readChain(r);
      return {
        ...heartbeat,
        ...(durableSeq === 0 ? {} : { durable: { seq: durableSeq, epoch: durableEpoch } }),
        ...(bootPeers.length === 0 ? {} : { bootPeers }),
        ...(unheard.length === 0 ? {} : { unheard }),
      };
    }
    case PEER_TYPES.config:
      return { type: "config", from: r.u16(), epoch: r.u53(), chain: readChain(r), issued: readFlag(r) };
    case PEER_TYPES.sync_request:
      return { type: "sync_request", from: r.u16(), epoch: r.u53(), chain: readChain(r) };
    case PEER_TYPES.sync_reply:
      return { type: "sync_reply", from: r.u16(), epoch: r.u53(), appliedSeq: r.u53(), lastEpoch: r.u53() };
    case PEER_TYPES.forward: {
      const from = r.u16();
      const epoch = r.u53();
      const prevEpoch = r.u53();
      const durableSeq = r.u53();
      const durableEpoch = r.u53();
      const count = r.u32();
      if (count * 33 > r.remaining) throw new WireError(`${count} updates do not fit in the frame`);
      const updates: Update[] = [];
      for (let i = 0; i < count; i++) updates.push(readUpdateKeepingBytes(r));
      if (durableSeq === 0) return { type: "forward", from, epoch, prevEpoch, updates };
      return { type: "forward", from, epoch, prevEpoch, updates, durable: { seq: durableSeq, epoch: durableEpoch } };
    }
    case PEER_TYPES.snapshot:
      return { type: "snapshot", from: r.u16(), epoch: r.u53(), seq: r.u53(), lastEpoch: r.u53(), bytes: r.blob() };
    case PEER_TYPES.ack:
      return { type: "ack", from: r.u16(), epoch: r.u53(), seq: r.u53(), seqEpoch: r.u53() };
    case PEER_TYPES.synced:
      return { type: "synced", from: r.u16(), epoch: r.u53(), seq: r.u53(), seqEpoch: r.u53() };
    case PEER_TYPES.join:
      return { type: "join", from: r.u16(), appliedSeq: r.u53(), lastEpoch: r.u53() };
    case PEER_TYPES.caught_up:
      return { type: "caught_up", from: r.u16(), epoch: r.u53(), joiner: r.u16() };
    case PEER_TYPES.config_prepare:
      return { type: "config_prepare", from: r.u16(), ballot: r.u53(), baseEpoch: r.u53() };
    case PEER_TYPES.config_promise: {
      const from = r.u16();
      const ballot = r.u53();
      const configEpoch = r.u53();
      return { type: "config_promise", from, ballot, configEpoch, accepted: readFlag(r) ? readProposal(r) : null };
    }
    case PEER_TYPES.config_propose:
      return { type: "config_propose", from: r.u16(), ...readProposal(r) };
    case PEER_TYPES.config_accept:
      return { type: "config_accept", from: r.u16(), ballot: r.u53() };
    case PEER_TYPES.config_refuse:
      return { type: "config_refuse", from: r.u16(), ballot: r.u53(), promised: r.u53() };
    case PEER_TYPES.ahead:
      return { type: "ahead", from: r.u16(), epoch: r.u53(), baseSeq: r.u53(), baseEpoch: r.u53(), appliedSeq: r.u53() };
    case PEER_TYPES.pull:
      return { type: "pull", from: r.u16(), epoch: r.u53(), baseSeq: r.u53() };
    default:
      throw new WireError(`unknown server message type ${type}`);
  }
}
