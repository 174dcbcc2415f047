/**
 * The data of the replicated state machine (StoreState, state.ts): data and their holds
 * and queues, sessions, and the replies the tail delivers. Pure: no I/O, clock or randomness.
 */
import type { ErrorCode } from "../errors";
import type { Mode, Reply } from "../wire";

/** A reply the tail must deliver to a client. */
export interface Output {
  session: number;
  reqNo: number;
  reply: Reply;
}

export interface Hold {
  id: number;
  session: number;
  name: string;
  mode: Mode;
  reqNo: number;
  /** The client asked to keep the hold after its release while nobody waits (a cached grant). */
  cacheable: boolean;
  /**
   * Released and kept: the client may use it again locally, without a message, at any
   * time. The servers cannot tell whether it is in use; they recall it when someone waits.
   */
  cached: boolean;
}

/** The head asks `session` to give back its cached grant `holdId`: a waiter of `name` conflicts with it. */
export interface Recall {
  session: number;
  holdId: number;
  name: string;
}

export interface Waiter {
  session: number;
  reqNo: number;
  mode: Mode;
  knownCreatedSeq: number;
  cachedVersion: number;
  cache: boolean;
}

/** Why a delete of a datum another client caches is refused; the client recalls and retries on it. */
export const CACHED_ELSEWHERE = "is cached by another client";

export interface Datum {
  name: string;
  firstPage: number;
  pageCount: number;
  size: number;
  createdSeq: number;
  /** Sequence number of the last write release that changed a page (or of the creation). */
  version: number;
  holders: Hold[];
  queue: Waiter[];
}

export interface Session {
  id: number;
  timeoutMs: number;
  /** Reply of each request not yet confirmed by the client; null while an acquire waits. */
  replies: Map<number, Reply | null>;
  /** The client has the replies of every request below this number. */
  doneBelow: number;
  /** The highest request number of this session that this history sequenced. */
  lastReqNo: number;
  holds: Set<number>;
  /** Waiting acquires: request number → datum name. */
  waiting: Map<number, string>;
}

/** What `list` and `stat` tell about a datum (part of the public API, src/client/types.ts). */
export interface DatumInfo {
  name: string;
  /** Bytes the datum was created with. */
  size: number;
  /** Byte offset of the datum in the segment (page aligned). */
  offset: number;
  /** Sequence number of the last write release (or of the creation). */
  version: number;
  /** Holds in use: granted by a message and not released yet. */
  readers: number;
  writer: boolean;
  /** Cached grants (released and kept; each may be in use locally, without a message). */
  cachedReaders: number;
  cachedWriter: boolean;
  waiters: number;
}

export function errorReply(code: ErrorCode, message: string): Reply {
  return { type: "error", code, message };
}
