/**
 * The pure core, continued: releases and the bytes they leave, cancels, sessions and
 * their expiry, deduplication of resent requests, and what a grant must carry.
 */
import { describe, expect, test } from "bun:test";
import { INFLIGHT_PER_SESSION_MAX } from "../src/constants";
import { replyOut } from "../src/core/ready";
import type { Op, PageWrite } from "../src/wire";
import { NO_CACHE, PS, Driver, replyTo, holdIdOf, codeOf, grants, pageOf, observable, everything, withDatum } from "./helpers/core";

describe("releases", () => {
  test("a write release with pages changes those pages and the version, nothing else", () => {
    const d = withDatum();
    d.create(1, "neighbour", PS);
    const created = d.datum("d").version;
    const w = d.hold(1, "d", "write");
    const firstPage = d.datum("d").firstPage;
    const step = d.release(1, w, [pageOf(firstPage + 1, 7)]);
    const seq = d.state.appliedSeq;
    expect(step.reply).toEqual({ type: "released", version: seq, cached: false });
    expect(seq).toBeGreaterThan(created);
    expect(d.datum("d").version).toBe(seq);
    const expected = new Uint8Array(2 * PS);
    expected.fill(7, PS);
    expect(d.bytes("d")).toEqual(expected);
    expect(d.bytes("neighbour")).toEqual(new Uint8Array(PS));
    expect(d.state.pages.pageSeq[firstPage]).toBe(created);
    expect(d.state.pages.pageSeq[firstPage + 1]).toBe(seq);
  });

  test("the store copies released bytes: a client reusing its buffer cannot change them", () => {
    const d = withDatum();
    const page = pageOf(d.datum("d").firstPage, 5);
    d.release(1, d.hold(1, "d", "write"), [page]);
    page.bytes.fill(0xee);
    expect(d.bytes("d")[0]).toBe(5);
  });

  test("a write release without pages keeps bytes and version", () => {
    const d = withDatum();
    const before = d.datum("d").version;
    const step = d.release(1, d.hold(1, "d", "write"));
    expect(step.reply).toEqual({ type: "released", version: before, cached: false });
    expect(d.bytes("d")).toEqual(new Uint8Array(2 * PS));
  });

  test("a read hold cannot ship pages: EINVAL, nothing written, the hold stays to be released", () => {
    const d = withDatum();
    const r = d.hold(1, "d", "read");
    const before = observable(d.state);
    expect(codeOf(d.release(1, r, [pageOf(d.datum("d").firstPage, 1)]).reply)).toBe("EINVAL");
    expect(observable(d.state)).toEqual(before);
    expect(codeOf(d.release(1, r).reply)).toBe("released");
  });

  test("pages outside the datum, or of the wrong size, are refused and nothing is written", () => {
    const d = new Driver(8);
    d.open(1);
    d.create(1, "a", PS);
    d.create(1, "b", 2 * PS);
    d.create(1, "c", PS);
    const w = d.hold(1, "b", "write");
    const first = d.datum("b").firstPage;
    const bad: PageWrite[][] = [
      [pageOf(first - 1, 1)], // a's page
      [pageOf(first + 2, 1)], // c's page
      [pageOf(first, 1), pageOf(first + 2, 1)], // one good page does not slip through
      [{ page: first, bytes: new Uint8Array(PS - 1) }],
      [{ page: first, bytes: new Uint8Array(PS + 1) }],
      [pageOf(1_000_000, 1)],
    ];
    for (const pages of bad) {
      const before = observable(d.state);
      expect(codeOf(d.release(1, w, pages).reply)).toBe("EINVAL");
      expect(observable(d.state)).toEqual(before);
    }
  });

  test("a stale hold id is refused with ESTALE: released twice, another session's, never granted", () => {
    const d = withDatum();
    const r1 = d.hold(1, "d", "read");
    const r2 = d.hold(2, "d", "read");
    expect(codeOf(d.release(1, r1).reply)).toBe("released");
    const before = observable(d.state);
    expect(codeOf(d.release(1, r1).reply)).toBe("ESTALE");
    expect(codeOf(d.release(1, r2).reply)).toBe("ESTALE");
    expect(codeOf(d.release(1, 999).reply)).toBe("ESTALE");
    expect(observable(d.state)).toEqual(before);
  });

  test("a fenced writer: after its session expired its hold id is refused, and its bytes never land", () => {
    const d = withDatum();
    const w = d.hold(1, "d", "write");
    d.expire(1);
    d.open(1); // the same client reconnects under the same id
    expect(codeOf(d.release(1, w, [pageOf(d.datum("d").firstPage, 3)]).reply)).toBe("ESTALE");
    expect(d.bytes("d")).toEqual(new Uint8Array(2 * PS));
  });
});

describe("cancel", () => {
  test("cancelling a waiting writer lets the readers behind it in, and its acquire answers ECANCELED", () => {
    const d = withDatum();
    d.hold(1, "d", "read");
    const w = d.acquire(2, "d", "write");
    const r = d.acquire(3, "d", "read");
    const step = d.cancel(2, w.reqNo);
    expect(codeOf(step.reply)).toBe("ok");
    expect(grants(step.outputs)).toEqual(["3:read"]);
    expect(replyTo(step.outputs, 3, r.reqNo)).toMatchObject({ type: "granted" });
    expect(d.datum("d").queue).toEqual([]);
    expect(d.state.sessions.get(2)!.waiting.size).toBe(0);
    // The client resending its acquire (after a failover) learns it was cancelled.
    expect(codeOf(d.resend(2, w.reqNo, { type: "acquire", name: "d", mode: "write", ...NO_CACHE }).reply)).toBe("ECANCELED");
    expect(d.datum("d").queue).toEqual([]);
  });

  test("cancelling after the grant releases the hold and grants the next waiter", () => {
    const d = withDatum();
    const a = d.acquire(1, "d", "write");
    const holdId = holdIdOf(a.reply);
    const next = d.acquire(2, "d", "write");
    const step = d.cancel(1, a.reqNo);
    expect(grants(step.outputs)).toEqual(["2:write"]);
    expect(d.state.holds.has(holdId)).toBe(false);
    expect(codeOf(d.release(1, holdId, [pageOf(d.datum("d").firstPage, 1)]).reply)).toBe("ESTALE");
    expect(d.bytes("d")).toEqual(new Uint8Array(2 * PS));
    expect(replyTo(step.outputs, 2, next.reqNo)).toMatchObject({ type: "granted", mode: "write" });
  });

  test("cancelling an unknown or finished request changes nothing", () => {
    const d = withDatum();
    const r = d.hold(1, "d", "read");
    d.release(1, r);
    const before = observable(d.state);
    expect(codeOf(d.cancel(1, 12345).reply)).toBe("ok");
    expect(observable(d.state)).toEqual(before);
  });
});

describe("sessions", () => {
  test("an unknown session gets ESESSION and changes nothing", () => {
    const d = withDatum();
    const before = observable(d.state);
    expect(codeOf(d.create(42, "x", 1))).toBe("ESESSION");
    expect(codeOf(d.acquire(42, "d", "write").reply)).toBe("ESESSION");
    expect(observable(d.state)).toEqual(before);
  });

  test("a session timeout out of range is refused and opens nothing", () => {
    const d = new Driver();
    for (const timeoutMs of [0, 99, 24 * 60 * 60 * 1000 + 1, 1.5]) {
      expect(codeOf(d.open(5, timeoutMs))).toBe("EINVAL");
      expect(d.state.sessions.has(5)).toBe(false);
    }
    expect(d.open(5, 100)).toEqual({ type: "session", timeoutMs: 100 });
  });

  test("expiry releases the session's holds, drops its waits, grants the next waiters, discards nothing else", () => {
    const d = new Driver(8);
    for (const s of [1, 2, 3, 4]) d.open(s);
    d.create(2, "a", PS);
    d.create(2, "b", PS);
    d.create(2, "c", PS);
    // c carries a released value, then session 1 takes a write hold on it (its writes are local).
    d.release(2, d.hold(2, "c", "write"), [pageOf(d.datum("c").firstPage, 0x42)]);
    const cVersion = d.datum("c").version;
    d.hold(1, "c", "write");
    d.hold(1, "a", "read");
    const aWaiter = d.acquire(3, "a", "write"); // waits behind session 1
    const bHold = d.hold(2, "b", "read");
    expect(codeOf(d.acquire(1, "b", "write").reply)).toBe("waiting"); // session 1 waits on b
    const bReader = d.acquire(4, "b", "read"); // behind session 1's write wait
    expect(codeOf(bReader.reply)).toBe("waiting");
    const cWaiter = d.acquire(4, "c", "read");

    const outputs = d.expire(1);
    expect(grants(outputs).sort()).toEqual(["3:write", "4:read", "4:read"]);
    expect(replyTo(outputs, 3, aWaiter.reqNo)).toMatchObject({ type: "granted", name: "a" });
    expect(replyTo(outputs, 4, bReader.reqNo)).toMatchObject({ type: "granted", name: "b" });
    expect(replyTo(outputs, 4, cWaiter.reqNo)).toMatchObject({ type: "granted", name: "c", version: cVersion });
    expect(d.state.sessions.has(1)).toBe(false);
    expect([...d.state.holds.values()].some((h) => h.session === 1)).toBe(false);
    expect(d.state.list().map((i) => i.name)).toEqual(["a", "b", "c"]);
    // The unreleased write of the expired session never shows: c keeps its last released value.
    expect(d.bytes("c")).toEqual(new Uint8Array(PS).fill(0x42));
    expect(d.datum("c").version).toBe(cVersion);
    // Other sessions keep their holds.
    expect(d.state.holds.get(bHold)?.session).toBe(2);
    // The expired client learns it on its next call.
    expect(codeOf(d.create(1, "z", 1))).toBe("ESESSION");
  });

  test("expiring twice, or an unknown session, does nothing", () => {
    const d = withDatum();
    d.hold(1, "d", "write");
    d.acquire(2, "d", "write");
    expect(grants(d.expire(1))).toEqual(["2:write"]);
    const before = everything(d.state);
    expect(d.expire(1)).toEqual([]);
    expect(d.expire(77)).toEqual([]);
    expect({ ...everything(d.state), appliedSeq: 0 }).toEqual({ ...before, appliedSeq: 0 });
  });

  test("close_session releases like an expiry and answers ok", () => {
    const d = withDatum();
    d.hold(1, "d", "write");
    const w = d.acquire(2, "d", "write");
    const step = d.send(1, { type: "close_session" });
    expect(codeOf(step.reply)).toBe("ok");
    expect(replyTo(step.outputs, 2, w.reqNo)).toMatchObject({ type: "granted" });
    expect(d.state.sessions.has(1)).toBe(false);
  });

  test("a client cannot expire another client's session", () => {
    const d = withDatum();
    const w = d.hold(1, "d", "write");
    const step = d.send(2, { type: "expire_session", session: 1 });
    expect(codeOf(step.reply)).toBe("EINVAL");
    expect(d.state.sessions.has(1)).toBe(true);
    expect(d.state.holds.get(w)?.session).toBe(1);
  });

  test("a client with replies this history never sequenced (a healed partition lost them) loses its session and its holds", () => {
    const d = withDatum();
    const w = d.acquire(1, "d", "write"); // reqNo 3 of session 1 (open, create, acquire)
    expect(codeOf(w.reply)).toBe("granted");
    const waiter = d.acquire(2, "d", "read");
    expect(codeOf(waiter.reply)).toBe("waiting");
    // Requests 4 and 5 (the release among them) were acknowledged by the other side of a
    // partition; the client's next request says it has their replies.
    const step = d.resend(1, 6, { type: "acquire", name: "d", mode: "read", ...NO_CACHE }, 6);
    expect(codeOf(step.reply)).toBe("ESESSION");
    expect((step.reply as { message: string }).message).toContain("lost requests 4..5");
    expect(d.state.sessions.has(1)).toBe(false);
    expect(replyTo(step.outputs, 2, waiter.reqNo)).toMatchObject({ type: "granted", mode: "read" });
  });

  test("replies the history did sequence are no sign of loss, whatever the client confirms", () => {
    const d = withDatum();
    const w = d.hold(1, "d", "write"); // reqNo 3
    d.resend(1, 4, { type: "release", holdId: w, pages: [] }, 4);
    const next = d.resend(1, 5, { type: "acquire", name: "d", mode: "read", ...NO_CACHE }, 5);
    expect(codeOf(next.reply)).toBe("granted");
    expect(d.state.sessions.has(1)).toBe(true);
  });
});

describe("deduplication", () => {
  test("a create applied twice answers the stored reply and creates once", () => {
    const d = withDatum();
    const first = d.send(1, { type: "create", name: "x", size: PS });
    const before = observable(d.state);
    const again = d.resend(1, first.reqNo, { type: "create", name: "x", size: PS });
    expect(again.reply).toEqual(first.reply);
    expect(observable(d.state)).toEqual(before);
  });

  test("a write release applied twice writes once and answers the same version", () => {
    const d = withDatum();
    const w = d.hold(1, "d", "write");
    d.acquire(2, "d", "write");
    const op: Op = { type: "release", holdId: w, pages: [pageOf(d.datum("d").firstPage, 9)] };
    const first = d.send(1, op);
    expect(grants(first.outputs)).toEqual(["2:write"]);
    const before = observable(d.state);
    const again = d.resend(1, first.reqNo, op);
    expect(again.outputs).toEqual([{ session: 1, reqNo: first.reqNo, reply: first.reply! }]);
    expect(observable(d.state)).toEqual(before);
  });

  test("an acquire resent while it waits stays queued once and is not granted twice", () => {
    const d = withDatum();
    const w = d.hold(1, "d", "write");
    const a = d.acquire(2, "d", "read");
    const again = d.resend(2, a.reqNo, { type: "acquire", name: "d", mode: "read", ...NO_CACHE });
    expect(again.outputs.map((o) => codeOf(o.reply))).not.toContain("granted");
    expect(codeOf(again.reply)).not.toBe("EDEADLK");
    expect(d.datum("d").queue.length).toBe(1);
    const granted = d.release(1, w).outputs;
    const resentAfter = d.resend(2, a.reqNo, { type: "acquire", name: "d", mode: "read", ...NO_CACHE });
    expect(resentAfter.reply).toEqual(replyTo(granted, 2, a.reqNo));
    expect(d.datum("d").holders.length).toBe(1);
  });

  test("an open_session resent answers the same session", () => {
    const d = new Driver();
    const first = d.send(3, { type: "open_session", timeoutMs: 500 });
    const again = d.resend(3, first.reqNo, { type: "open_session", timeoutMs: 500 });
    expect(again.reply).toEqual(first.reply);
    expect(d.state.sessions.size).toBe(1);
  });

  test("doneBelow lets the server forget replies, and a late resend below it is not applied again", () => {
    const d = withDatum();
    const steps = ["x1", "x2", "x3"].map((name) => d.send(2, { type: "create", name, size: 1 }));
    expect(steps.every((s) => s.reply?.type === "created")).toBe(true);
    d.delete(2, "x1");
    const last = d.send(2, { type: "delete", name: "x2" }, steps[2]!.reqNo);
    expect(codeOf(last.reply)).toBe("ok");
    const kept = [...d.state.sessions.get(2)!.replies.keys()];
    expect(kept.every((reqNo) => reqNo >= steps[2]!.reqNo)).toBe(true);
    // The first create of x1, delivered late: x1 must stay deleted.
    const before = observable(d.state);
    expect(d.resend(2, steps[0]!.reqNo, { type: "create", name: "x1", size: 1 }).outputs).toEqual([]);
    expect(observable(d.state)).toEqual(before);
  });

  test("a waiting acquire stays below the lowest request its client still waits on, and its grant is delivered and stored", () => {
    const d = withDatum();
    const w = d.hold(1, "d", "write");
    const a = d.acquire(2, "d", "read");
    // The client still waits on the acquire: its doneBelow stays at it (src/client: the lowest pending request).
    d.send(2, { type: "create", name: "y", size: 1 }, a.reqNo);
    expect(d.state.sessions.get(2)!.replies.get(a.reqNo)).toBeNull();
    const granted = replyTo(d.release(1, w).outputs, 2, a.reqNo);
    expect(granted).toMatchObject({ type: "granted" });
    expect(d.state.sessions.get(2)!.replies.get(a.reqNo)).toEqual(granted!);
  });

  test("a waiting acquire its client counts as done (its grant was lost with a whole-cluster crash) is withdrawn, and the next waiter goes", () => {
    const d = withDatum();
    const w = d.hold(1, "d", "write");
    const a = d.acquire(2, "d", "write");
    const b = d.acquire(3, "d", "read");
    // Session 2 confirms everything up to its acquire: it had a grant this history lost.
    const next = d.send(2, { type: "create", name: "y", size: 1 }, a.reqNo + 1);
    expect(d.state.sessions.get(2)!.waiting.size).toBe(0);
    expect(next.outputs.filter((o) => o.session === 2 && o.reqNo === a.reqNo)).toEqual([]);
    // The writer's release now grants the reader that waited behind the withdrawn acquire.
    expect(replyTo(d.release(1, w).outputs, 3, b.reqNo)).toMatchObject({ type: "granted", mode: "read" });
    expect([...d.state.holds.values()].some((hold) => hold.session === 2)).toBe(false);
  });

  test("with doneBelow a session runs forever; without it, the in-flight limit stops it", () => {
    const d = withDatum(2);
    for (let i = 0; i < INFLIGHT_PER_SESSION_MAX + 100; i++) {
      const next = i + 2; // reqNo 1 was open_session
      const step = d.send(1, { type: "delete", name: "nope" }, next);
      expect(codeOf(step.reply)).toBe("ENOENT");
    }
    expect(d.state.sessions.get(1)!.replies.size).toBeLessThanOrEqual(2);
    let limited = "";
    for (let i = 0; i < INFLIGHT_PER_SESSION_MAX + 1 && !limited; i++) {
      const code = codeOf(d.send(2, { type: "delete", name: "nope" }).reply);
      if (code !== "ENOENT") limited = code;
    }
    expect(limited).toBe("ELIMIT");
  });
});

describe("grants carry what the client's cache lacks", () => {
  /** d of 3 pages; page 1 rewritten after creation. */
  function scenario() {
    const d = withDatum();
    d.create(1, "e", 3 * PS);
    const e = d.datum("e");
    const createdSeq = e.createdSeq;
    d.release(1, d.hold(1, "e", "write"), [pageOf(e.firstPage + 1, 0x11)]);
    return { d, e, createdSeq, firstVersion: e.version };
  }

  test("no cache: sendAfter -1 and every page written since the creation (the others are zeros the client makes)", () => {
    const { d, e } = scenario();
    const reply = d.acquire(2, "e", "read").reply;
    expect(reply).toMatchObject({ type: "granted", sendAfter: -1, version: e.version, offset: e.firstPage * PS, size: 3 * PS });
    if (reply?.type !== "granted") throw new Error("not granted");
    const out = replyOut(d.state, 2, 1, reply);
    const pages = out.kind === "reply" ? out.pages : [];
    expect(pages.map((p) => p.page)).toEqual([e.firstPage + 1]);
    expect(pages[0]!.bytes).toEqual(new Uint8Array(PS).fill(0x11));
    // Without the creation's seq (as before): every page.
    expect(d.state.pagesAfter(reply.offset, reply.size, reply.sendAfter).map((p) => p.page)).toEqual([e.firstPage, e.firstPage + 1, e.firstPage + 2]);
  });

  test("a cache of an older version gets only the pages written after it", () => {
    const { d, e, createdSeq, firstVersion } = scenario();
    d.release(1, d.hold(1, "e", "write"), [pageOf(e.firstPage + 2, 0x22)]);
    const reply = d.acquire(2, "e", "read", { knownCreatedSeq: createdSeq, cachedVersion: firstVersion }).reply;
    expect(reply).toMatchObject({ type: "granted", sendAfter: firstVersion, version: e.version });
    if (reply?.type !== "granted") throw new Error("not granted");
    const pages = d.state.pagesAfter(reply.offset, reply.size, reply.sendAfter);
    expect(pages.map((p) => [p.page, p.bytes[0]])).toEqual([[e.firstPage + 2, 0x22]]);
  });

  test("re-acquiring an unchanged datum transfers no page", () => {
    const { d, e, createdSeq } = scenario();
    const reply = d.acquire(2, "e", "write", { knownCreatedSeq: createdSeq, cachedVersion: e.version }).reply;
    expect(reply).toMatchObject({ type: "granted", sendAfter: e.version });
    if (reply?.type !== "granted") throw new Error("not granted");
    expect(d.state.pagesAfter(reply.offset, reply.size, reply.sendAfter)).toEqual([]);
  });

  test("a cache of a deleted-and-recreated datum gets sendAfter -1 and all pages", () => {
    const { d, createdSeq } = scenario();
    const version = d.datum("e").version;
    d.delete(1, "e");
    d.create(1, "filler", PS); // the new e lands elsewhere, and later than the cached version
    d.create(1, "e", 3 * PS);
    const reply = d.acquire(2, "e", "read", { knownCreatedSeq: createdSeq, cachedVersion: version }).reply;
    expect(reply).toMatchObject({ type: "granted", sendAfter: -1 });
    if (reply?.type !== "granted") throw new Error("not granted");
    expect(reply.createdSeq).not.toBe(createdSeq);
    const pages = d.state.pagesAfter(reply.offset, reply.size, reply.sendAfter);
    expect(pages.length).toBe(3);
    expect(pages.every((p) => p.bytes.every((b) => b === 0))).toBe(true);
    // A fresh datum: nothing written since its creation, no page travels.
    expect(d.state.pagesAfter(reply.offset, reply.size, reply.sendAfter, reply.version, reply.createdSeq)).toEqual([]);
  });

  test("a cache that claims the right creation but no version gets everything", () => {
    const { d, createdSeq } = scenario();
    const reply = d.acquire(2, "e", "read", { knownCreatedSeq: createdSeq, cachedVersion: -1 }).reply;
    expect(reply).toMatchObject({ type: "granted", sendAfter: -1 });
  });
});
