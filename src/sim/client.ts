/**
 * A simulated client: a small model of src/client (ClusterLink + Store).
 *
 * Protocol, as the real client does it: requests go to the head, replies come
 * from the tail (subscribed with the request numbers still unanswered); on a
 * broken head/tail connection, a config message that differs from what we
 * know, or a request unanswered for UNANSWERED_MS, it finds the chain again
 * (asking each known server in turn) and resends every unanswered request
 * with its original number. A waiting acquire gets "queued" first, its grant
 * later; it is asked about again every QUEUED_RECHECK_MS and on every reconnect
 * (the head deduplicates; an expired session answers ESESSION). A timed-out wait is withdrawn
 * with a cancel; a grant arriving after that is ignored (the cancel released it).
 *
 * Workload: sequential tasks, mostly increments of shared and private
 * counters (write hold, read the 4-byte value, release the page with value+1),
 * some reads, creates/deletes/writes of extra data, timed-out waits, and the
 * odd session close. Everything a client saw goes into the History.
 */
import type { History } from "../check";
import type { Op, PageWrite, Reply, ReplyMessage, Welcome } from "../wire";
import { fnvBytes } from "./hash";
import type { ClientConn } from "./network";
import type { Rng } from "./prng";

/** As in src/client/cluster.ts. */
export const UNANSWERED_MS = 1500;
const WATCH_EVERY_MS = 250;
const PROBE_TIMEOUT_MS = 1000;
const QUEUED_RECHECK_MS = 3000;
export const FAILOVER_TIMEOUT_MS = 30_000;

export interface ClientSettings {
  segmentSize: number;
  pageSize: number;
  /** Counters every client increments. */
  sharedCounters: string[];
  /** Names of the extra data clients create, write and delete. */
  extras: string[];
}

export interface ClientHost {
  readonly nowMs: number;
  /** Now, in the History's nanoseconds: strictly increasing within a run. */
  timeNs(): number;
  readonly serverIds: number[];
  readonly history: History;
  /** Opens a connection to a server and sends the hello; the welcome or a close follows. */
  dial(client: SimClient, serverId: number): ClientConn;
  send(client: SimClient, conn: ClientConn, message: import("../wire").Message): void;
  close(client: SimClient, conn: ClientConn): void;
  trace(what: string, detail?: string | (() => string)): void;
  fail(invariant: string, message: string): void;
  /** The session is gone or the client gave up: start a fresh incarnation later. */
  restartLater(client: SimClient, why: string): void;
}

interface Pending {
  op: Op;
  queued: boolean;
  cancelled: boolean;
  sentAtMs: number;
  /** The final reply (not "queued"); not called for a cancelled acquire's grant. */
  done(reply: Reply, pages: PageWrite[], expectedHash: number | undefined): void;
}

interface CacheEntry {
  firstPage: number;
  pageCount: number;
  createdSeq: number;
  version: number;
}

interface Dial {
  conn: ClientConn;
  deadlineMs: number;
  then(conn: ClientConn | null, welcome: Welcome | null): void;
}

interface Refresh {
  deadlineMs: number;
  candidates: number[];
  index: number;
  pauseMs: number;
  waitUntilMs: number;
  busy: boolean;
}

/** A hold the client has, as it will be recorded. */
interface HeldHold {
  holdId: number;
  key: string;
  mode: "read" | "write";
  grantedNs: number;
  /** Only counters and their reads go into the History. */
  recorded: boolean;
}

type TaskKind = "open" | "setup" | "increment" | "read" | "extra-create" | "extra-delete" | "extra-write" | "extra-read" | "close";

interface Task {
  kind: TaskKind;
  key: string;
  /** Request number of the acquire, while it waits. */
  acquireReqNo: number;
  acquireDeadlineMs: number;
  cancelSent: boolean;
  releaseAtMs: number;
  hold: HeldHold | null;
  /** The rmw or read recorded in the History, while its outcome is open. */
  opId: number;
  acquireSentNs: number;
  /** Setup: counters still to create. */
  toCreate: string[];
}

export class SimClient {
  alive = true;
  paused = false;
  /** No new tasks (the run is winding down). */
  stopping = false;
  readonly name: string;
  opened = false;
  private sessionTimeoutMs = 0;
  head: ClientConn | null = null;
  tail: ClientConn | null = null;
  private chain: string[] = [];
  private epoch = -1;
  private refreshing: Refresh | null = null;
  private readonly dials = new Map<number, Dial>();
  readonly pending = new Map<number, Pending>();
  private nextReqNo = 1;
  private readonly segment: Uint8Array;
  private readonly cache = new Map<string, CacheEntry>();
  task: Task | null = null;
  private nextTaskAtMs = 0;
  private lastHeartbeatMs = 0;
  private lastWatchMs = 0;
  /** Deliveries held back while the process is paused. */
  readonly inbox: (() => void)[] = [];
  readonly conns = new Set<ClientConn>();
  stats = { increments: 0, reads: 0, timeouts: 0, refreshes: 0 };

  constructor(
    readonly slot: number,
    readonly incarnation: number,
    readonly session: number,
    private readonly settings: ClientSettings,
    private readonly host: ClientHost,
    private readonly rng: Rng,
  ) {
    this.name = `${slot}.${incarnation}`;
    this.segment = new Uint8Array(settings.segmentSize);
  }

  get privateCounter(): string {
    return `p${this.slot}`;
  }

  // ---- lifecycle -----------------------------------------------------------------

  start(): void {
    this.refresh();
    this.startTask("open");
  }

  /** The process died: whatever it had in flight has an unknown outcome. */
  crash(): void {
    this.alive = false;
    this.endTaskUnknown();
    for (const conn of this.conns) this.host.close(this, conn);
    this.conns.clear();
  }

  /** Work is done when no task runs and no request waits for a reply. */
  get idle(): boolean {
    return this.task === null && this.pending.size === 0;
  }

  // ---- time ----------------------------------------------------------------------

  nextWakeMs(): number {
    if (!this.alive || this.paused) return Infinity;
    let at = Infinity;
    const r = this.refreshing;
    if (r && !r.busy) at = Math.min(at, r.waitUntilMs);
    for (const dial of this.dials.values()) at = Math.min(at, dial.deadlineMs);
    if (this.opened) at = Math.min(at, this.lastHeartbeatMs + this.heartbeatEveryMs());
    for (const p of this.pending.values()) {
      const dueMs = p.sentAtMs + (p.queued ? QUEUED_RECHECK_MS : UNANSWERED_MS);
      at = Math.min(at, Math.max(this.lastWatchMs + WATCH_EVERY_MS, dueMs));
    }
    const task = this.task;
    if (task) {
      if (task.acquireReqNo > 0 && !task.cancelSent && task.acquireDeadlineMs < Infinity) at = Math.min(at, task.acquireDeadlineMs);
      if (task.hold && task.releaseAtMs < Infinity) at = Math.min(at, task.releaseAtMs);
    } else if (this.opened && !this.stopping) at = Math.min(at, this.nextTaskAtMs);
    return at;
  }

  private heartbeatEveryMs(): number {
    return Math.max(50, Math.floor(this.sessionTimeoutMs / 4));
  }

  /** Timers that are due. */
  onWake(): void {
    if (!this.alive || this.paused) return;
    const now = this.host.nowMs;
    const r = this.refreshing;
    if (r && !r.busy && now >= r.waitUntilMs) this.advanceRefresh();
    for (const dial of [...this.dials.values()]) {
      if (now >= dial.deadlineMs) this.failDial(dial.conn);
    }
    if (this.opened && now >= this.lastHeartbeatMs + this.heartbeatEveryMs()) {
      this.lastHeartbeatMs = now;
      if (this.head && !this.head.closed) this.host.send(this, this.head, { type: "heartbeat", body: { session: this.session, doneBelow: this.doneBelow() } });
    }
    if (now >= this.lastWatchMs + WATCH_EVERY_MS) {
      this.lastWatchMs = now;
      this.watchUnanswered();
    }
    const task = this.task;
    if (task) {
      if (task.acquireReqNo > 0 && !task.cancelSent && now >= task.acquireDeadlineMs) this.giveUpWait(task);
      if (task.hold && now >= task.releaseAtMs) this.release(task);
    } else if (this.opened && !this.stopping && now >= this.nextTaskAtMs) {
      this.startTask(this.pickTask());
    }
  }

  private watchUnanswered(): void {
    const now = this.host.nowMs;
    for (const [reqNo, p] of this.pending) {
      if (p.queued && now - p.sentAtMs > QUEUED_RECHECK_MS) {
        // Still queued? The head deduplicates, and answers ESESSION if the session expired.
        p.sentAtMs = now;
        this.sendRequest(reqNo, p.op);
      } else if (!p.queued && now - p.sentAtMs > UNANSWERED_MS) {
        p.sentAtMs = now;
        this.host.trace(`client ${this.name}: unanswered, looking for the chain again`);
        this.refresh();
        return;
      }
    }
  }

  // ---- finding the chain ---------------------------------------------------------

  private refresh(): void {
    if (this.refreshing) return;
    this.stats.refreshes++;
    const now = this.host.nowMs;
    this.refreshing = { deadlineMs: now + FAILOVER_TIMEOUT_MS, candidates: this.candidates(), index: 0, pauseMs: 20, waitUntilMs: now, busy: false };
    this.advanceRefresh();
  }

  private candidates(): number[] {
    const ids = [...this.chain.map(Number), ...this.host.serverIds];
    return [...new Set(ids)];
  }

  private advanceRefresh(): void {
    const r = this.refreshing;
    if (!r || r.busy) return;
    const now = this.host.nowMs;
    if (r.index >= r.candidates.length) {
      // A whole round failed: pause, then ask every server again, until the failover timeout.
      if (now < r.waitUntilMs) return;
      if (now > r.deadlineMs) {
        this.refreshing = null;
        this.host.restartLater(this, "no serving chain within the failover timeout (EUNAVAILABLE)");
        return;
      }
      r.index = 0;
      r.candidates = this.candidates();
    }
    const serverId = r.candidates[r.index++]!;
    r.busy = true;
    this.tryChainVia(serverId, (found) => {
      if (this.refreshing !== r) return;
      r.busy = false;
      if (found) {
        this.refreshing = null;
        return;
      }
      if (r.index >= r.candidates.length) {
        r.waitUntilMs = this.host.nowMs + r.pauseMs;
        r.pauseMs = Math.min(r.pauseMs * 2, 200);
        return;
      }
      this.advanceRefresh();
    });
  }

  private tryChainVia(serverId: number, then: (found: boolean) => void): void {
    this.dial(serverId, (probe, welcome) => {
      if (!probe || !welcome) return then(false);
      const { chain, epoch } = welcome;
      if (chain.length === 0) {
        this.closeConn(probe);
        return then(false);
      }
      const opened: ClientConn[] = [probe];
      const reuse = (id: number, next: (conn: ClientConn | null) => void) => {
        const existing = opened.find((c) => c.serverId === id);
        if (existing) return next(existing);
        this.dial(id, (conn) => {
          if (conn) opened.push(conn);
          next(conn);
        });
      };
      const fail = () => {
        for (const conn of opened) this.closeConn(conn);
        then(false);
      };
      reuse(Number(chain[0]), (head) => {
        if (!head) return fail();
        reuse(Number(chain[chain.length - 1]), (tail) => {
          if (!tail) return fail();
          for (const conn of opened) if (conn !== head && conn !== tail) this.closeConn(conn);
          this.install(head, tail, chain, epoch);
          then(true);
        });
      });
    });
  }

  private dial(serverId: number, then: Dial["then"]): void {
    const conn = this.host.dial(this, serverId);
    this.conns.add(conn);
    this.dials.set(conn.id, { conn, deadlineMs: this.host.nowMs + PROBE_TIMEOUT_MS, then });
  }

  private failDial(conn: ClientConn): void {
    const dial = this.dials.get(conn.id);
    if (!dial) return;
    this.dials.delete(conn.id);
    this.closeConn(conn);
    dial.then(null, null);
  }

  private closeConn(conn: ClientConn): void {
    if (!conn.closed) this.host.close(this, conn);
    this.conns.delete(conn);
  }

  private install(head: ClientConn, tail: ClientConn, chain: string[], epoch: number): void {
    for (const old of [this.head, this.tail]) if (old && old !== head && old !== tail) this.closeConn(old);
    this.head = head;
    this.tail = tail;
    this.chain = chain;
    this.epoch = epoch;
    this.host.trace(`client ${this.name}: chain e${epoch} [${chain}]`);
    this.host.send(this, tail, { type: "subscribe", body: { session: this.session, waiting: [...this.pending.keys()] } });
    const now = this.host.nowMs;
    for (const [reqNo, p] of this.pending) {
      p.sentAtMs = now;
      this.sendRequest(reqNo, p.op);
    }
  }

  // ---- messages --------------------------------------------------------------------

  onConnClosed(conn: ClientConn): void {
    this.conns.delete(conn);
    if (this.dials.has(conn.id)) {
      this.failDial(conn);
      return;
    }
    if (conn === this.head || conn === this.tail) this.refresh();
  }

  onMessage(conn: ClientConn, message: import("../wire").Message, expectedHash: number | undefined): void {
    switch (message.type) {
      case "welcome": {
        const dial = this.dials.get(conn.id);
        if (!dial) return;
        this.dials.delete(conn.id);
        conn.welcomed = true;
        dial.then(conn, message.body);
        return;
      }
      case "reply":
        this.onReply(message.body, expectedHash);
        return;
      case "config":
        if (message.body.epoch !== this.epoch || message.body.chain.join() !== this.chain.join()) this.refresh();
        return;
      case "error":
        // A server closes a connection silent for too long (a long pause): the close follows.
        if (message.body.code === "ETIMEDOUT") return;
        this.host.fail("sim", `server ${conn.serverId} refused client ${this.name}: ${message.body.code} ${message.body.message}`);
        return;
      default:
        this.host.fail("sim", `client ${this.name} got ${message.type}`);
    }
  }

  private onReply(body: ReplyMessage, expectedHash: number | undefined): void {
    const p = this.pending.get(body.reqNo);
    if (!p || body.session !== this.session) return; // a duplicate after failover
    if (body.reply.type === "queued") {
      p.queued = true;
      return;
    }
    if (body.reply.type === "error" && body.reply.code === "EUNAVAILABLE") {
      // --quorum majority: the head holds no majority now. It answers before deduplicating,
      // so an earlier copy may have been applied: this says nothing. Keep waiting, and look
      // for the chain again when the request counts as unanswered.
      return;
    }
    this.pending.delete(body.reqNo);
    if (body.reply.type === "error" || !p.cancelled) p.done(body.reply, body.pages, expectedHash);
  }

  /** Sends a request for `task`; `done` runs only while that task is still the current one. */
  private request(task: Task, op: Op, done: Pending["done"]): number {
    const reqNo = this.nextReqNo++;
    const guarded: Pending["done"] = (reply, pages, expectedHash) => {
      if (this.task === task && this.alive) done(reply, pages, expectedHash);
    };
    this.pending.set(reqNo, { op, queued: false, cancelled: false, sentAtMs: this.host.nowMs, done: guarded });
    this.sendRequest(reqNo, op);
    return reqNo;
  }

  private sendRequest(reqNo: number, op: Op): void {
    if (this.head && !this.head.closed) {
      this.host.send(this, this.head, { type: "request", body: { session: this.session, reqNo, doneBelow: this.doneBelow(), op } });
    }
  }

  private doneBelow(): number {
    let lowest = this.nextReqNo;
    for (const reqNo of this.pending.keys()) lowest = Math.min(lowest, reqNo);
    return lowest;
  }

  // ---- tasks ---------------------------------------------------------------------

  private pickTask(): TaskKind {
    const roll = this.rng.next();
    if (roll < 0.45) return "increment";
    if (roll < 0.6) return "read";
    if (roll < 0.66) return "extra-create";
    if (roll < 0.7) return "extra-delete";
    if (roll < 0.8) return "extra-write";
    if (roll < 0.84) return "extra-read";
    if (roll < 0.845) return "close";
    return "increment";
  }

  private startTask(kind: TaskKind): void {
    const task: Task = {
      kind,
      key: "",
      acquireReqNo: 0,
      acquireDeadlineMs: Infinity,
      cancelSent: false,
      releaseAtMs: Infinity,
      hold: null,
      opId: -1,
      acquireSentNs: 0,
      toCreate: [],
    };
    this.task = task;
    switch (kind) {
      case "open":
        this.request(task, { type: "open_session", timeoutMs: 0 }, (reply) => this.onOpened(reply));
        break;
      case "setup":
        task.toCreate = [...this.settings.sharedCounters, this.privateCounter];
        this.createNext(task);
        break;
      case "increment":
        task.key = this.rng.chance(0.65) ? this.rng.pick(this.settings.sharedCounters) : this.privateCounter;
        this.acquire(task, "write");
        break;
      case "read":
        task.key = this.rng.chance(0.8) ? this.rng.pick(this.settings.sharedCounters) : this.privateCounter;
        this.acquire(task, "read");
        break;
      case "extra-create": {
        const name = this.rng.pick(this.settings.extras);
        const size = this.rng.chance(0.1) ? this.settings.segmentSize : 1 + this.rng.int(this.settings.pageSize * 8);
        this.request(task, { type: "create", name, size }, (reply) => this.finishOrLose(reply));
        break;
      }
      case "extra-delete":
        this.request(task, { type: "delete", name: this.rng.pick(this.settings.extras) }, (reply) => this.finishOrLose(reply));
        break;
      case "extra-write":
      case "extra-read":
        task.key = this.rng.pick(this.settings.extras);
        this.acquire(task, kind === "extra-write" ? "write" : "read");
        break;
      case "close":
        this.request(task, { type: "close_session" }, (reply) => {
          this.task = null;
          this.host.restartLater(this, reply.type === "ok" ? "closed its session" : `close_session: ${describe(reply)}`);
        });
        break;
    }
  }

  private finishOrLose(reply: Reply): void {
    if (reply.type === "error" && reply.code === "ESESSION") this.sessionLost();
    else this.finishTask();
  }

  private finishTask(): void {
    this.task = null;
    this.nextTaskAtMs = this.host.nowMs + (this.rng.chance(0.9) ? this.rng.next() * 40 : this.rng.next() * 400);
  }

  private onOpened(reply: Reply): void {
    if (reply.type !== "session") {
      this.task = null;
      this.host.restartLater(this, `open_session: ${describe(reply)}`);
      return;
    }
    this.opened = true;
    this.sessionTimeoutMs = reply.timeoutMs;
    this.lastHeartbeatMs = this.host.nowMs;
    this.task = null;
    this.startTask("setup");
  }

  private createNext(task: Task): void {
    const name = task.toCreate.shift();
    if (name === undefined) return this.finishTask();
    this.request(task, { type: "create", name, size: 4 }, (reply) => {
      if (reply.type === "error" && reply.code === "ESESSION") return this.sessionLost();
      if (reply.type === "error" && reply.code !== "EEXIST") this.host.fail("sim", `client ${this.name} could not create ${name}: ${describe(reply)}`);
      this.createNext(task);
    });
  }

  private acquire(task: Task, mode: "read" | "write"): void {
    const cached = this.cache.get(task.key);
    const op: Op = {
      type: "acquire",
      name: task.key,
      mode,
      knownCreatedSeq: cached ? cached.createdSeq : -1,
      cachedVersion: cached ? cached.version : -1,
    };
    if (this.rng.chance(0.25)) task.acquireDeadlineMs = this.host.nowMs + 20 + this.rng.next() * 600;
    task.acquireSentNs = this.host.timeNs();
    task.acquireReqNo = this.request(task, op, (reply, pages, expectedHash) => {
      task.acquireReqNo = 0;
      if (reply.type === "granted") return this.onGranted(task, reply, pages, expectedHash);
      if (reply.type === "error" && reply.code === "ESESSION") return this.sessionLost();
      this.finishTask(); // ENOENT, EDEADLK, ELIMIT: nothing held
    });
  }

  /** The wait timed out: withdraw it (as Store.watchWait does) and end the task once the cancel is applied. */
  private giveUpWait(task: Task): void {
    const p = this.pending.get(task.acquireReqNo);
    if (!p) return;
    p.cancelled = true;
    task.cancelSent = true;
    this.stats.timeouts++;
    this.host.trace(`client ${this.name}: wait for ${task.key} timed out, cancelling ${task.acquireReqNo}`);
    const acquireReqNo = task.acquireReqNo;
    this.request(task, { type: "cancel", acquireReqNo }, (reply) => {
      if (reply.type === "error" && reply.code === "ESESSION") return this.sessionLost();
      // The cancel is applied: no answer will come for the acquire (as ClusterLink.forget).
      this.pending.delete(acquireReqNo);
      task.acquireReqNo = 0;
      this.finishTask();
    });
  }

  private onGranted(task: Task, reply: Extract<Reply, { type: "granted" }>, pages: PageWrite[], expectedHash: number | undefined): void {
    const view = this.mapGrant(reply, pages);
    if (expectedHash !== undefined && hashView(view, this.settings.pageSize) !== expectedHash) {
      this.host.fail("4", `client ${this.name} was granted ${reply.name} (hold ${reply.holdId}, version ${reply.version}, sendAfter ${reply.sendAfter}) but its bytes differ from the tail's: a stale cache or a wrong page version`);
    }
    const counter = this.isCounter(reply.name);
    const hold: HeldHold = { holdId: reply.holdId, key: reply.name, mode: reply.mode, grantedNs: this.host.timeNs(), recorded: counter };
    task.hold = hold;
    if (counter) {
      const value = new DataView(view.buffer, view.byteOffset, 4).getInt32(0, true);
      if (task.kind === "increment") {
        task.opId = this.host.history.invoke(this.name, { kind: "rmw", key: reply.name, expected: value, value: value + 1 }, hold.grantedNs);
        new DataView(view.buffer, view.byteOffset, 4).setInt32(0, value + 1, true);
      } else {
        const id = this.host.history.invoke(this.name, { kind: "read", key: reply.name }, task.acquireSentNs);
        this.host.history.ok(id, value, hold.grantedNs);
        this.stats.reads++;
      }
    } else if (reply.mode === "write") {
      // Scribble on a page or two of the extra datum.
      const pageCount = Math.ceil(reply.size / this.settings.pageSize);
      for (let i = 0; i < 2; i++) {
        const at = this.rng.int(pageCount) * this.settings.pageSize + this.rng.int(this.settings.pageSize);
        if (at < view.length) view[at] = 1 + this.rng.int(255);
      }
    }
    const long = this.rng.chance(0.04);
    task.releaseAtMs = this.host.nowMs + (long ? 100 + this.rng.next() * 1500 : this.rng.next() * 20);
  }

  private isCounter(name: string): boolean {
    return this.settings.sharedCounters.includes(name) || /^p\d+$/.test(name);
  }

  private mapGrant(reply: Extract<Reply, { type: "granted" }>, pages: PageWrite[]): Uint8Array {
    const pageSize = this.settings.pageSize;
    const firstPage = reply.offset / pageSize;
    const pageCount = Math.ceil(reply.size / pageSize);
    for (const [other, entry] of this.cache) {
      if (other !== reply.name && entry.firstPage < firstPage + pageCount && firstPage < entry.firstPage + entry.pageCount) this.cache.delete(other);
    }
    for (const page of pages) this.segment.set(page.bytes, page.page * pageSize);
    this.cache.set(reply.name, { firstPage, pageCount, createdSeq: reply.createdSeq, version: reply.version });
    return this.segment.subarray(reply.offset, reply.offset + pageCount * pageSize);
  }

  private release(task: Task): void {
    const hold = task.hold!;
    task.releaseAtMs = Infinity;
    const pages: PageWrite[] = [];
    const pageSize = this.settings.pageSize;
    const entry = this.cache.get(hold.key);
    if (hold.mode === "write" && entry) {
      // Ship the pages the task wrote: the counter's page, or the whole extra datum's pages.
      const count = this.isCounter(hold.key) ? 1 : entry.pageCount;
      for (let i = 0; i < count; i++) {
        const page = entry.firstPage + i;
        pages.push({ page, bytes: this.segment.slice(page * pageSize, (page + 1) * pageSize) });
      }
    }
    const releasedNs = this.host.timeNs();
    const createdSeq = entry?.createdSeq;
    this.request(task, { type: "release", holdId: hold.holdId, pages }, (reply) => {
      task.hold = null;
      if (reply.type === "released") {
        if (hold.recorded) {
          this.host.history.holdGranted(this.name, hold.key, hold.mode, hold.holdId, hold.grantedNs);
          this.host.history.holdReleased(this.name, hold.key, hold.holdId, releasedNs);
        }
        if (task.opId >= 0) {
          this.host.history.ok(task.opId, undefined, this.host.timeNs());
          task.opId = -1;
          this.stats.increments++;
        }
        const cached = this.cache.get(hold.key);
        if (cached && cached.createdSeq === createdSeq) cached.version = reply.version;
        return this.finishTask();
      }
      // Refused: the servers did not take these bytes, and the hold had ended (expired or stale).
      if (hold.mode === "write") this.cache.delete(hold.key);
      const code = reply.type === "error" ? reply.code : reply.type;
      if (task.opId >= 0) {
        // ESESSION: the session is gone, but an earlier copy of this release may have been applied.
        if (code === "ESESSION") this.host.history.unknown(task.opId, this.host.timeNs());
        else this.host.history.fail(task.opId, code, this.host.timeNs());
        task.opId = -1;
      }
      if (code === "ESESSION") return this.sessionLost();
      if (code !== "ESTALE") this.host.fail("sim", `client ${this.name}: release of hold ${hold.holdId} on ${hold.key}: ${describe(reply)}`);
      this.finishTask();
    });
  }

  /** ESESSION: the session expired (or the head never knew it). Start over as a new incarnation. */
  private sessionLost(): void {
    this.endTaskUnknown();
    this.host.restartLater(this, "session lost (ESESSION)");
  }

  /** Stop: the open operation has an unknown outcome; a hold in use is not recorded (its end is unknown). */
  private endTaskUnknown(): void {
    const task = this.task;
    this.task = null;
    if (task && task.opId >= 0) {
      this.host.history.unknown(task.opId, this.host.timeNs());
      task.opId = -1;
    }
  }

  /** Stop talking: used when this incarnation is replaced. */
  retire(): void {
    this.endTaskUnknown();
    this.alive = false;
    for (const conn of this.conns) this.host.close(this, conn);
    this.conns.clear();
    this.pending.clear();
  }
}

function describe(reply: Reply): string {
  return reply.type === "error" ? `${reply.code} ${reply.message}` : reply.type;
}

function hashView(view: Uint8Array, pageSize: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < view.length; i += pageSize) h = fnvBytes(view.subarray(i, i + pageSize), h);
  return h;
}
