/**
 * The client side of pstore: a session with the cluster, the mapped segment,
 * and the holds. Access maps the granted bytes into the segment and opens the
 * pages (read-only; under a write hold the first write to a page marks it
 * dirty); a write release ships the dirty pages only. With cached holds it
 * grants locally, answers recalls and gives grants back (GrantCache decides).
 * What the segment holds (holds in use, the version of each datum's bytes) is
 * kept in holds.ts; the requests and the chain in cluster.ts.
 *
 * Transport-free: it runs over a ClientHost and a SegmentMemory, so connect()
 * (store.ts: Bun sockets, mmap) and the simulator (src/sim) run this same code.
 */
import { present } from "../assert";
import { CLOSE_WAIT_MS, CONNECT_TIMEOUT_MS_DEFAULT, DELETE_RECALL_WAIT_MS, FAILOVER_TIMEOUT_MS_DEFAULT, GRANTING_ACQUIRES_KEPT_MAX, SESSION_TIMEOUT_MS_DEFAULT } from "../constants";
import { nameProblem, sizeProblem } from "../core/names";
import { CACHED_ELSEWHERE } from "../core/state";
import { PStoreError } from "../errors";
import { type Mode, type Op, type PageWrite, type Recall, type Reply, type ReplyMessage, packedSections } from "../wire";
import { type CachedGrant, GrantCache } from "./cache";
import { ClusterLink } from "./cluster";
import { type ClientHold, SegmentHolds } from "./holds";
import { PackBuffer } from "./pack_buffer";
import type { ClientHost, GrantLender, SegmentMapper, UseObserver } from "./host";
import { accessOptionsProblem, checkConnectOptions } from "./options";
import { withReadUse, withWriteUse } from "./scoped";
import { watchWait, withTimeout } from "./wait";
import type { AccessOptions, ClientStats, ClusterStatus, ConnectOptions, DatumInfo, Store } from "./types";


/** The store over any host: connect() gives it Bun sockets and mmap, the simulator its network and a page map. */
export class ClientStore implements Store, GrantLender {
  private readonly cluster: ClusterLink;
  private readonly sessionTimeoutMs: number;
  private readonly queriesOnly: boolean;
  /** The mapped segment and what it holds (once open). */
  private mapped!: SegmentHolds;
  private closed = false;
  /** The servers answered ESESSION: holds are gone; the next call opens a new session. */
  private sessionLost = false;
  private renewing: Promise<void> | null = null;
  private readonly counters = { pagesSent: 0, recalls: 0, sessionsLost: 0 };
  /** Cached holds (null: cacheHolds false): which grants this session keeps after release. */
  private readonly grants: GrantCache | null;
  /** A release or give-back in flight per datum: an access waits for it before deciding. */
  private readonly settling = new Map<string, Promise<void>>();
  /** Hold id → the acquire request that was granted it: a release the servers do not know withdraws it. */
  private readonly acquireOf = new Map<number, number>();
  /** The buffer large write releases are packed into, kept for the next. */
  private readonly packBuffer: PackBuffer;

  constructor(
    options: ConnectOptions & { servers: string[] },
    private readonly host: ClientHost,
    private readonly mapSegment: SegmentMapper,
    private readonly observer: UseObserver | null = null,
    /** The agent's: runs before a recall of `name`'s grant is answered (it takes back a use it lent). */
    private readonly onRecalling?: (name: string) => void,
  ) {
    checkConnectOptions(options);
    // 0 asks for the servers' --session-timeout-ms.
    this.sessionTimeoutMs = options.sessionTimeoutMs ?? 0;
    this.packBuffer = new PackBuffer(host);
    this.grants = options.cacheHolds === false ? null : new GrantCache();
    this.queriesOnly = options.queriesOnly === true;
    this.cluster = new ClusterLink(host, options.servers, options.connectTimeoutMs ?? CONNECT_TIMEOUT_MS_DEFAULT, options.failoverTimeoutMs ?? FAILOVER_TIMEOUT_MS_DEFAULT);
    if (this.grants) {
      const grants = this.grants;
      this.cluster.onAnswered = (firstSentAtMs) => grants.renewLease(firstSentAtMs);
      this.cluster.onRecall = (recall) => this.onRecall(recall);
    }
    // The chain stayed out of reach: continue under a new session once it is back.
    this.cluster.onChainLost = () => this.loseSession();
    this.cluster.onStrayGrant = (grant) => this.giveBackStray(grant.holdId, grant.name);
  }

  async open(): Promise<void> {
    await this.cluster.open(this.host.newSessionId());
    const geometry = present(this.cluster.geometry, "a connected cluster knows its geometry");
    try {
      this.mapped = new SegmentHolds(this.mapSegment(geometry.segmentSize, geometry.pageSize));
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
      this.mapped.segment.unmap();
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
    this.acquireOf.clear();
    this.counters.sessionsLost++;
    this.mapped.loseAll();
  }

  private ensureSession(): Promise<void> {
    if (!this.sessionLost) return Promise.resolve();
    this.renewing ??= (async () => {
      this.cluster.renewSession(this.host.newSessionId());
      await this.openSession();
      this.sessionLost = false;
    })().finally(() => (this.renewing = null));
    return this.renewing;
  }

  // ---- the public API ----

  async create(name: string, size: number): Promise<void> {
    checkName(name);
    // Checked here too: a negative or fractional size cannot even be encoded.
    const badSize = sizeProblem(size, this.mapped.segment.size);
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
    this.mapped.forget(name);
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

  withRead<T>(name: string, fn: (view: Uint8Array) => T | Promise<T>, options?: AccessOptions): Promise<T> {
    return withReadUse(this, name, fn, options);
  }

  withWrite<T>(name: string, fn: (view: Uint8Array) => T | Promise<T>, options?: AccessOptions): Promise<T> {
    return withWriteUse(this, (view) => this.abandon(view), name, fn, options);
  }

  async checkpoint(): Promise<{ seq: number }> {
    this.throwIfClosed();
    const { reply } = await this.request({ type: "checkpoint" });
    if (reply.type !== "checkpointed") throw new PStoreError("EPROTO", `checkpoint answered with ${reply.type}`);
    return { seq: reply.seq };
  }

  stats(): ClientStats {
    return { requests: this.cluster.requestsSent, ...this.counters, pagesReceived: this.mapped?.pagesReceived ?? 0, localGrants: this.grants?.localGrants ?? 0, chainMissingMs: this.cluster.chainMissingMs };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.packBuffer.drop();
    this.mapped.closeAll();
    this.grants?.clear();
    if (this.cluster.isOpen && !this.queriesOnly) {
      // Releases our holds at once; without it they go when the session expires.
      await withTimeout(this.host, this.cluster.request({ type: "close_session" }), CLOSE_WAIT_MS).catch(() => {});
    }
    this.cluster.shutdown(new PStoreError("ECLOSED", "the store was closed"));
    // Views handed out earlier must not be used after close (docs/api.md).
    this.mapped.segment.unmap();
  }

  /** The session in use and the requests in flight (for the simulator's settle check). */
  get sessionId(): number {
    return this.cluster.session;
  }

  /** False once closed: by close(), or by a refusal that retrying cannot fix (authentication, protocol). */
  get isOpen(): boolean {
    return !this.closed && this.cluster.isOpen;
  }

  get busy(): boolean {
    return this.cluster.inFlight > 0 || this.settling.size > 0 || this.renewing !== null;
  }

  // ---- holds ----

  /** A use of our cached grant is granted here at once (no message, no async frame); else the servers are asked. */
  private access(name: string, mode: Mode, options: AccessOptions = {}): Promise<Uint8Array> {
    const badOption = accessOptionsProblem(options);
    if (badOption) return Promise.reject(badOption);
    const grants = this.grants;
    if (grants && !this.closed && !this.queriesOnly && !options.signal?.aborted && grants.localGrant(name, mode, this.host.nowMs())) {
      try {
        checkName(name);
        const view = this.accessCachedNow(name, mode, grants);
        if (view) return Promise.resolve(view);
      } catch (error) {
        return Promise.reject(error);
      }
    }
    return this.accessAsking(name, mode, options);
  }

  private async accessAsking(name: string, mode: Mode, options: AccessOptions): Promise<Uint8Array> {
    checkName(name);
    options.signal?.throwIfAborted?.();
    this.throwIfClosed();
    this.throwIfQueriesOnly();
    if (this.grants) {
      const local = await this.accessCached(name, mode, this.grants);
      if (local) return local;
    }
    const op: Op = {
      type: "acquire",
      name,
      mode,
      ...this.mapped.known(name),
      cache: this.grants?.shouldCache(name, this.host.nowMs()) ?? false,
    };
    await this.ensureSession();
    const reqNo = this.cluster.reqNoNext;
    const granted = this.send(op, options.onQueued);
    // If the wait is given up first, the grant may still fail later (e.g. on close): nobody awaits it then.
    granted.catch(() => {});
    const stop = watchWait(this.host, this.cluster, reqNo, () => this.request({ type: "cancel", acquireReqNo: reqNo }), options);
    let message: ReplyMessage;
    try {
      message = await Promise.race([granted, stop.promise]);
    } finally {
      stop.dispose();
    }
    const reply = message.reply as Extract<Reply, { type: "granted" }>;
    this.acquireOf.set(reply.holdId, reqNo);
    // A cached grant dropped without a release (its datum deleted, the copy overwritten) leaves
    // its entry: the oldest go first (a release that then hears ESTALE just cancels nothing).
    if (this.acquireOf.size > GRANTING_ACQUIRES_KEPT_MAX) this.acquireOf.delete(this.acquireOf.keys().next().value!);
    return this.mapGrant(reply, message.pages);
  }

  /** A use of our cached grant, granted here without a message; null when the servers must be asked. */
  private async accessCached(name: string, mode: Mode, grants: GrantCache): Promise<Uint8Array | null> {
    for (;;) {
      const step = grants.decide(name, mode, this.host.nowMs());
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

  /** accessCached when it need not wait: a local use now, or null to ask the servers. */
  private accessCachedNow(name: string, mode: Mode, grants: GrantCache): Uint8Array | null {
    const step = grants.decide(name, mode, this.host.nowMs());
    return step.kind === "local" ? this.useLocally(step.grant, name, mode, grants) : null;
  }

  private useLocally(grant: CachedGrant, name: string, mode: Mode, grants: GrantCache): Uint8Array | null {
    const hold = this.mapped.openLocal(name, mode, grant.holdId);
    if (!hold) {
      // Our copy of its bytes is gone (e.g. a datum created over its pages): ask the servers.
      grants.forget(name);
      return null;
    }
    grants.useLocally(grant, mode);
    this.observer?.onUse({ name, mode, holdId: hold.holdId, local: true, view: hold.view });
    return hold.view;
  }

  /** GrantLender: a use granted here now, with no message, or null. */
  accessLocal(name: string, mode: Mode): Uint8Array | null {
    const grants = this.grants;
    if (!grants || this.closed || this.sessionLost || this.queriesOnly) return null;
    const grant = grants.localGrant(name, mode, this.host.nowMs());
    return grant ? this.useLocally(grant, name, mode, grants) : null;
  }

  /** GrantLender: until when (the host's clock) uses may be granted here. */
  localGrantsUntilMs(): number {
    return this.grants && !this.sessionLost && !this.closed ? this.grants.leaseEndMs : -Infinity;
  }

  private mapGrant(reply: Extract<Reply, { type: "granted" }>, pages: PageWrite[]): Uint8Array {
    const { hold, overwritten } = this.mapped.mapGrant(reply, pages);
    for (const name of overwritten) this.grants?.forget(name);
    this.grants?.granted(reply.holdId, reply.name, reply.mode);
    this.observer?.onUse({ name: reply.name, mode: reply.mode, holdId: reply.holdId, local: false, view: hold.view });
    return hold.view;
  }

  private release(view: ArrayBufferView, mode: Mode): Promise<void> {
    try {
      this.throwIfClosed();
      const hold = this.mapped.holdOf(view, mode);
      this.observer?.onUseEnd(hold.holdId);
      return this.grants ? this.releaseCached(hold, this.grants) : this.releaseAsking(hold, mode);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  private async releaseAsking(hold: ClientHold, mode: Mode): Promise<void> {
    // Copied now (into their wire encoding): the pages go back to PROT_NONE before the frame is sent.
    const pages = this.mapped.take(hold, this.packBuffer.take);
    this.counters.pagesSent += pages.length;
    // Sent first (the pages are copied into the frame), then the protection drops while
    // the release travels the chain: for a large datum the mprotect costs as much as the trip.
    const released = this.send({ type: "release", holdId: hold.holdId, pages });
    this.mapped.shut(hold);
    try {
      const message = await released;
      const reply = message.reply as Extract<Reply, { type: "released" }>;
      this.mapped.released(hold.name, hold.createdSeq, reply.version);
    } catch (error) {
      // The servers did not take these bytes: the local copy is no longer theirs.
      if (mode === "write") this.mapped.forget(hold.name);
      throw error;
    }
  }

  /**
   * Ends a use of a cached-holds session. A write ships its pages (a replicated update, as
   * always); a read of a grant the servers record as cached sends nothing; a recalled grant
   * goes back. The servers say in the reply whether the grant stays cached.
   */
  private releaseCached(hold: ClientHold, grants: GrantCache): Promise<void> {
    const pages = this.mapped.take(hold, this.packBuffer.take);
    const step = grants.endUse(hold.name);
    if (step === "nothing") {
      this.mapped.shut(hold);
      return Promise.resolve();
    }
    this.counters.pagesSent += pages.length;
    const returned = this.giveBack(hold.name, hold.holdId, pages, hold.createdSeq, grants);
    this.mapped.shut(hold);
    return returned;
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
        this.mapped.released(name, createdSeq, reply.version);
        again = grants.released(holdId, reply.cached) === "give-back";
      } catch (error) {
        // Only if the grant is still this one: a give-back of an older session's grant fails
        // ESESSION after the datum was granted again (sim seed 167003449: forgetting the new grant
        // in use made its write release send nothing, and the hold stayed with the live session).
        if (grants.get(name)?.holdId === holdId) grants.forget(name);
        // The servers did not take these bytes: the local copy is no longer theirs.
        if (pages.length > 0) this.mapped.forget(name);
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
    if (!grants.recall(recall.holdId, recall.name, this.host.nowMs())) return; // the use's release gives it back
    const known = grants.get(recall.name);
    const createdSeq = known?.holdId === recall.holdId ? this.mapped.createdSeqOf(recall.name) : -1;
    this.answerRecall(recall.name, recall.holdId, createdSeq, grants);
  }

  /** A grant no use or cached grant of ours rests on goes back at once. */
  private giveBackStray(holdId: number, name: string): void {
    if (this.closed || this.mapped.isInUse(holdId) || this.grants?.get(name)?.holdId === holdId) return;
    this.request({ type: "release", holdId, pages: [] }).catch(() => {});
  }

  /** Drops a write hold without shipping: the local bytes are discarded. */
  private async abandon(view: ArrayBufferView): Promise<void> {
    const hold = this.mapped.holdOf(view, "write");
    this.observer?.onUseEnd(hold.holdId);
    this.mapped.abandon(hold);
    // The local bytes are not the servers': never granted locally again.
    this.grants?.forget(hold.name);
    await this.request({ type: "release", holdId: hold.holdId, pages: [] });
  }

  private async request(op: Op): Promise<ReplyMessage> {
    this.throwIfQueriesOnly();
    await this.ensureSession();
    return this.send(op);
  }

  /** Sends under the current session; an ESESSION answer about it marks it lost. */
  private async send(op: Op, onQueued?: () => void): Promise<ReplyMessage> {
    const session = this.cluster.session;
    try {
      const message = await this.cluster.request(op, onQueued);
      if (op.type === "release") {
        if (!(message.reply.type === "released" && message.reply.cached)) this.acquireOf.delete(op.holdId);
        // Answered, and sent once: the server read every byte of the pages' buffer, which
        // nothing refers to any more; it serves the next large release.
        const section = packedSections.get(op.pages);
        if (section !== undefined && this.cluster.sentOnce(op)) this.packBuffer.giveBack(section);
      }
      return message;
    } catch (error) {
      if (op.type === "release" && error instanceof PStoreError && error.code === "ESTALE") this.withdrawAcquireOf(op.holdId);
      // Only news of the session in use voids its holds: a request of an older session (resent
      // after a failover, its session renewed meanwhile) hears ESESSION of that one. Taken for
      // ours, the holds of the live session were dropped here while the servers kept them,
      // heartbeated, for ever (sim seed 167003449).
      if (error instanceof PStoreError && error.code === "ESESSION" && session === this.cluster.session) this.loseSession();
      throw error;
    }
  }

  /**
   * The servers do not know a hold we released: an outage rolled back the update that granted
   * it (an expiry's grant needs no sync). The restarted chain may have granted the same acquire
   * again, a hold we never heard of, or may still have it queued: withdraw it, before the
   * caller's next request, or the session keeps it for ever (sim seed 293003982).
   */
  private withdrawAcquireOf(holdId: number): void {
    const acquireReqNo = this.acquireOf.get(holdId);
    if (acquireReqNo === undefined) return;
    this.acquireOf.delete(holdId);
    this.send({ type: "cancel", acquireReqNo }).catch(() => {});
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
