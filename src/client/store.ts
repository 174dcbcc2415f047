/**
 * The client side of pstore: a session with the cluster, the mapped segment,
 * and the holds. Access maps the granted bytes into the segment and opens the
 * pages (read-only; under a write hold the first write to a page marks it
 * dirty); a write release ships the dirty pages only.
 */
import { present } from "../assert";
import { readFileSync } from "node:fs";
import { DEFAULT_SERVERS, SESSION_TIMEOUT_MS_DEFAULT } from "../constants";
import { nameProblem, sizeProblem } from "../core/names";
import { PStoreError } from "../errors";
import { MappedSegment } from "../memory";
import { type Mode, type Op, type PageWrite, type Reply, type ReplyMessage, packPages } from "../wire";
import { ClusterLink } from "./cluster";
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
}

/** Which version of a datum's bytes the mapped segment holds. */
interface CacheEntry {
  firstPage: number;
  pageCount: number;
  createdSeq: number;
  version: number;
}

export function resolveServers(servers?: string | string[]): string[] {
  const raw = servers ?? process.env.PSTORE_SERVERS ?? DEFAULT_SERVERS;
  const list = (Array.isArray(raw) ? raw : raw.split(",")).map((s) => s.trim()).filter((s) => s.length > 0);
  if (list.length === 0) throw new PStoreError("EINVAL", "no server address given (--servers or PSTORE_SERVERS)");
  return list;
}

export async function connect(options: ConnectOptions = {}): Promise<Store> {
  const store = new ClientStore(options);
  await store.open();
  return store;
}

class ClientStore implements Store {
  private readonly cluster: ClusterLink;
  private readonly sessionTimeoutMs: number;
  private segment!: MappedSegment;
  /** Current holds by first page (a view's byteOffset finds its hold). */
  private readonly holds = new Map<number, ClientHold>();
  private readonly cache = new Map<string, CacheEntry>();
  private closed = false;
  /** The servers answered ESESSION: holds are gone; the next call opens a new session. */
  private sessionLost = false;
  private renewing: Promise<void> | null = null;
  private readonly counters = { pagesSent: 0, pagesReceived: 0 };

  constructor(options: ConnectOptions) {
    // 0 asks for the servers' --session-timeout-ms.
    this.sessionTimeoutMs = options.sessionTimeoutMs ?? 0;
    this.cluster = new ClusterLink(
      resolveServers(options.servers),
      options.connectTimeoutMs ?? CONNECT_TIMEOUT_MS_DEFAULT,
      options.failoverTimeoutMs ?? FAILOVER_TIMEOUT_MS_DEFAULT,
      options.secret ?? (process.env.PSTORE_SECRET || undefined),
      readCa(options.tlsCa ?? (process.env.PSTORE_TLS_CA || undefined)),
    );
  }

  async open(): Promise<void> {
    await this.cluster.open(randomSessionId());
    const geometry = present(this.cluster.geometry, "a connected cluster knows its geometry");
    this.segment = MappedSegment.map(geometry.segmentSize, geometry.pageSize);
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
    return opened.reply.type === "session" ? opened.reply.timeoutMs : SESSION_TIMEOUT_MS_DEFAULT;
  }

  /** After ESESSION: the old holds are void; a new session serves the next calls. */
  private loseSession(): void {
    if (this.sessionLost) return;
    this.sessionLost = true;
    for (const hold of this.holds.values()) {
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
    await this.request({ type: "delete", name });
    this.cache.delete(name);
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
    return { requests: this.cluster.requestsSent, ...this.counters };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const hold of this.holds.values()) this.segment.protect(hold.firstPage, hold.pageCount, "none");
    this.holds.clear();
    if (this.cluster.isOpen) {
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
    const cached = this.cache.get(name);
    const op: Op = {
      type: "acquire",
      name,
      mode,
      knownCreatedSeq: cached ? cached.createdSeq : -1,
      cachedVersion: cached ? cached.version : -1,
    };
    this.throwIfClosed();
    await this.ensureSession();
    const reqNo = this.cluster.reqNoNext;
    const granted = this.send(op);
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
    this.holds.set(firstPage, { holdId: reply.holdId, name: reply.name, mode: reply.mode, firstPage, pageCount, createdSeq: reply.createdSeq });
    this.cache.set(reply.name, { firstPage, pageCount, createdSeq: reply.createdSeq, version: reply.version });
    return this.segment.view(reply.offset, reply.size);
  }

  /** Pages now given to `name` may hold bytes of a deleted datum: that cache is gone. */
  private forgetOverlapping(name: string, firstPage: number, pageCount: number): void {
    for (const [other, entry] of this.cache) {
      if (other === name) continue;
      if (entry.firstPage < firstPage + pageCount && firstPage < entry.firstPage + entry.pageCount) this.cache.delete(other);
    }
  }

  private holdOf(view: ArrayBufferView, mode: Mode): ClientHold {
    if (!ArrayBuffer.isView(view) || view.buffer !== this.segment.buffer) {
      throw new PStoreError("EINVAL", "release takes the view that access returned");
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

  /** Drops a write hold without shipping: the local bytes are discarded. */
  private async abandon(view: ArrayBufferView): Promise<void> {
    const hold = this.holdOf(view, "write");
    this.segment.protect(hold.firstPage, hold.pageCount, "none");
    this.holds.delete(hold.firstPage);
    this.cache.delete(hold.name);
    await this.request({ type: "release", holdId: hold.holdId, pages: [] });
  }

  private async request(op: Op): Promise<ReplyMessage> {
    await this.ensureSession();
    return this.send(op);
  }

  /** Sends under the current session; an ESESSION answer marks the session lost. */
  private async send(op: Op): Promise<ReplyMessage> {
    try {
      return await this.cluster.request(op);
    } catch (error) {
      if (error instanceof PStoreError && error.code === "ESESSION") this.loseSession();
      throw error;
    }
  }

  private query(kind: "list" | "stat" | "status", name: string): Promise<string> {
    return this.cluster.query(kind, name);
  }

  private throwIfClosed(): void {
    if (this.closed) throw new PStoreError("ECLOSED", "the store was closed");
  }
}

/**
 * A grant's pages as runs of consecutive pages that lie the same distance
 * apart in one buffer (the frame, between their headers): one copy into the
 * segment per run instead of one per page (each opening and closing its page).
 */
function* pageRuns(pages: PageWrite[], pageSize: number): Generator<{ firstPage: number; count: number; bytes: Uint8Array; stride: number }> {
  let start = 0;
  while (start < pages.length) {
    const first = pages[start]!;
    const second = pages[start + 1];
    const stride = second ? second.bytes.byteOffset - first.bytes.byteOffset : pageSize;
    let end = start + 1;
    // Pages closer than a page apart overlap: no run then.
    while (stride >= pageSize && end < pages.length) {
      const page = pages[end]!;
      const apart = end - start;
      const inRun = page.page === first.page + apart && page.bytes.buffer === first.bytes.buffer && page.bytes.byteOffset === first.bytes.byteOffset + apart * stride;
      if (!inRun || page.bytes.length !== pageSize) break;
      end++;
    }
    const count = end - start;
    const length = (count - 1) * stride + first.bytes.length;
    yield { firstPage: first.page, count, bytes: new Uint8Array(first.bytes.buffer, first.bytes.byteOffset, length), stride: count > 1 ? stride : pageSize };
    start = end;
  }
}

function checkName(name: string): void {
  const problem = nameProblem(name);
  if (problem) throw new PStoreError("EINVAL", problem);
}

/** The CA as PEM text, read once: a bad path is EINVAL now, not a connection failure later. */
function readCa(ca: string | undefined): string | undefined {
  if (ca === undefined || ca.includes("-----BEGIN")) return ca;
  try {
    return readFileSync(ca, "utf8");
  } catch (error) {
    throw new PStoreError("EINVAL", `cannot read the TLS CA ${ca}: ${(error as Error).message}`);
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  // setTimeout, cleared on settle: a pending Bun.sleep would keep the process alive.
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expiry = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new PStoreError("EUNAVAILABLE", `no reply within ${ms} ms`)), ms);
  });
  return Promise.race([promise, expiry]).finally(() => clearTimeout(timer));
}

function randomSessionId(): number {
  const words = crypto.getRandomValues(new Uint32Array(2));
  // 53 bits: exact as a JS number and on the wire (u53); never 0 (the system session).
  return (words[0]! & 0x1f_ffff) * 0x1_0000_0000 + words[1]! || 1;
}
