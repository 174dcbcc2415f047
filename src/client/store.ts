/**
 * The client side of pstore: a session with the cluster, the mapped segment,
 * and the holds. Access maps the granted bytes into the segment and opens the
 * pages (read-only; under a write hold the first write to a page marks it
 * dirty); a write release ships the dirty pages only.
 */
import { present } from "../assert";
import { DEFAULT_SERVERS, DELETE_RECALL_WAIT_MS, SESSION_TIMEOUT_MS_DEFAULT } from "../constants";
import { nameProblem, sizeProblem } from "../core/names";
import { CACHED_ELSEWHERE } from "../core/state";
import { PStoreError } from "../errors";
import { MappedSegment } from "../memory";
import { type Mode, type Op, type PageWrite, type Recall, type Reply, type ReplyMessage, packPages } from "../wire";
import { type CachedGrant, GrantCache } from "./cache";
import { pageRuns, randomSessionId, readCa, withTimeout } from "./helpers";
import { ClusterLink } from "./cluster";
import { reportUncaughtPStoreErrors } from "./uncaught";
import type { AccessOptions, ClientStats, ClusterStatus, ConnectOptions, DatumInfo, Store } from "./types";

const CONNECT_TIMEOUT_MS_DEFAULT = 5000;
const FAILOVER_TIMEOUT_MS_DEFAULT = 30_000;

interface ClientHold {
  holdId: number;
  name: string;
  mode: Mode;
  firstPage: number;
  pageCount: number;
  createdSeq: number;
  /** The view handed out: if the session is lost, releasing it says so. */
  view: Uint8Array;
}

/** Which version of a datum's bytes the mapped segment holds. */
interface CacheEntry {
  firstPage: number;
  pageCount: number;
  size: number;
  createdSeq: number;
  version: number;
}

export function resolveServers(servers?: string | string[]): string[] {
  const raw = servers ?? process.env.PSTORE_SERVERS ?? DEFAULT_SERVERS;
  const list = (Array.isArray(raw) ? raw : raw.split(",")).map((s) => s.trim()).filter((s) => s.length > 0);
  if (list.length === 0) throw new PStoreError("EINVAL", "no server address given (--servers or PSTORE_SERVERS)");
  return list;
}

/** Maps the client's segment once the servers told its geometry. */
export type SegmentMapper = (size: number, pageSize: number) => MappedSegment;

/**
 * `mapSegment` is the agent's seam (src/agent/): it maps a segment shared with
 * the C program it serves instead of the client's own anonymous memory.
 */
export async function connect(options: ConnectOptions = {}, mapSegment: SegmentMapper = MappedSegment.map): Promise<Store> {
  reportUncaughtPStoreErrors();
  const store = new ClientStore(options, mapSegment);
  await store.open();
  return store;
}

/**
 * What `pstore agent` needs to lend this session's idle cached grants to the C
 * program it serves (src/agent/lending.ts): a lent grant is a use granted here,
 * which the program takes and returns through shared memory.
 */
export interface GrantLender {
  /** A use of `name` granted here now with no message, or null (then nothing was done). */
  accessLocal(name: string, mode: Mode): Uint8Array | null;
  /** Until when (performance.now() ms) uses may be granted here: the lease. */
  localGrantsUntilMs(): number;
}

/** As connect, for the agent; `onRecalling(name)` runs before the store answers a recall of name's grant. */
export async function connectLender(options: ConnectOptions, mapSegment: SegmentMapper, onRecalling: (name: string) => void): Promise<Store & GrantLender> {
  reportUncaughtPStoreErrors();
  const store = new ClientStore(options, mapSegment, onRecalling);
  await store.open();
  return store;
}

class ClientStore implements Store, GrantLender {
  private readonly cluster: ClusterLink;
  private readonly sessionTimeoutMs: number;
  private readonly queriesOnly: boolean;
  private segment!: MappedSegment;
  /** Current holds by first page (a view's byteOffset finds its hold). */
  private readonly holds = new Map<number, ClientHold>();
  private readonly cache = new Map<string, CacheEntry>();
  private closed = false;
  /** The servers answered ESESSION: holds are gone; the next call opens a new session. */
  private sessionLost = false;
  private renewing: Promise<void> | null = null;
  private readonly counters = { pagesSent: 0, pagesReceived: 0, recalls: 0, sessionsLost: 0 };
  /** Cached holds (null: cacheHolds false): which grants this session keeps after release. */
  private readonly grants: GrantCache | null;
  /** A release or give-back in flight per datum: an access waits for it before deciding. */
  private readonly settling = new Map<string, Promise<void>>();
  /** Views of holds voided with a lost session, to their datum's name: releasing one says why it is gone. */
  private readonly lostViews = new WeakMap<ArrayBufferView, string>();

  constructor(
    options: ConnectOptions,
    private readonly mapSegment: SegmentMapper,
    private readonly onRecalling?: (name: string) => void,
  ) {
    // 0 asks for the servers' --session-timeout-ms.
    this.sessionTimeoutMs = options.sessionTimeoutMs ?? 0;
    this.grants = options.cacheHolds === false ? null : new GrantCache();
    this.queriesOnly = options.queriesOnly === true;
    this.cluster = new ClusterLink(
      resolveServers(options.servers),
      options.connectTimeoutMs ?? CONNECT_TIMEOUT_MS_DEFAULT,
      options.failoverTimeoutMs ?? FAILOVER_TIMEOUT_MS_DEFAULT,
      options.secret ?? (process.env.PSTORE_SECRET || undefined),
      readCa(options.tlsCa ?? (process.env.PSTORE_TLS_CA || undefined)),
    );
    if (this.grants) {
      const grants = this.grants;
      this.cluster.onAnswered = (firstSentAtMs) => grants.renewLease(firstSentAtMs);
      this.cluster.onRecall = (recall) => this.onRecall(recall);
    }
    // The chain stayed out of reach: continue under a new session once it is back.
    this.cluster.onChainLost = () => this.loseSession();
  }

  async open(): Promise<void> {
    await this.cluster.open(randomSessionId());
    const geometry = present(this.cluster.geometry, "a connected cluster knows its geometry");
    try {
      this.segment = this.mapSegment(geometry.segmentSize, geometry.pageSize);
    } catch (error) {
      // The agent maps one segment per program: past its limit, this is not the last connection open.
      this.cluster.shutdown(new PStoreError("ECLOSED", "the store was closed"));
      throw error;
    }
    if (this.queriesOnly) return;
    let timeoutMs: number;
    try {
      timeoutMs = await this.openSession();
    } catch (error) {
      this.cluster.shutdown(new PStoreError("ECLOSED", "the store was closed"));
      this.segment.unmap();
      throw error;
    }
    this.cluster.startHeartbeat(Math.max(50, Math.floor(timeoutMs / 4)));
  }

  private async openSession(): Promise<number> {
    const opened = await this.cluster.request({ type: "open_session", timeoutMs: this.sessionTimeoutMs });
    const timeoutMs = opened.reply.type === "session" ? opened.reply.timeoutMs : SESSION_TIMEOUT_MS_DEFAULT;
    this.grants?.setSessionTimeout(timeoutMs);
    return timeoutMs;
  }

  /** After ESESSION: the old holds are void; a new session serves the next calls. */
  private loseSession(): void {
    if (this.sessionLost) return;
    this.sessionLost = true;
    // Its cached grants went with it: nothing more is granted locally.
    this.grants?.clear();
    this.counters.sessionsLost++;
    for (const hold of this.holds.values()) {
      this.lostViews.set(hold.view, hold.name);
      this.segment.protect(hold.firstPage, hold.pageCount, "none");
      // Bytes written under a lost write hold never reached the servers.
      if (hold.mode === "write") this.cache.delete(hold.name);
    }
    this.holds.clear();
  }

  private ensureSession(): Promise<void> {
    if (!this.sessionLost) return Promise.resolve();
    this.renewing ??= (async () => {
      this.cluster.renewSession(randomSessionId());
      await this.openSession();
      this.sessionLost = false;
    })().finally(() => (this.renewing = null));
    return this.renewing;
  }

  // ---- the public API ----

  async create(name: string, size: number): Promise<void> {
    checkName(name);
    // Checked here too: a negative or fractional size cannot even be encoded.
    const badSize = sizeProblem(size, this.segment.size);
    if (badSize) throw new PStoreError(badSize.code, badSize.message);
    await this.request({ type: "create", name, size });
  }

  accessRead(name: string, options?: AccessOptions): Promise<Uint8Array> {
    return this.access(name, "read", options);
  }

  accessReadWrite(name: string, options?: AccessOptions): Promise<Uint8Array> {
    return this.access(name, "write", options);
  }

  releaseRead(view: ArrayBufferView): Promise<void> {
    return this.release(view, "read");
  }

  releaseReadWrite(view: ArrayBufferView): Promise<void> {
    return this.release(view, "write");
  }

  async delete(name: string): Promise<void> {
    checkName(name);
    if (this.grants) await this.deleteCached(name, this.grants);
    else await this.request({ type: "delete", name });
    this.cache.delete(name);
  }

  /** The servers drop our own cached grant with the datum; another client's is recalled first. */
  private async deleteCached(name: string, grants: GrantCache): Promise<void> {
    for (let grant = grants.get(name); grant; grant = grants.get(name)) {
      if (grant.using) throw new PStoreError("EBUSY", `"${name}" is held or waited for; delete it once every hold is released`);
      if (!grant.inFlight) break;
      const inFlight = this.settling.get(name);
      if (!inFlight) break;
      await inFlight;
    }
    // Not granted locally again: the delete takes it (if it fails, the next access asks the servers).
    grants.forget(name);
    try {
      await this.request({ type: "delete", name });
      return;
    } catch (error) {
      if (!(error instanceof PStoreError && error.code === "EBUSY" && error.message.includes(CACHED_ELSEWHERE))) throw error;
    }
    // Taking the write hold recalls the other grants; released, it is ours and cached.
    const view = await this.access(name, "write", { timeoutMs: DELETE_RECALL_WAIT_MS }).catch((error) => {
      if (error instanceof PStoreError && error.code === "ETIMEDOUT") {
        throw new PStoreError("EBUSY", `"${name}" stayed held by another client for ${DELETE_RECALL_WAIT_MS} ms; delete it once every hold is released`);
      }
      throw error;
    });
    await this.releaseReadWrite(view);
    grants.forget(name);
    await this.request({ type: "delete", name });
  }

  async list(): Promise<DatumInfo[]> {
    return JSON.parse(await this.query("list", ""));
  }

  async stat(name: string): Promise<DatumInfo> {
    checkName(name);
    return JSON.parse(await this.query("stat", name));
  }

  async status(): Promise<ClusterStatus> {
    return JSON.parse(await this.query("status", ""));
  }

  async withRead<T>(name: string, fn: (view: Uint8Array) => T | Promise<T>, options?: AccessOptions): Promise<T> {
    const view = await this.accessRead(name, options);
    try {
      return await fn(view);
    } finally {
      await this.releaseRead(view);
    }
  }

  async withWrite<T>(name: string, fn: (view: Uint8Array) => T | Promise<T>, options?: AccessOptions): Promise<T> {
    const view = await this.accessReadWrite(name, options);
    let result: T;
    try {
      result = await fn(view);
    } catch (error) {
      // The write did not complete: drop the hold without shipping anything.
      await this.abandon(view).catch(() => {});
      throw error;
    }
    await this.releaseReadWrite(view);
    return result;
  }

  async checkpoint(): Promise<{ seq: number }> {
    this.throwIfClosed();
    const { reply } = await this.request({ type: "checkpoint" });
    if (reply.type !== "checkpointed") throw new PStoreError("EPROTO", `checkpoint answered with ${reply.type}`);
    return { seq: reply.seq };
  }

  stats(): ClientStats {
    return { requests: this.cluster.requestsSent, ...this.counters, localGrants: this.grants?.localGrants ?? 0, chainMissingMs: this.cluster.chainMissingMs };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const hold of this.holds.values()) this.segment.protect(hold.firstPage, hold.pageCount, "none");
    this.holds.clear();
    this.grants?.clear();
    if (this.cluster.isOpen && !this.queriesOnly) {
      // Releases our holds at once; without it they go when the session expires.
      await withTimeout(this.cluster.request({ type: "close_session" }), 2000).catch(() => {});
    }
    this.cluster.shutdown(new PStoreError("ECLOSED", "the store was closed"));
    // Views handed out earlier must not be used after close (docs/api.md).
    this.segment.unmap();
  }

  // ---- holds ----

  private async access(name: string, mode: Mode, options: AccessOptions = {}): Promise<Uint8Array> {
    checkName(name);
    options.signal?.throwIfAborted?.();
    this.throwIfClosed();
    this.throwIfQueriesOnly();
    if (this.grants) {
      const local = await this.accessCached(name, mode, this.grants);
      if (local) return local;
    }
    const cached = this.cache.get(name);
    const op: Op = {
      type: "acquire",
      name,
      mode,
      knownCreatedSeq: cached ? cached.createdSeq : -1,
      cachedVersion: cached ? cached.version : -1,
      cache: this.grants?.shouldCache(name, performance.now()) ?? false,
    };
    await this.ensureSession();
    const reqNo = this.cluster.reqNoNext;
    const granted = this.send(op, options.onQueued);
    // If the wait is given up first, the grant may still fail later (e.g. on close): nobody awaits it then.
    granted.catch(() => {});
    const stop = this.watchWait(reqNo, options);
    let message: ReplyMessage;
    try {
      message = await Promise.race([granted, stop.promise]);
    } finally {
      stop.dispose();
    }
    const reply = message.reply as Extract<Reply, { type: "granted" }>;
    return this.mapGrant(reply, message.pages);
  }

  /** A use of our cached grant, granted here without a message; null when the servers must be asked. */
  private async accessCached(name: string, mode: Mode, grants: GrantCache): Promise<Uint8Array | null> {
    for (;;) {
      const step = grants.decide(name, mode, performance.now());
      if (step.kind === "acquire") return null;
      if (step.kind === "deadlock") throw new PStoreError("EDEADLK", `this session already holds or waits for "${name}": release it first`);
      if (step.kind === "wait") {
        const inFlight = this.settling.get(name);
        if (!inFlight) {
          // Nothing to wait for (cannot happen): giving the grant up is always safe.
          grants.forget(name);
          return null;
        }
        await inFlight;
        continue;
      }
      return this.useLocally(step.grant, name, mode, grants);
    }
  }

  private useLocally(grant: CachedGrant, name: string, mode: Mode, grants: GrantCache): Uint8Array | null {
    const entry = this.cache.get(name);
    if (!entry) {
      // Our copy of its bytes is gone (e.g. a datum created over its pages): ask the servers.
      grants.forget(name);
      return null;
    }
    grants.useLocally(grant, mode);
    this.segment.protect(entry.firstPage, entry.pageCount, mode);
    const view = this.segment.view(entry.firstPage * this.segment.pageSize, entry.size);
    this.holds.set(entry.firstPage, { holdId: grant.holdId, name, mode, firstPage: entry.firstPage, pageCount: entry.pageCount, createdSeq: entry.createdSeq, view });
    return view;
  }

  accessLocal(name: string, mode: Mode): Uint8Array | null {
    const grants = this.grants;
    if (!grants || this.closed || this.sessionLost || this.queriesOnly) return null;
    const grant = grants.localGrant(name, mode, performance.now());
    return grant ? this.useLocally(grant, name, mode, grants) : null;
  }

  localGrantsUntilMs(): number {
    return this.grants && !this.sessionLost && !this.closed ? this.grants.leaseEndMs : -Infinity;
  }

  /** Rejects when the wait times out or is aborted, after the cancel is applied (the queue is clean). */
  private watchWait(reqNo: number, options: AccessOptions) {
    let timer: ReturnType<typeof setTimeout> | null = null;
    let onAbort: (() => void) | null = null;
    const promise = new Promise<never>((_, reject) => {
      const giveUp = (error: PStoreError) => {
        if (!this.cluster.markCancelled(reqNo)) return;
        this.request({ type: "cancel", acquireReqNo: reqNo }).then(
          () => {
            this.cluster.forget(reqNo);
            reject(error);
          },
          (cancelError) => reject(cancelError),
        );
      };
      if (options.timeoutMs !== undefined) {
        timer = setTimeout(() => giveUp(new PStoreError("ETIMEDOUT", `no hold within ${options.timeoutMs} ms`)), options.timeoutMs);
      }
      if (options.signal) {
        onAbort = () => giveUp(new PStoreError("ECANCELED", "the wait was aborted"));
        options.signal.addEventListener("abort", onAbort, { once: true });
      }
    });
    promise.catch(() => {});
    return {
      promise,
      dispose: () => {
        if (timer) clearTimeout(timer);
        if (onAbort) options.signal?.removeEventListener("abort", onAbort);
      },
    };
  }

  private mapGrant(reply: Extract<Reply, { type: "granted" }>, pages: PageWrite[]): Uint8Array {
    const pageSize = this.segment.pageSize;
    const firstPage = reply.offset / pageSize;
    const pageCount = Math.ceil(reply.size / pageSize);
    this.forgetOverlapping(reply.name, firstPage, pageCount);
    this.segment.setName(firstPage, pageCount, reply.name);
    for (const run of pageRuns(pages, pageSize)) this.segment.writePagesStrided(run.firstPage, run.count, run.bytes, run.stride);
    this.counters.pagesReceived += pages.length;
    this.segment.protect(firstPage, pageCount, reply.mode);
    const view = this.segment.view(reply.offset, reply.size);
    this.holds.set(firstPage, { holdId: reply.holdId, name: reply.name, mode: reply.mode, firstPage, pageCount, createdSeq: reply.createdSeq, view });
    this.cache.set(reply.name, { firstPage, pageCount, size: reply.size, createdSeq: reply.createdSeq, version: reply.version });
    this.grants?.granted(reply.holdId, reply.name, reply.mode);
    return view;
  }

  /** Pages now given to `name` may hold bytes of a deleted datum: that cache is gone. */
  private forgetOverlapping(name: string, firstPage: number, pageCount: number): void {
    for (const [other, entry] of this.cache) {
      if (other === name) continue;
      if (entry.firstPage < firstPage + pageCount && firstPage < entry.firstPage + entry.pageCount) {
        this.cache.delete(other);
        this.grants?.forget(other);
      }
    }
  }

  private holdOf(view: ArrayBufferView, mode: Mode): ClientHold {
    if (!ArrayBuffer.isView(view) || view.buffer !== this.segment.buffer) {
      throw new PStoreError("EINVAL", "release takes the view that access returned");
    }
    // Checked first: a lost view must not release a newer hold on the same pages.
    const lost = this.lostViews.get(view);
    if (lost !== undefined) {
      throw new PStoreError("ESTALE", `the hold on "${lost}" was lost with its session (the cluster was out of reach, or the session expired); access it again`);
    }
    const hold = this.holds.get(Math.floor(view.byteOffset / this.segment.pageSize));
    if (!hold) throw new PStoreError("ESTALE", "this view holds nothing (already released?)");
    if (hold.mode !== mode) {
      const right = hold.mode === "read" ? "releaseRead" : "releaseReadWrite";
      throw new PStoreError("EINVAL", `"${hold.name}" is held for ${hold.mode === "read" ? "reading" : "writing"}: use ${right}`);
    }
    return hold;
  }

  private async release(view: ArrayBufferView, mode: Mode): Promise<void> {
    this.throwIfClosed();
    const hold = this.holdOf(view, mode);
    if (this.grants) return this.releaseCached(hold, mode, this.grants);
    // Copied now (into their wire encoding): the pages go back to PROT_NONE before the frame is sent.
    const pages: PageWrite[] =
      mode === "write"
        ? packPages(this.segment.dirtyPages(hold.firstPage, hold.pageCount), this.segment.pageSize, new Uint8Array(this.segment.buffer))
        : [];
    this.holds.delete(hold.firstPage);
    this.counters.pagesSent += pages.length;
    // Sent first (the pages are copied into the frame), then the protection drops while
    // the release travels the chain: for a large datum the mprotect costs as much as the trip.
    const released = this.send({ type: "release", holdId: hold.holdId, pages });
    this.segment.protect(hold.firstPage, hold.pageCount, "none");
    try {
      const message = await released;
      const reply = message.reply as Extract<Reply, { type: "released" }>;
      const entry = this.cache.get(hold.name);
      if (entry && entry.createdSeq === hold.createdSeq) entry.version = reply.version;
    } catch (error) {
      // The servers did not take these bytes: the local copy is no longer theirs.
      if (mode === "write") this.cache.delete(hold.name);
      throw error;
    }
  }

  /**
   * Ends a use of a cached-holds session. A write ships its pages (a replicated update, as
   * always); a read of a grant the servers record as cached sends nothing; a recalled grant
   * goes back. The servers say in the reply whether the grant stays cached.
   */
  private async releaseCached(hold: ClientHold, mode: Mode, grants: GrantCache): Promise<void> {
    const pages: PageWrite[] =
      mode === "write"
        ? packPages(this.segment.dirtyPages(hold.firstPage, hold.pageCount), this.segment.pageSize, new Uint8Array(this.segment.buffer))
        : [];
    this.holds.delete(hold.firstPage);
    const step = grants.endUse(hold.name);
    if (step === "nothing") {
      this.segment.protect(hold.firstPage, hold.pageCount, "none");
      return;
    }
    this.counters.pagesSent += pages.length;
    const returned = this.giveBack(hold.name, hold.holdId, pages, hold.createdSeq, grants);
    this.segment.protect(hold.firstPage, hold.pageCount, "none");
    await returned;
  }

  /**
   * Sends a release of `holdId` (pages, or none: a read's release, a give-back) and follows
   * its answer: the grant stays cached or goes; a recall that came meanwhile is answered.
   * Until the answer, accesses of the datum wait (the servers decide whether it stays ours).
   */
  private giveBack(name: string, holdId: number, pages: PageWrite[], createdSeq: number, grants: GrantCache): Promise<void> {
    // A grant we forgot is given back without holding up the datum's accesses (they do not rest on it).
    const tracked = grants.get(name)?.holdId === holdId;
    let settled: Promise<void> | undefined;
    const done = (async () => {
      let again = false;
      try {
        const message = await this.send({ type: "release", holdId, pages });
        const reply = message.reply as Extract<Reply, { type: "released" }>;
        const entry = this.cache.get(name);
        if (entry && entry.createdSeq === createdSeq) entry.version = reply.version;
        again = grants.released(holdId, reply.cached) === "give-back";
      } catch (error) {
        if (tracked) grants.forget(name);
        // The servers did not take these bytes: the local copy is no longer theirs.
        if (pages.length > 0) this.cache.delete(name);
        throw error;
      } finally {
        if (this.settling.get(name) === settled) this.settling.delete(name);
      }
      if (again) this.answerRecall(name, holdId, createdSeq, grants);
    })();
    if (tracked) {
      settled = done.catch(() => {});
      this.settling.set(name, settled);
    }
    return done;
  }

  /** From the event loop, never waiting on user code: the grant goes back now. */
  private answerRecall(name: string, holdId: number, createdSeq: number, grants: GrantCache): void {
    this.giveBack(name, holdId, [], createdSeq, grants).catch(() => {});
  }

  private onRecall(recall: Recall): void {
    const grants = this.grants;
    if (!grants || this.closed || this.sessionLost) return;
    this.counters.recalls++;
    // The agent takes back a use it lent, if the program is not in it (then its release answers).
    this.onRecalling?.(recall.name);
    if (!grants.recall(recall.holdId, recall.name, performance.now())) return; // the use's release gives it back
    const known = grants.get(recall.name);
    const createdSeq = known?.holdId === recall.holdId ? (this.cache.get(recall.name)?.createdSeq ?? -1) : -1;
    this.answerRecall(recall.name, recall.holdId, createdSeq, grants);
  }

  /** Drops a write hold without shipping: the local bytes are discarded. */
  private async abandon(view: ArrayBufferView): Promise<void> {
    const hold = this.holdOf(view, "write");
    this.segment.protect(hold.firstPage, hold.pageCount, "none");
    this.holds.delete(hold.firstPage);
    this.cache.delete(hold.name);
    // The local bytes are not the servers': never granted locally again.
    this.grants?.forget(hold.name);
    await this.request({ type: "release", holdId: hold.holdId, pages: [] });
  }

  private async request(op: Op): Promise<ReplyMessage> {
    this.throwIfQueriesOnly();
    await this.ensureSession();
    return this.send(op);
  }

  /** Sends under the current session; an ESESSION answer marks the session lost. */
  private async send(op: Op, onQueued?: () => void): Promise<ReplyMessage> {
    try {
      return await this.cluster.request(op, onQueued);
    } catch (error) {
      if (error instanceof PStoreError && error.code === "ESESSION") this.loseSession();
      throw error;
    }
  }

  private query(kind: "list" | "stat" | "status", name: string): Promise<string> {
    return this.cluster.query(kind, name);
  }

  private throwIfQueriesOnly(): void {
    if (this.queriesOnly) throw new PStoreError("EINVAL", "this store was connected with queriesOnly: list, stat and status only");
  }

  private throwIfClosed(): void {
    if (this.closed) throw new PStoreError("ECLOSED", "the store was closed");
  }
}

function checkName(name: string): void {
  const problem = nameProblem(name);
  if (problem) throw new PStoreError("EINVAL", problem);
}
