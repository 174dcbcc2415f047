/**
 * Cached holds (docs/protocol.md#cached-holds) in the pure parts: the replicated state
 * keeps a released hold as the session's cached grant while nobody waits, counts it
 * against conflicting acquires, owes recalls for it, and gives it up on a release with
 * waiters, a give-back, an acquire by its own session, a delete, or the session's end.
 * The head sends the recalls owed, again until answered, and a new head sends them too.
 * The client's GrantCache grants locally only while the servers record the grant as
 * cached and the lease holds, and answers recalls without waiting on the user.
 */
import { describe, expect, test } from "bun:test";
import { GrantCache } from "../src/client/cache";
import { CACHE_LEASE_FRACTION, RECALL_RESEND_MS } from "../src/constants";
import { type Output, Replica, StoreState } from "../src/core";
import type { Ready } from "../src/core/ready";
import { decodeSnapshot, encodeSnapshot } from "../src/core/snapshot";
import type { Mode, Op, Reply } from "../src/wire";

const PS = 64;

class Cluster {
  readonly state = new StoreState(16 * PS, PS);
  private readonly reqNos = new Map<number, number>();

  send(session: number, op: Op): { reqNo: number; outputs: Output[]; reply: Reply | undefined } {
    const reqNo = (this.reqNos.get(session) ?? 0) + 1;
    this.reqNos.set(session, reqNo);
    const outputs = this.state.apply({ seq: this.state.appliedSeq + 1, epoch: 1, session, reqNo, doneBelow: 0, op });
    return { reqNo, outputs, reply: outputs.find((o) => o.session === session && o.reqNo === reqNo)?.reply };
  }

  open(...sessions: number[]): void {
    for (const session of sessions) this.send(session, { type: "open_session", timeoutMs: 1000 });
  }

  acquire(session: number, name: string, mode: Mode, cache = true) {
    return this.send(session, { type: "acquire", name, mode, knownCreatedSeq: -1, cachedVersion: -1, cache });
  }

  /** Acquires and expects a grant now; returns the hold id. */
  hold(session: number, name: string, mode: Mode, cache = true): number {
    const { reply } = this.acquire(session, name, mode, cache);
    if (reply?.type !== "granted") throw new Error(`expected a grant, got ${JSON.stringify(reply)}`);
    return reply.holdId;
  }

  release(session: number, holdId: number, pages: { page: number; bytes: Uint8Array }[] = []) {
    return this.send(session, { type: "release", holdId, pages });
  }

  holdersOf(name: string) {
    return this.state.data.get(name)!.holders.map((h) => ({ session: h.session, mode: h.mode, cached: h.cached }));
  }
}

function withDatum(): Cluster {
  const c = new Cluster();
  c.open(1, 2, 3);
  c.send(1, { type: "create", name: "d", size: PS });
  return c;
}

function page(value: number): { page: number; bytes: Uint8Array } {
  return { page: 0, bytes: new Uint8Array(PS).fill(value) };
}

describe("the replicated state keeps released holds as cached grants", () => {
  test("a release nobody waits for keeps the hold, cached; a non-caching acquire's release does not", () => {
    const c = withDatum();
    const w = c.hold(1, "d", "write");
    expect(c.release(1, w, [page(7)]).reply).toMatchObject({ type: "released", cached: true });
    expect(c.holdersOf("d")).toEqual([{ session: 1, mode: "write", cached: true }]);
    expect(c.state.info(c.state.data.get("d")!)).toMatchObject({ readers: 0, writer: false, cachedReaders: 0, cachedWriter: true, waiters: 0 });
    // A local use ships its pages with the same hold id; the grant stays cached.
    expect(c.release(1, w, [page(8)]).reply).toMatchObject({ type: "released", cached: true });
    expect(c.state.pages.read(0)[0]).toBe(8);
    // Write-cached: a reader waits (and is owed a recall).
    expect(c.acquire(2, "d", "read", false).reply).toEqual({ type: "queued" });
    const plain = new Cluster();
    plain.open(1);
    plain.send(1, { type: "create", name: "p", size: PS });
    const h = plain.hold(1, "p", "write", false);
    expect(plain.release(1, h).reply).toMatchObject({ cached: false });
    expect(plain.holdersOf("p")).toEqual([]);
  });

  test("a cached grant blocks a conflicting acquire, which is owed a recall; the give-back grants it in the same update", () => {
    const c = withDatum();
    const w = c.hold(1, "d", "write");
    c.release(1, w, [page(7)]);
    const waiting = c.acquire(2, "d", "write");
    expect(waiting.reply).toEqual({ type: "queued" });
    expect(c.state.recallsDue()).toEqual([{ session: 1, holdId: w, name: "d" }]);
    // The give-back is a release with no pages: the waiter is granted by it.
    const back = c.release(1, w);
    expect(back.reply).toMatchObject({ type: "released", cached: false });
    const grant = back.outputs.find((o) => o.session === 2)?.reply;
    expect(grant).toMatchObject({ type: "granted", mode: "write", name: "d" });
    expect(c.state.recallsDue()).toEqual([]);
    expect(c.holdersOf("d")).toEqual([{ session: 2, mode: "write", cached: false }]);
  });

  test("read-cached grants are shared; a writer recalls every one of them, not the in-use reader", () => {
    const c = withDatum();
    const r1 = c.hold(1, "d", "read");
    c.release(1, r1);
    const r2 = c.hold(2, "d", "read");
    expect(c.holdersOf("d")).toEqual([
      { session: 1, mode: "read", cached: true },
      { session: 2, mode: "read", cached: false },
    ]);
    c.open(4);
    const writer = c.acquire(4, "d", "write");
    expect(writer.reply).toEqual({ type: "queued" });
    expect(c.state.recallsDue()).toEqual([{ session: 1, holdId: r1, name: "d" }]);
    // The reader in use releases: with a waiter, its grant is not kept.
    expect(c.release(2, r2).reply).toMatchObject({ cached: false });
    const last = c.release(1, r1);
    expect(last.outputs.find((o) => o.session === 4)?.reply).toMatchObject({ type: "granted", mode: "write" });
  });

  test("a write-cached grant is recalled by a reader too", () => {
    const c = withDatum();
    const w = c.hold(1, "d", "write");
    c.release(1, w);
    expect(c.acquire(2, "d", "read").reply).toEqual({ type: "queued" });
    expect(c.state.recallsDue()).toEqual([{ session: 1, holdId: w, name: "d" }]);
  });

  test("a use in progress answers a recall with its release: the pages land and the waiter gets them in the same update", () => {
    const c = withDatum();
    const w = c.hold(1, "d", "write");
    c.release(1, w, [page(1)]);
    c.acquire(2, "d", "write");
    // Client 1 was using its grant locally when the recall came: its release gives it back.
    const back = c.release(1, w, [page(2)]);
    expect(back.reply).toMatchObject({ cached: false });
    const grant = back.outputs.find((o) => o.session === 2)!.reply;
    expect(grant).toMatchObject({ type: "granted", version: c.state.appliedSeq });
    expect(c.state.pages.read(0)[0]).toBe(2);
  });

  test("a give-back that comes after the waiter left keeps the grant cached (the reply says so)", () => {
    const c = withDatum();
    const w = c.hold(1, "d", "write");
    c.release(1, w);
    const waiting = c.acquire(2, "d", "write");
    c.send(2, { type: "cancel", acquireReqNo: waiting.reqNo });
    expect(c.state.recallsDue()).toEqual([]);
    expect(c.release(1, w).reply).toMatchObject({ cached: true });
  });

  test("a give-back resent after failover is deduplicated by its request number", () => {
    const c = withDatum();
    const w = c.hold(1, "d", "write");
    c.release(1, w);
    c.acquire(2, "d", "write");
    const back = c.release(1, w);
    const seq = c.state.appliedSeq;
    const again = c.state.apply({ seq: seq + 1, epoch: 2, session: 1, reqNo: back.reqNo, doneBelow: 0, op: { type: "release", holdId: w, pages: [] } });
    expect(again).toEqual([{ session: 1, reqNo: back.reqNo, reply: back.reply! }]);
    expect(c.holdersOf("d")).toEqual([{ session: 2, mode: "write", cached: false }]);
  });

  test("an acquire by the caching session itself gives its cached grant up first (the lease ran out, or another mode)", () => {
    const c = withDatum();
    const r = c.hold(1, "d", "read");
    c.release(1, r);
    const w = c.hold(1, "d", "write");
    expect(w).not.toBe(r);
    expect(c.holdersOf("d")).toEqual([{ session: 1, mode: "write", cached: false }]);
    // In use (not cached), a second acquire is still EDEADLK.
    expect(c.acquire(1, "d", "read").reply).toMatchObject({ type: "error", code: "EDEADLK" });
  });

  test("the session's end frees its cached grants and grants the waiters: a recall never answered ends there", () => {
    const c = withDatum();
    const w = c.hold(1, "d", "write");
    c.release(1, w);
    const waiting = c.acquire(2, "d", "write");
    const outputs = c.state.apply({ seq: c.state.appliedSeq + 1, epoch: 1, session: 0, reqNo: 0, doneBelow: 0, op: { type: "expire_session", session: 1 } });
    expect(outputs).toEqual([{ session: 2, reqNo: waiting.reqNo, reply: expect.objectContaining({ type: "granted" }) }]);
    expect(c.state.recallsDue()).toEqual([]);
  });

  test("delete drops the deleting session's own cached grant, refuses another's (recall it first), and in-use holds", () => {
    const c = withDatum();
    const w = c.hold(1, "d", "write");
    c.release(1, w);
    expect(c.send(2, { type: "delete", name: "d" }).reply).toMatchObject({ type: "error", code: "EBUSY", message: expect.stringContaining("is cached by another client") });
    expect(c.send(1, { type: "delete", name: "d" }).reply).toEqual({ type: "ok" });
    expect(c.state.holds.size).toBe(0);
    expect(c.state.sessions.get(1)!.holds.size).toBe(0);
    c.send(1, { type: "create", name: "d", size: PS });
    c.hold(1, "d", "read");
    expect(c.send(1, { type: "delete", name: "d" }).reply).toMatchObject({ code: "EBUSY" });
  });

  test("cached grants, their flags and the owed recalls survive a snapshot", () => {
    const c = withDatum();
    const w = c.hold(1, "d", "write");
    c.release(1, w);
    c.acquire(2, "d", "read");
    const copy = decodeSnapshot(encodeSnapshot(c.state));
    expect(copy.recallsDue()).toEqual([{ session: 1, holdId: w, name: "d" }]);
    expect([...copy.holds.values()]).toEqual([...c.state.holds.values()]);
  });
});

// ---- the head sends recalls ------------------------------------------------

const OPTIONS = { sessionTimeoutMsDefault: 1000, heartbeatMs: 100, suspectMs: 1000 };

function recalls(ready: Ready) {
  return ready.send.flatMap((o) => (o.kind === "recall" ? [o.recall] : []));
}

function request(session: number, reqNo: number, op: Op) {
  return { session, reqNo, doneBelow: 0, op };
}

describe("the head recalls cached grants", () => {
  test("with the acquire that queues, again every RECALL_RESEND_MS until the give-back, then never", () => {
    const replica = new Replica({ selfId: 1, peers: [1], ...OPTIONS }, new StoreState(16 * PS, PS));
    replica.onTick(0);
    for (const s of [1, 2]) replica.onRequest(request(s, 1, { type: "open_session", timeoutMs: 0 }));
    replica.onRequest(request(1, 2, { type: "create", name: "d", size: 1 }));
    const granted = replica.onRequest(request(1, 3, { type: "acquire", name: "d", mode: "write", knownCreatedSeq: -1, cachedVersion: -1, cache: true }));
    const holdId = (granted.send.find((o) => o.kind === "reply")! as Extract<Ready["send"][number], { kind: "reply" }>).reply as Extract<Reply, { type: "granted" }>;
    replica.onRequest(request(1, 4, { type: "release", holdId: holdId.holdId, pages: [] }));
    const queued = replica.onRequest(request(2, 2, { type: "acquire", name: "d", mode: "read", knownCreatedSeq: -1, cachedVersion: -1, cache: true }));
    const owed = { session: 1, holdId: holdId.holdId, name: "d" };
    expect(recalls(queued)).toEqual([owed]);
    expect(recalls(replica.onTick(100))).toEqual([]);
    expect(recalls(replica.onTick(RECALL_RESEND_MS))).toEqual([owed]);
    replica.onRequest(request(1, 5, { type: "release", holdId: holdId.holdId, pages: [] }));
    expect(recalls(replica.onTick(10 * RECALL_RESEND_MS))).toEqual([]);
  });

  test("a new head owes the same recalls (derived from the state it received) and sends them at once", () => {
    const cluster = withDatum();
    const w = cluster.hold(1, "d", "write");
    cluster.release(1, w);
    cluster.acquire(2, "d", "write");
    const successor = new Replica({ selfId: 1, peers: [1], ...OPTIONS }, decodeSnapshot(encodeSnapshot(cluster.state)));
    expect(recalls(successor.onTick(0))).toEqual([{ session: 1, holdId: w, name: "d" }]);
  });
});

// ---- the client's decisions -------------------------------------------------

describe("GrantCache: local grants only while the servers record the grant as cached and the lease holds", () => {
  function cachedWrite(nowMs = 0): GrantCache {
    const grants = new GrantCache();
    grants.setSessionTimeout(1000);
    grants.renewLease(nowMs);
    grants.granted(7, "d", "write");
    expect(grants.endUse("d")).toBe("release");
    expect(grants.released(7, true)).toBe("nothing");
    return grants;
  }

  test("a first grant is in use: no local grant before its release comes back cached", () => {
    const grants = new GrantCache();
    grants.setSessionTimeout(1000);
    grants.renewLease(0);
    grants.granted(7, "d", "write");
    expect(grants.decide("d", "read", 1).kind).toBe("deadlock");
    expect(grants.endUse("d")).toBe("release");
    expect(grants.decide("d", "write", 1).kind).toBe("wait");
    expect(grants.released(7, false)).toBe("nothing");
    expect(grants.decide("d", "write", 1).kind).toBe("acquire");
  });

  test("write-cached: write and read uses are local; a read use's end sends nothing, a write use's ships", () => {
    const grants = cachedWrite();
    const step = grants.decide("d", "read", 10);
    expect(step.kind).toBe("local");
    if (step.kind !== "local") return;
    grants.useLocally(step.grant, "read");
    expect(grants.endUse("d")).toBe("nothing");
    const write = grants.decide("d", "write", 20);
    if (write.kind !== "local") throw new Error("expected a local grant");
    grants.useLocally(write.grant, "write");
    expect(write.grant.uses).toBe(3); // the fencing id of this use is (7, 3)
    expect(grants.endUse("d")).toBe("release");
    expect(grants.localGrants).toBe(2);
  });

  test("read-cached allows reads only: a write asks the servers (and gives the grant up)", () => {
    const grants = new GrantCache();
    grants.setSessionTimeout(1000);
    grants.renewLease(0);
    grants.granted(3, "d", "read");
    expect(grants.endUse("d")).toBe("release");
    grants.released(3, true);
    expect(grants.decide("d", "read", 5).kind).toBe("local");
    expect(grants.decide("d", "write", 5).kind).toBe("acquire");
    expect(grants.get("d")).toBeUndefined();
  });

  test("no local grant once the lease ran out: a fraction of the timeout after the first sending of the last answered request", () => {
    const grants = cachedWrite(1000);
    const edge = 1000 + 1000 * CACHE_LEASE_FRACTION;
    expect(grants.decide("d", "write", edge - 1).kind).toBe("local");
    grants.get("d")!.using = null;
    expect(grants.decide("d", "write", edge).kind).toBe("acquire");
  });

  test("a recall of an idle grant is answered at once; in use, by the end of the use; during a release, after its reply", () => {
    const idle = cachedWrite();
    expect(idle.recall(7, "d", 0)).toBe(true);
    expect(idle.decide("d", "read", 1).kind).toBe("wait");

    const busy = cachedWrite();
    const step = busy.decide("d", "read", 1);
    if (step.kind !== "local") throw new Error("expected a local grant");
    busy.useLocally(step.grant, "read");
    expect(busy.recall(7, "d", 0)).toBe(false);
    expect(busy.endUse("d")).toBe("give-back");

    const releasing = cachedWrite();
    const use = releasing.decide("d", "write", 1);
    if (use.kind !== "local") throw new Error("expected a local grant");
    releasing.useLocally(use.grant, "write");
    expect(releasing.endUse("d")).toBe("release");
    // The recall crosses the release: the release reply says the waiter had gone (kept)...
    expect(releasing.recall(7, "d", 0)).toBe(false);
    expect(releasing.released(7, true)).toBe("give-back");
    // ...and the give-back comes back: not cached any more.
    expect(releasing.released(7, false)).toBe("nothing");
    expect(releasing.get("d")).toBeUndefined();
  });

  test("a recall of a grant we gave up is answered too; after the session is lost nothing is local", () => {
    const grants = cachedWrite();
    expect(grants.recall(99, "d", 0)).toBe(true);
    grants.clear();
    expect(grants.decide("d", "read", 1).kind).toBe("acquire");
  });
});
