/** The public shapes of the client API (docs/api.md describes them for users). */

export interface ConnectOptions {
  /** "host:port,host:port" or a list; default PSTORE_SERVERS, then the local cluster's ports. */
  servers?: string | string[];
  /** Shared secret; default PSTORE_SECRET. */
  secret?: string;
  /** Connect with TLS, checking the servers' certificates against this CA (a PEM or its path); default PSTORE_TLS_CA. */
  tlsCa?: string;
  /** How long the servers keep this client's holds after it stops heart-beating (default: the servers' --session-timeout-ms). */
  sessionTimeoutMs?: number;
  /** How long to try to reach a serving chain at connect before failing with EUNAVAILABLE. */
  connectTimeoutMs?: number;
  /** How long to keep looking for a serving chain after a failure before failing with EUNAVAILABLE. */
  failoverTimeoutMs?: number;
  /**
   * Keep holds after release while no other client wants them, and grant the next access
   * locally, without a message (default true; docs/protocol.md#cached-holds). false: every
   * access and release is a request, as before cached holds.
   */
  cacheHolds?: boolean;
  /**
   * The stores of one process share one connection to each server (default true): their
   * requests and replies travel together, a system call per batch instead of one per store.
   * false: this store has connections of its own (a large transfer of another store then
   * never waits in front of its requests).
   */
  shareConnections?: boolean;
  /**
   * Queries only (list, stat, status): no session is opened, so connecting and
   * closing write nothing to the servers' log; any other call fails with EINVAL.
   */
  queriesOnly?: boolean;
}

export interface AccessOptions {
  /** Give up waiting for the hold after this long (ETIMEDOUT); the wait leaves no trace. */
  timeoutMs?: number;
  /** Abort the wait (ECANCELED); the wait leaves no trace. */
  signal?: AbortSignal;
  /** Called once if the datum is held by others and the access waits in its queue (for a "waiting for…" notice). */
  onQueued?: () => void;
}

import type { DatumInfo } from "../core/state";

export type { DatumInfo };

export interface ServerStatus {
  id: number;
  address: string;
  role: "head" | "middle" | "tail" | "single" | "joining" | "down";
  appliedSeq: number;
  lag: number;
  state: "serving" | "catching-up" | "down";
  lastHeartbeatMsAgo: number | null;
  /** Its disk has less free space than it keeps: the chain refuses new data (ENOSPC). Absent from older servers. */
  diskFull?: boolean;
}

export interface ClusterStatus {
  epoch: number;
  segmentSize: number;
  pageSize: number;
  chain: ServerStatus[];
}

/** What this client sent and received, for tests, the shell and benchmarks. */
export interface ClientStats {
  requests: number;
  pagesSent: number;
  pagesReceived: number;
  /** Accesses granted from a cached grant, without a message. */
  localGrants: number;
  /** Recalls of our cached grants by the head (another client asked): each answered by a give-back or by the release of the use in progress. */
  recalls: number;
  /** Sessions given up (ESESSION, or no chain within failoverTimeoutMs): holds taken before are void. */
  sessionsLost: number;
  /** How long the client has been looking for a serving chain (a failover, an outage); null while it has one. */
  chainMissingMs: number | null;
}

export interface Store {
  /** Reserves `size` bytes under `name` (p_create). EEXIST, EINVAL, ENOSPC. */
  create(name: string, size: number): Promise<void>;
  /** Waits for a read hold, returns the datum's bytes in the mapped segment, read-only (p_access_read). */
  accessRead(name: string, options?: AccessOptions): Promise<Uint8Array>;
  /** Waits for the write hold, returns the datum's bytes, writable (p_access_readwrite). */
  accessReadWrite(name: string, options?: AccessOptions): Promise<Uint8Array>;
  /** Drops a read hold (p_release_read). The view must not be used afterwards. */
  releaseRead(view: ArrayBufferView): Promise<void>;
  /** Ships the changed pages and drops the write hold; resolves when every server has them (p_release_readwrite). */
  releaseReadWrite(view: ArrayBufferView): Promise<void>;
  delete(name: string): Promise<void>;
  list(): Promise<DatumInfo[]>;
  stat(name: string): Promise<DatumInfo>;
  status(): Promise<ClusterStatus>;
  /** Runs `fn` under a read hold and always releases it. */
  withRead<T>(name: string, fn: (view: Uint8Array) => T | Promise<T>, options?: AccessOptions): Promise<T>;
  /** Runs `fn` under the write hold, ships its changes, and always releases. */
  withWrite<T>(name: string, fn: (view: Uint8Array) => T | Promise<T>, options?: AccessOptions): Promise<T>;
  /** Every server writes a checkpoint at the same sequence number (a recovery line); resolves with it. */
  checkpoint(): Promise<{ seq: number }>;
  stats(): ClientStats;
  /** Releases every hold (unreleased writes are discarded) and closes the connections. */
  close(): Promise<void>;
}
