/**
 * A client's link to the chain: requests go to the head, replies and queries
 * come from the tail. When a connection breaks, a server redirects us, or a
 * request goes unanswered, it fetches the configuration from any live server,
 * reconnects, subscribes again and resends every unanswered request with its
 * original number; the servers deduplicate, so each applies once.
 * Transport-free: connections, timers and the clock are the ClientHost's (Bun
 * sockets in production, the simulated network and virtual clock in src/sim).
 */
import { assert, present } from "../assert";
import { DELIVERED_GRANTS_KEPT_MAX, PROBE_TIMEOUT_MS, QUEUED_RECHECK_MS, UNANSWERED_MS, UNANSWERED_MS_PER_MIB, UNAVAILABLE_RETRY_MS, WATCH_EVERY_MS } from "../constants";
import { PStoreError } from "../errors";
import { type Message, type Op, type QueryKind, type Recall, type ReplyMessage, type Welcome, pagesSize } from "../wire";
import { formatAddresses } from "../net/address";
import { type ClientHost, type ServerConnection, type TimerHandle, remoteError } from "./host";
import { probeAll, withoutCode } from "./probe";


interface PendingRequest {
  op: Op;
  /** The session it was sent for (a lost session is replaced by a new one). */
  session: number;
  resolve(reply: ReplyMessage): void;
  reject(error: Error): void;
  /** The tail said the acquire waits in the datum's queue: no resend needed. */
  queued: boolean;
  /** A cancel was sent: a late grant must be ignored (the cancel released it). */
  cancelled: boolean;
  sentAtMs: number;
  /** Times it went out (a resend may leave its bytes queued on another connection). */
  sends: number;
  /** When it was first sent: an answer proves the head heard the session at or after this. */
  firstSentAtMs: number;
  /** How long it may go unanswered before the chain is looked for again (patienceMs). */
  patienceMs: number;
  /** When a head first answered that it cannot serve (no majority), and what it said. */
  unavailable?: { sinceMs: number; message: string };
  /** Told once when the tail says the acquire waits in the datum's queue (for a wait notice). */
  onQueued?: () => void;
}

interface PendingQuery {
  kind: QueryKind;
  name: string;
  resolve(json: string): void;
  reject(error: Error): void;
}

export class ClusterLink {
  private head: ServerConnection | null = null;
  private tail: ServerConnection | null = null;
  private chain: string[] = [];
  private epoch = -1;
  private refreshing: Promise<void> | null = null;
  private nextReqNo = 1;
  private readonly pending = new Map<number, PendingRequest>();
  /** Ops of requests sent more than once (see sentOnce). */
  private readonly resent = new WeakSet<Op>();
  /** The hold each recent acquire was granted (request number → hold id), to know its duplicates (see onReply). */
  private readonly grantsDelivered = new Map<number, number>();
  private nextQueryId = 1;
  private readonly queries = new Map<number, PendingQuery>();
  private watcher: TimerHandle | null = null;
  private heartbeat: TimerHandle | null = null;
  private retryTimer: TimerHandle | null = null;
  private closedError: PStoreError | null = null;
  /** When the search for a serving chain began; null while connected to one. */
  private searchingSinceMs: number | null = null;
  session = 0;
  /** The first welcome: the segment's geometry. */
  geometry: Welcome | null = null;
  requestsSent = 0;
  /** The servers answered a request of the current session first sent at this time (the cached holds' lease). */
  onAnswered: ((firstSentAtMs: number) => void) | null = null;
  /** The head recalls a cached grant of the current session. */
  onRecall: ((recall: Recall) => void) | null = null;
  /** A grant for the current session that answers no request waiting (see onReply). */
  onStrayGrant: ((reply: Extract<ReplyMessage["reply"], { type: "granted" }>) => void) | null = null;
  /**
   * Called when no serving chain was found within failoverTimeoutMs: what was
   * in flight failed, and the session is given up (see giveUpChain).
   */
  onChainLost: ((error: PStoreError) => void) | null = null;

  constructor(
    private readonly host: ClientHost,
    private readonly servers: string[],
    private readonly connectTimeoutMs: number,
    /** How long to keep looking for a serving chain after a failure. */
    private readonly failoverTimeoutMs: number,
  ) {}

  async open(session: number): Promise<void> {
    this.session = session;
    await this.refresh(this.connectTimeoutMs);
    this.watcher = this.host.every(WATCH_EVERY_MS, () => this.watchUnanswered());
  }

  startHeartbeat(everyMs: number): void {
    this.heartbeat = this.host.every(everyMs, () => {
      const heartbeat = { type: "heartbeat", body: { session: this.session, doneBelow: this.doneBelow() } } as const;
      this.head?.send(heartbeat);
      // The tail ignores it, but closes a connection on which nothing arrives for a session timeout.
      if (this.tail !== this.head) this.tail?.send(heartbeat);
    });
  }

  get reqNoNext(): number {
    return this.nextReqNo;
  }

  request(op: Op, onQueued?: () => void): Promise<ReplyMessage> {
    if (this.closedError) return Promise.reject(this.closedError);
    const reqNo = this.nextReqNo++;
    this.requestsSent++;
    const promise = new Promise<ReplyMessage>((resolve, reject) => {
      const now = this.host.nowMs();
      this.pending.set(reqNo, { op, session: this.session, resolve, reject, queued: false, cancelled: false, sentAtMs: now, sends: 0, firstSentAtMs: now, patienceMs: patienceMs(op), onQueued });
    });
    if (this.head) this.sendRequest(reqNo, present(this.pending.get(reqNo), "a request just made pending"));
    else this.scheduleRefresh(); // the chain was given up: look for it again, install() sends this
    this.updateActivity();
    return promise;
  }

  /** Whether `op`'s request went out once only: answered, none of its bytes can still be queued on a connection. */
  sentOnce(op: Op): boolean {
    return !this.resent.has(op);
  }

  /** Marks an acquire as withdrawn: its grant, if one comes, is not for the caller any more. */
  markCancelled(reqNo: number): boolean {
    const waiting = this.pending.get(reqNo);
    if (!waiting) return false;
    waiting.cancelled = true;
    return true;
  }

  /**
   * The servers applied the cancel of this acquire: no answer will come for it
   * (its stored ECANCELED is not sent), so stop waiting — or `doneBelow` would
   * stay below it forever and the session would fill up with stored replies.
   */
  forget(reqNo: number): void {
    this.pending.delete(reqNo);
    this.updateActivity();
  }

  query(kind: QueryKind, name: string): Promise<string> {
    if (this.closedError) return Promise.reject(this.closedError);
    const queryId = this.nextQueryId++;
    const promise = new Promise<string>((resolve, reject) => this.queries.set(queryId, { kind, name, resolve, reject }));
    if (this.tail) this.tail.send({ type: "query", body: { queryId, kind, name } });
    else this.scheduleRefresh();
    this.updateActivity();
    return promise;
  }

  get isOpen(): boolean {
    return this.closedError === null;
  }

  /** Requests and queries still waiting for an answer. */
  get inFlight(): number {
    return this.pending.size + this.queries.size;
  }

  /** How long this link has been looking for a serving chain; null while it has one. */
  get chainMissingMs(): number | null {
    return this.searchingSinceMs === null ? null : Math.round(this.host.nowMs() - this.searchingSinceMs);
  }

  /** Rejects everything in flight and closes the connections. */
  shutdown(error: PStoreError): void {
    if (!this.closedError) this.closedError = error;
    this.watcher?.cancel();
    this.heartbeat?.cancel();
    this.retryTimer?.cancel();
    for (const waiting of this.pending.values()) waiting.reject(this.closedError);
    this.pending.clear();
    for (const waiting of this.queries.values()) waiting.reject(this.closedError);
    this.queries.clear();
    this.head?.close();
    this.tail?.close();
    this.head = this.tail = null;
  }

  // ---- finding the chain ----------------------------------------------------

  private scheduleRefresh(): void {
    if (this.closedError || this.refreshing) return;
    this.searchingSinceMs ??= this.host.nowMs();
    this.refresh(this.failoverTimeoutMs).catch((error) => this.giveUpChain(error));
  }

  /**
   * No serving chain within failoverTimeoutMs. Only what was in flight fails:
   * the link stays usable and the next call looks for the chain again, so a
   * long-lived client finds the cluster when it comes back. The session is
   * given up (onChainLost): a request that failed here may still have been
   * applied — an acquire granted to nobody — and under a new session such a
   * hold is freed when the old session expires. Errors that retrying cannot
   * fix (EAUTH, EPROTO) still close the link for good.
   */
  private giveUpChain(error: PStoreError): void {
    if (error.code !== "EUNAVAILABLE") return this.shutdown(error);
    for (const waiting of this.pending.values()) waiting.reject(error);
    this.pending.clear();
    for (const waiting of this.queries.values()) waiting.reject(error);
    this.queries.clear();
    this.head?.close();
    this.tail?.close();
    this.head = this.tail = null;
    this.onChainLost?.(error);
  }

  private refresh(budgetMs: number): Promise<void> {
    if (!this.refreshing) {
      this.refreshing = this.reconnect(budgetMs).finally(() => (this.refreshing = null));
    }
    return this.refreshing;
  }

  private async reconnect(budgetMs: number): Promise<void> {
    const deadline = this.host.nowMs() + budgetMs;
    const problems = new Set<string>();
    let pauseMs = 20;
    for (;;) {
      if (this.closedError) throw this.closedError;
      const candidates = [...new Set([...this.chain, ...this.servers])];
      const refused = new Set<string>();
      if (await this.connectNewestChain(candidates, problems, refused)) return;
      // Not connected (at connect, or after giving up) and nobody listens anywhere: say so
      // now. A failover keeps its whole budget: servers restarting refuse for a moment.
      if (this.head === null && refused.size === candidates.length) {
        throw new PStoreError("EUNAVAILABLE", `no server at ${formatAddresses(candidates)} (connection refused) — start one with \`pstore local\``);
      }
      if (this.host.nowMs() > deadline) {
        const detail = [...problems].slice(-3).join("; ");
        throw new PStoreError("EUNAVAILABLE", `no serving pstore chain reachable via ${candidates.join(",")} (${detail}); is the cluster running? try \`pstore local\``);
      }
      await new Promise<void>((resolve) => this.host.after(pauseMs, resolve));
      pauseMs = Math.min(pauseMs * 2, 200);
    }
  }

  /**
   * Asks every candidate for its chain at once and connects to the head and
   * tail of the newest configuration (highest epoch): after a partition a
   * server cut off from the others may still describe its old chain, and only
   * the newest one serves (the servers let it win when they heal, too).
   */
  private async connectNewestChain(candidates: string[], problems: Set<string>, refused: Set<string>): Promise<boolean> {
    const opened = await probeAll(candidates, (address) => this.dial(address), this.host, problems, refused);
    let newest: ServerConnection | null = null;
    for (const probe of opened) {
      if (probe.welcome.chain.length === 0) problems.add(`${probe.address} is not serving yet${probe.welcome.notServing ? ` (${probe.welcome.notServing})` : ""}`);
      else if (!newest || probe.welcome.epoch > newest.welcome.epoch) newest = probe;
    }
    if (!newest) {
      for (const connection of opened) connection.close();
      return false;
    }
    const { chain, epoch } = newest.welcome;
    this.geometry ??= newest.welcome;
    const mismatch = opened.find((probe) => probe.welcome.segmentSize !== present(this.geometry, "geometry is set from the newest welcome").segmentSize);
    if (mismatch) {
      for (const connection of opened) connection.close();
      throw new PStoreError("EPROTO", `${mismatch.address} has a segment of ${mismatch.welcome.segmentSize} bytes, not ${this.geometry.segmentSize}`);
    }
    const reuse = async (target: string) => {
      // A probe may have closed since its welcome (the server died during the grace period).
      const existing = opened.find((c) => c.address === target && c.isOpen);
      if (existing) return existing;
      const connection = await this.dial(target);
      opened.push(connection);
      return connection;
    };
    try {
      assert(chain.length > 0, "a served chain is not empty");
      const head = await reuse(present(chain[0], "chain head"));
      const tail = await reuse(present(chain[chain.length - 1], "chain tail"));
      // Closed already (its onClose came before it was head or tail): installed, it would swallow every request.
      for (const end of [head, tail]) if (!end.isOpen) throw new PStoreError("EUNAVAILABLE", `${end.address} closed the connection`);
      for (const connection of opened) if (connection !== head && connection !== tail) connection.close();
      // Shut down while we dialled: installed, they would stay open on a closed link.
      if (this.closedError) throw this.closedError;
      this.install(head, tail, chain, epoch);
      return true;
    } catch (error) {
      for (const connection of opened) connection.close();
      problems.add(withoutCode((error as Error).message));
      return false;
    }
  }

  private dial(address: string): Promise<ServerConnection> {
    let connection: ServerConnection | null = null;
    return this.host
      .dial(
        address,
        {
          onMessage: (message) => this.onMessage(message),
          onClose: () => {
            if (connection && (connection === this.head || connection === this.tail)) this.scheduleRefresh();
          },
        },
        Math.min(PROBE_TIMEOUT_MS, this.connectTimeoutMs),
      )
      .then((c) => (connection = c));
  }

  private install(head: ServerConnection, tail: ServerConnection, chain: string[], epoch: number): void {
    for (const old of [this.head, this.tail]) if (old && old !== head && old !== tail) old.close();
    this.head = head;
    this.tail = tail;
    this.chain = chain;
    this.epoch = epoch;
    this.searchingSinceMs = null;
    // Replies come from the tail: tell it who we are and what we still wait for.
    tail.send({ type: "subscribe", body: { session: this.session, waiting: [...this.pending.keys()] } });
    const now = this.host.nowMs();
    for (const [reqNo, waiting] of this.pending) {
      waiting.sentAtMs = now;
      this.sendRequest(reqNo, waiting);
    }
    for (const [queryId, waiting] of this.queries) {
      tail.send({ type: "query", body: { queryId, kind: waiting.kind, name: waiting.name } });
    }
    this.updateActivity();
  }

  private sendRequest(reqNo: number, request: PendingRequest): void {
    if (++request.sends > 1) this.resent.add(request.op);
    const body = { session: request.session, reqNo, doneBelow: this.doneBelow(), op: request.op };
    this.head?.send({ type: "request", body });
  }

  /** The servers forgot our session (it expired): continue under a new one. */
  renewSession(session: number): void {
    this.session = session;
    this.tail?.send({ type: "subscribe", body: { session, waiting: [] } });
  }

  private doneBelow(): number {
    let lowest = this.nextReqNo;
    for (const reqNo of this.pending.keys()) lowest = Math.min(lowest, reqNo);
    return lowest;
  }

  private watchUnanswered(): void {
    const now = this.host.nowMs();
    let rechecked = false;
    for (const [reqNo, waiting] of this.pending) {
      if (waiting.unavailable && now - waiting.unavailable.sinceMs > this.failoverTimeoutMs) {
        this.pending.delete(reqNo);
        waiting.reject(new PStoreError("EUNAVAILABLE", `${waiting.unavailable.message}; no other chain found within ${this.failoverTimeoutMs} ms`));
      } else if (waiting.queued && now - waiting.sentAtMs > QUEUED_RECHECK_MS) {
        // Still queued? Asking again costs nothing (the head deduplicates) and learns
        // ESESSION if the session expired meanwhile, or re-queues an acquire that a
        // whole-cluster crash rolled back.
        waiting.sentAtMs = now;
        this.sendRequest(reqNo, waiting);
        rechecked = true;
      } else if (!waiting.queued && now - waiting.sentAtMs > waiting.patienceMs && this.tail?.receivingFrame) {
        // A large answer is arriving (64 MiB take seconds): a refresh would drop it and ask for it again.
        waiting.sentAtMs = now;
      } else if (!waiting.queued && now - waiting.sentAtMs > waiting.patienceMs) {
        waiting.sentAtMs = now;
        this.scheduleRefresh();
        return;
      }
    }
    // The tail may have lost which connection is ours: two subscribes of the session crossed on
    // two connections and the later-arriving one's connection (closed by us) took the binding with
    // it, so the grant was dropped. Subscribing again binds this one and brings back what was answered.
    if (rechecked) this.tail?.send({ type: "subscribe", body: { session: this.session, waiting: [...this.pending.keys()] } });
  }

  // ---- replies --------------------------------------------------------------

  private onMessage(message: Message): void {
    switch (message.type) {
      case "reply":
        this.onReply(message.body);
        break;
      case "queryReply":
        this.onQueryReply(message.body.queryId, message.body.json);
        break;
      case "recall":
        if (message.body.session === this.session) this.onRecall?.(message.body);
        break;
      case "config":
        if (message.body.epoch !== this.epoch || message.body.chain.join() !== this.chain.join()) this.scheduleRefresh();
        break;
      case "error":
        // The server closes this connection after saying why. Silence (ETIMEDOUT: this process was
        // stopped past its session timeout) is worth a reconnect: the close makes us find the chain
        // again, and an expired session is renewed. A refusal (protocol, authentication) is not.
        if (message.body.code !== "ETIMEDOUT") this.shutdown(remoteError(message.body.code, message.body.message));
        break;
    }
    this.updateActivity();
  }

  private onReply(body: ReplyMessage): void {
    const waiting = this.pending.get(body.reqNo);
    if (!waiting || body.session !== waiting.session) {
      // A second grant of an acquire applied again after a rollback (sim seed 223011839): a hold
      // nobody here uses, that would block the datum while we live. A duplicate of the grant the
      // acquire got (resent after a failover, both answers in one read) is that acquire's hold:
      // released as stray before the caller's continuation mapped it, its use went on without a
      // hold at the servers (sim seed 848400136, with coalesced reads).
      const { reply } = body;
      if (reply.type === "granted" && body.session === this.session && this.grantsDelivered.get(body.reqNo) !== reply.holdId) this.onStrayGrant?.(reply);
      return;
    }
    const { reply } = body;
    if (reply.type === "queued") {
      if (waiting.session === this.session) this.onAnswered?.(waiting.firstSentAtMs);
      if (!waiting.queued) waiting.onQueued?.();
      waiting.queued = true;
      waiting.unavailable = undefined; // a serving head took it: it may now wait as long as it must
      return;
    }
    if (reply.type === "error" && reply.code === "EUNAVAILABLE") return this.onUnavailable(waiting, reply.message);
    if (reply.type !== "error" && waiting.session === this.session) this.onAnswered?.(waiting.firstSentAtMs);
    this.pending.delete(body.reqNo);
    // Withdrawn: whatever it got (a grant the cancel releases, the stored ECANCELED a resubscribe
    // brings back) is not the caller's; the cancel's own answer ends the wait (ETIMEDOUT, ECANCELED).
    if (waiting.cancelled) return;
    if (reply.type === "error") return waiting.reject(remoteError(reply.code, reply.message));
    if (reply.type === "granted") {
      this.grantsDelivered.set(body.reqNo, reply.holdId);
      // Duplicates come only for requests in flight at a failover: the last few suffice.
      if (this.grantsDelivered.size > DELIVERED_GRANTS_KEPT_MAX) this.grantsDelivered.delete(this.grantsDelivered.keys().next().value!);
    }
    waiting.resolve(body);
  }

  /**
   * The head did not take the request because it cannot serve (a minority
   * under --quorum majority): nothing was applied, so the request stays
   * pending and is sent again — to the newest chain we can find, which is
   * elsewhere if the majority formed one — until failoverTimeoutMs has passed.
   */
  private onUnavailable(waiting: PendingRequest, message: string): void {
    const now = this.host.nowMs();
    waiting.unavailable ??= { sinceMs: now, message };
    waiting.sentAtMs = now;
    if (this.retryTimer || this.closedError) return;
    this.retryTimer = this.host.after(UNAVAILABLE_RETRY_MS, () => {
      this.retryTimer = null;
      this.scheduleRefresh();
    });
  }

  private onQueryReply(queryId: number, json: string): void {
    const waiting = this.queries.get(queryId);
    if (!waiting) return;
    const parsed = JSON.parse(json);
    const error = parsed && typeof parsed === "object" && !Array.isArray(parsed) ? parsed.error : undefined;
    if (error?.code === "EREDIRECT") return this.scheduleRefresh(); // resent to the right tail
    this.queries.delete(queryId);
    if (error?.code) waiting.reject(remoteError(error.code, error.message));
    else waiting.resolve(json);
  }

  /** Keeps the process alive while work is in flight, lets it exit when idle. */
  private updateActivity(): void {
    const active = this.pending.size > 0 || this.queries.size > 0 || this.refreshing !== null;
    this.head?.setActive(active);
    this.tail?.setActive(active);
  }
}

/** How long a request may go unanswered before the client looks for the chain again: longer for a large one. */
function patienceMs(op: Op): number {
  const bytes = op.type === "release" ? pagesSize(op.pages) : 0;
  return UNANSWERED_MS + (bytes / (1024 * 1024)) * UNANSWERED_MS_PER_MIB;
}
