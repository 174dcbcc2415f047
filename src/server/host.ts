/**
 * What a server node (node.ts) needs from the world it runs in: bytes on
 * connections, dialling peers, a clock, a disk, randomness for nonces, a log.
 * Production provides it with Bun sockets and files (server.ts); the
 * simulator with its network, disks and virtual clock (src/sim/machine.ts).
 * Connections are opaque numbers the host chooses.
 */
import { FRAME_BYTES_MAX } from "../constants";
import type { Persist } from "../core";
import type { Message, PeerMessage, Recall, ReplyMessage } from "../wire";
import type { Refusal } from "./admission";

export type ConnId = number;

export interface NodeDisk {
  /**
   * Writes `items` in order, calls `unsynced` (if given) once they are written, syncs, then
   * calls `written`. Calls complete in the order made: a batch the disk cannot take now
   * (full) keeps the later ones behind it.
   */
  write(items: Persist[], written: () => void, unsynced?: () => void): void;
  /** True while batches wait for the disk (it is full). */
  readonly waiting: boolean;
  /** Whether `bytes` more would leave the disk short of its free-space reserve. */
  spaceShort(bytes: number): boolean;
}

export interface NodeLog {
  info(text: string): void;
  warn(text: string): void;
  error(text: string): void;
  debug(text: string): void;
}

export interface NodeHost {
  nowMs(): number;
  send(conn: ConnId, bytes: Uint8Array): void;
  /** Sends what is queued on `conn` if it can, then closes it; the host then calls node.onClosed. */
  close(conn: ConnId, reason: string): void;
  /** Opens a connection to peer `id`: the host answers with node.onDialled, or node.onDialFailed. */
  dial(peer: number): void;
  /** Runs `fn` after the current event (a microtask): the Readys of one turn share one disk sync. */
  defer(fn: () => void): void;
  /** Runs `fn`, whose sends may be coalesced into one write per connection. */
  batch(fn: () => void): void;
  /** Bytes sent on `conn` that its peer has not taken yet (a busy client is not a silent one). */
  pendingBytes(conn: ConnId): number;
  /** A fresh nonce for the handshake's challenge (NONCE_BYTES). */
  nonce(): Uint8Array;
  /** The handshake is done: may it keep its slot? (connection limits; null: yes) */
  admit(conn: ConnId, role: "client" | "server"): Refusal | null;
  /** A frame of `bytes` is being handled; a host may free memory after it. */
  largeFrame(bytes: number): void;
  /** The buffer a large incoming frame of `bytes` is assembled in (src/wire/frame.ts); null: none now, keep its chunks. */
  frameBuffer(bytes: number): Uint8Array | null;
  /** `bytes` more of a large frame (LARGE_FRAME_BYTES_MIN on) arrived and were copied into its buffer. */
  largeFrameArrived(bytes: number): void;
  readonly disk: NodeDisk;
  readonly log: NodeLog;
}

/** What a node lets an onlooker see (the simulator's checks, traces); production passes none. */
export interface NodeObserver {
  received?(conn: ConnId, message: Message | PeerMessage): void;
  /** A reply leaves on `conn` (after the disk work it rests on). */
  sentReply?(conn: ConnId, body: ReplyMessage): void;
  /** A recall leaves on `conn` for the client of its session. */
  sentRecall?(conn: ConnId, recall: Recall): void;
  /** A message leaves for peer `to` on our connection `conn` to it. */
  sentPeer?(conn: ConnId, to: number, message: PeerMessage): void;
}

export interface NodeOptions {
  selfId: number;
  /** What clients are told for each server id (index id - 1): its address. */
  addresses: string[];
  segmentSize: number;
  pageSize: number;
  sessionTimeoutMs: number;
  heartbeatMs: number;
  suspectMs: number;
  secret?: string;
  /** Bytes clients' incomplete frames may hold at once. */
  inboundBufferedBytesMax: number;
  /** The largest frame a peer may send (a state transfer). */
  peerFrameBytesMax: number;
}

/** The largest frame a peer may send: a state transfer carries every allocated page plus the metadata. */
export function peerFrameBytesMax(segmentSize: number): number {
  return Math.max(FRAME_BYTES_MAX, segmentSize * 1.125 + 64 * 1024 * 1024);
}
