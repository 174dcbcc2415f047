/**
 * The pure core driven as clients and servers would drive it, for the core's tests
 * (core*.test.ts, replica.test.ts, configurations.test.ts).
 */
import { type Output, Replica, StoreState, type Update } from "../../src/core";
import type { Ready } from "../../src/core/ready";
import type { Mode, Op, PageWrite, Reply, Request } from "../../src/wire";

/** Small pages keep every test fast; the core takes the page size as a parameter. */
export const PS = 64;

// ---- a driver that speaks for clients ------------------------------------

export interface Step {
  reqNo: number;
  outputs: Output[];
  /** The reply to this request in this step ("queued" while an acquire waits). */
  reply: Reply | null;
}

export const NO_CACHE = { knownCreatedSeq: -1, cachedVersion: -1 };

export class Driver {
  readonly state: StoreState;
  private readonly reqNos = new Map<number, number>();

  constructor(pageCount = 16) {
    this.state = new StoreState(pageCount * PS, PS);
  }

  /** Applies an update with the next sequence number. */
  apply(session: number, reqNo: number, op: Op, doneBelow = 0): Output[] {
    return this.state.apply({ seq: this.state.appliedSeq + 1, epoch: 1, session, reqNo, doneBelow, op });
  }

  /** Sends `op` as `session`'s next request. */
  send(session: number, op: Op, doneBelow = 0): Step {
    const reqNo = (this.reqNos.get(session) ?? 0) + 1;
    this.reqNos.set(session, reqNo);
    return this.resend(session, reqNo, op, doneBelow);
  }

  /** Applies a request with a given number (e.g. a client resending after failover). */
  resend(session: number, reqNo: number, op: Op, doneBelow = 0): Step {
    const outputs = this.apply(session, reqNo, op, doneBelow);
    return { reqNo, outputs, reply: replyTo(outputs, session, reqNo) };
  }

  open(session: number, timeoutMs = 1000): Reply | null {
    return this.send(session, { type: "open_session", timeoutMs }).reply;
  }

  create(session: number, name: string, size: number): Reply | null {
    return this.send(session, { type: "create", name, size }).reply;
  }

  delete(session: number, name: string): Reply | null {
    return this.send(session, { type: "delete", name }).reply;
  }

  acquire(session: number, name: string, mode: Mode, cache = NO_CACHE): Step {
    return this.send(session, { type: "acquire", name, mode, ...cache });
  }

  /** Acquires and expects an immediate grant; returns the hold id. */
  hold(session: number, name: string, mode: Mode): number {
    const step = this.acquire(session, name, mode);
    return holdIdOf(step.reply);
  }

  release(session: number, holdId: number, pages: PageWrite[] = []): Step {
    return this.send(session, { type: "release", holdId, pages });
  }

  cancel(session: number, acquireReqNo: number): Step {
    return this.send(session, { type: "cancel", acquireReqNo });
  }

  /** The head's monitor expiring a session (system session 0). */
  expire(session: number): Output[] {
    return this.apply(0, 0, { type: "expire_session", session });
  }

  datum(name: string) {
    const datum = this.state.data.get(name);
    if (!datum) throw new Error(`no datum ${name}`);
    return datum;
  }

  /** The datum's committed bytes (what the next grant would show). */
  bytes(name: string): Uint8Array {
    const datum = this.datum(name);
    const out = new Uint8Array(datum.pageCount * PS);
    for (let i = 0; i < datum.pageCount; i++) out.set(this.state.pages.read(datum.firstPage + i), i * PS);
    return out.subarray(0, datum.size);
  }
}

export function replyTo(outputs: Output[], session: number, reqNo: number): Reply | null {
  const mine = outputs.filter((o) => o.session === session && o.reqNo === reqNo);
  if (mine.length > 1) throw new Error(`${mine.length} replies to ${session}/${reqNo}`);
  return mine[0]?.reply ?? null;
}

export function holdIdOf(reply: Reply | null): number {
  if (reply?.type !== "granted") throw new Error(`expected a grant, got ${JSON.stringify(reply)}`);
  return reply.holdId;
}

/** The reply's type or error code; "waiting" for an acquire that is queued (no grant yet). */
export function codeOf(reply: Reply | null): string {
  if (reply === null || reply.type === "queued") return "waiting";
  return reply.type === "error" ? reply.code : reply.type;
}

/** "session:mode" of every grant in a step's outputs, in output order. */
export function grants(outputs: Output[]): string[] {
  return outputs.flatMap((o) => (o.reply.type === "granted" ? [`${o.session}:${o.reply.mode}`] : []));
}

export function pageOf(page: number, fill: number): PageWrite {
  return { page, bytes: new Uint8Array(PS).fill(fill) };
}

/** What a user can observe of a store (no per-session bookkeeping). */
export function observable(state: StoreState) {
  const pages: string[] = [];
  for (let page = 0; page < state.pages.pageCount; page++) {
    pages.push(`${state.pages.pageSeq[page]}:${Buffer.from(state.pages.read(page)).toString("hex")}`);
  }
  return {
    data: [...state.data.values()].map((d) => ({
      ...d,
      holders: d.holders.map((h) => ({ ...h })),
      queue: d.queue.map((w) => ({ ...w })),
    })),
    free: state.allocator.freeRuns(),
    holds: [...state.holds.entries()].map(([id, h]) => [id, { ...h }]),
    nextHoldId: state.nextHoldId,
    pages,
  };
}

/** Everything a replica holds, for comparing replicas. */
export function everything(state: StoreState) {
  return {
    ...observable(state),
    appliedSeq: state.appliedSeq,
    sessions: [...state.sessions.values()].map((s) => ({
      id: s.id,
      timeoutMs: s.timeoutMs,
      doneBelow: s.doneBelow,
      holds: [...s.holds],
      waiting: [...s.waiting],
      replies: [...s.replies],
    })),
  };
}




/** A store with one datum "d" of 2 pages and sessions 1..n open. */
export function withDatum(sessions = 6): Driver {
  const d = new Driver(8);
  for (let s = 1; s <= sessions; s++) d.open(s);
  d.create(1, "d", 2 * PS);
  return d;
}

// ---- session monitor and replica -------------------------------------------

export function request(session: number, reqNo: number, op: Op, doneBelow = 0): Request {
  return { session, reqNo, doneBelow, op };
}

export function logged(ready: Ready): Update[] {
  return ready.persist.flatMap((p) => (p.kind === "log" ? [p.update] : []));
}

export function replied(ready: Ready): Output[] {
  return ready.send.flatMap((o) => (o.kind === "reply" ? [{ session: o.session, reqNo: o.reqNo, reply: o.reply }] : []));
}

export const REPLICA_OPTIONS = { sessionTimeoutMsDefault: 1000, heartbeatMs: 100, suspectMs: 1000 };

/** A server alone in its cluster: its first tick forms a chain of one (head and tail). */
export function singleServer(state = new StoreState(16 * PS, PS), nowMs = 0): Replica {
  const replica = new Replica({ selfId: 1, peers: [1], ...REPLICA_OPTIONS }, state);
  replica.onTick(nowMs);
  if (!replica.isHead || !replica.isTail) throw new Error("a lone server did not form its chain");
  return replica;
}
