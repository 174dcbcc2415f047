/**
 * The pure core as a user of a storage system sees it: where data land in the
 * segment, which errors leave the store untouched, who gets a hold and when
 * (FIFO, readers together, writers not starved), which bytes a grant must
 * carry, what a session expiry releases, and that two replicas fed the same
 * updates end byte for byte the same.
 */
import { describe, expect, test } from "bun:test";
import { DATUM_BYTES_MAX, INFLIGHT_PER_SESSION_MAX } from "../src/constants";
import { type Output, PageAllocator, Replica, SessionMonitor, StoreState, type Update, encodeSnapshot } from "../src/core";
import { EpochHistory } from "../src/core/epochs";
import { type Ready, isEmptyReady, replyOut } from "../src/core/ready";
import { FRAME_HEADER_BYTES, type Mode, type Op, type PageWrite, type PeerMessage, type Reply, type Request, decodeMessage, encodeMessage } from "../src/wire";

/** Small pages keep every test fast; the core takes the page size as a parameter. */
const PS = 64;

// ---- a driver that speaks for clients ------------------------------------

interface Step {
  reqNo: number;
  outputs: Output[];
  /** The reply to this request in this step ("queued" while an acquire waits). */
  reply: Reply | null;
}

const NO_CACHE = { knownCreatedSeq: -1, cachedVersion: -1 };

class Driver {
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

function replyTo(outputs: Output[], session: number, reqNo: number): Reply | null {
  const mine = outputs.filter((o) => o.session === session && o.reqNo === reqNo);
  if (mine.length > 1) throw new Error(`${mine.length} replies to ${session}/${reqNo}`);
  return mine[0]?.reply ?? null;
}

function holdIdOf(reply: Reply | null): number {
  if (reply?.type !== "granted") throw new Error(`expected a grant, got ${JSON.stringify(reply)}`);
  return reply.holdId;
}

/** The reply's type or error code; "waiting" for an acquire that is queued (no grant yet). */
function codeOf(reply: Reply | null): string {
  if (reply === null || reply.type === "queued") return "waiting";
  return reply.type === "error" ? reply.code : reply.type;
}

/** "session:mode" of every grant in a step's outputs, in output order. */
function grants(outputs: Output[]): string[] {
  return outputs.flatMap((o) => (o.reply.type === "granted" ? [`${o.session}:${o.reply.mode}`] : []));
}

function pageOf(page: number, fill: number): PageWrite {
  return { page, bytes: new Uint8Array(PS).fill(fill) };
}

/** What a user can observe of a store (no per-session bookkeeping). */
function observable(state: StoreState) {
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
function everything(state: StoreState) {
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

/** Tiny seeded PRNG (mulberry32): a failure replays from its seed. */
function prng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (n: number) => Math.floor(next() * n),
    chance: (p: number) => next() < p,
    pick: <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)]!,
  };
}

// ---- allocator -------------------------------------------------------------

describe("PageAllocator", () => {
  test("first fit: the lowest run that is large enough, split from its front", () => {
    const allocator = new PageAllocator(16, [
      { first: 0, count: 2 },
      { first: 4, count: 5 },
      { first: 10, count: 6 },
    ]);
    expect(allocator.allocate(3)).toBe(4); // skips the 2-page run, not the best fit (6 pages)
    expect(allocator.freeRuns()).toEqual([
      { first: 0, count: 2 },
      { first: 7, count: 2 },
      { first: 10, count: 6 },
    ]);
    expect(allocator.allocate(1)).toBe(0);
    expect(allocator.allocate(6)).toBe(10);
  });

  test("an exact fit consumes the run", () => {
    const allocator = new PageAllocator(8, [
      { first: 1, count: 3 },
      { first: 5, count: 3 },
    ]);
    expect(allocator.allocate(3)).toBe(1);
    expect(allocator.freeRuns()).toEqual([{ first: 5, count: 3 }]);
    expect(allocator.allocate(3)).toBe(5);
    expect(allocator.freeRuns()).toEqual([]);
    expect(allocator.freePages()).toBe(0);
  });

  test("no run large enough: -1, and nothing changes", () => {
    const allocator = new PageAllocator(8);
    expect(allocator.allocate(9)).toBe(-1);
    expect(allocator.allocate(8)).toBe(0);
    expect(allocator.allocate(1)).toBe(-1);
    expect(allocator.freeRuns()).toEqual([]);
  });

  test("freeing coalesces with the run before", () => {
    const allocator = new PageAllocator(8);
    for (let i = 0; i < 4; i++) expect(allocator.allocate(2)).toBe(2 * i);
    allocator.release(0, 2);
    allocator.release(2, 2);
    expect(allocator.freeRuns()).toEqual([{ first: 0, count: 4 }]);
  });

  test("freeing coalesces with the run after", () => {
    const allocator = new PageAllocator(8);
    for (let i = 0; i < 4; i++) allocator.allocate(2);
    allocator.release(4, 2);
    allocator.release(2, 2);
    expect(allocator.freeRuns()).toEqual([{ first: 2, count: 4 }]);
  });

  test("freeing coalesces with the runs on both sides into one", () => {
    const allocator = new PageAllocator(8);
    for (let i = 0; i < 4; i++) allocator.allocate(2);
    allocator.release(0, 2);
    allocator.release(4, 2);
    expect(allocator.freeRuns().length).toBe(2);
    allocator.release(2, 2);
    expect(allocator.freeRuns()).toEqual([{ first: 0, count: 6 }]);
    allocator.release(6, 2);
    expect(allocator.freeRuns()).toEqual([{ first: 0, count: 8 }]);
  });

  test("fragmented space refuses a large run until a free in between coalesces it", () => {
    const allocator = new PageAllocator(16);
    const firsts = [0, 1, 2, 3].map(() => allocator.allocate(4));
    expect(firsts).toEqual([0, 4, 8, 12]);
    allocator.release(0, 4);
    allocator.release(8, 4);
    expect(allocator.freePages()).toBe(8);
    expect(allocator.largestFreeRun()).toBe(4);
    expect(allocator.allocate(8)).toBe(-1);
    allocator.release(4, 4);
    expect(allocator.largestFreeRun()).toBe(12);
    expect(allocator.allocate(8)).toBe(0);
    expect(allocator.freeRuns()).toEqual([{ first: 8, count: 4 }]);
  });

  test("a double free is detected, whatever the overlap", () => {
    const allocator = new PageAllocator(16);
    allocator.allocate(4); // 0..3
    allocator.allocate(4); // 4..7, free: 8..15
    allocator.release(0, 2); // free: 0..1, 8..15
    const before = allocator.freeRuns();
    expect(() => allocator.release(0, 2)).toThrow(/double free/); // same run again
    expect(() => allocator.release(1, 2)).toThrow(/double free/); // overlaps the run before
    expect(() => allocator.release(6, 4)).toThrow(/double free/); // overlaps the run after
    expect(() => allocator.release(8, 1)).toThrow(/double free/); // starts a free run
    expect(() => allocator.release(10, 2)).toThrow(/double free/); // inside a free run
    expect(allocator.freeRuns()).toEqual(before);
  });

  test("a page count that is not a positive whole number is a programming error", () => {
    const allocator = new PageAllocator(4);
    for (const count of [0, -1, 1.5, Number.NaN]) expect(() => allocator.allocate(count)).toThrow(RangeError);
  });
});

// ---- create and delete -----------------------------------------------------

describe("create", () => {
  test("a datum starts on a page boundary, covers whole pages and reads as zeros", () => {
    const d = new Driver();
    d.open(1);
    expect(d.create(1, "a", 1)).toEqual({ type: "created", offset: 0, size: 1, createdSeq: 2 });
    expect(d.create(1, "b", PS + 1)).toEqual({ type: "created", offset: PS, size: PS + 1, createdSeq: 3 });
    expect(d.create(1, "c", 3 * PS)).toEqual({ type: "created", offset: 3 * PS, size: 3 * PS, createdSeq: 4 });
    expect(d.bytes("b")).toEqual(new Uint8Array(PS + 1));
    expect(d.state.list().map((info) => [info.name, info.offset, info.size, info.version])).toEqual([
      ["a", 0, 1, 2],
      ["b", PS, PS + 1, 3],
      ["c", 3 * PS, 3 * PS, 4],
    ]);
  });

  test("the largest valid names and the whole segment are accepted", () => {
    const d = new Driver(4);
    d.open(1);
    expect(codeOf(d.create(1, "a".repeat(255), 1))).toBe("created");
    expect(codeOf(d.create(1, "€".repeat(85), 1))).toBe("created"); // 255 bytes of UTF-8
    expect(codeOf(d.create(1, "😀 données", 1))).toBe("created");
    d.delete(1, "a".repeat(255));
    d.delete(1, "€".repeat(85));
    d.delete(1, "😀 données");
    expect(codeOf(d.create(1, "all", 4 * PS))).toBe("created");
  });

  const refused: [what: string, name: string, size: number, code: string][] = [
    ["an existing name", "taken", 1, "EEXIST"],
    ["an empty name", "", 1, "EINVAL"],
    ["a 256-byte name", "a".repeat(256), 1, "EINVAL"],
    ["a name of 128 two-byte characters", "é".repeat(128), 1, "EINVAL"],
    ["a newline", "a\nb", 1, "EINVAL"],
    ["a NUL", "a\u0000", 1, "EINVAL"],
    ["a tab", "\tx", 1, "EINVAL"],
    ["DEL", "x\u007f", 1, "EINVAL"],
    ["a lone surrogate", "x\uD800", 1, "EINVAL"],
    ["size 0", "new", 0, "EINVAL"],
    ["a negative size", "new", -4096, "EINVAL"],
    ["a fractional size", "new", 1.5, "EINVAL"],
    ["a NaN size", "new", Number.NaN, "EINVAL"],
    ["an infinite size", "new", Number.POSITIVE_INFINITY, "EINVAL"],
    ["a size over the segment", "new", 16 * PS + 1, "ENOSPC"],
    ["a size over the free space", "new", 10 * PS, "ENOSPC"],
  ];
  for (const [what, name, size, code] of refused) {
    test(`${what} is refused with ${code} and changes nothing`, () => {
      const d = new Driver(16);
      d.open(1);
      d.open(2);
      d.create(1, "taken", 7 * PS);
      d.hold(1, "taken", "write");
      d.acquire(2, "taken", "read"); // a waiter
      const before = observable(d.state);
      expect(codeOf(d.create(1, name, size))).toBe(code);
      expect(observable(d.state)).toEqual(before);
    });
  }

  test("a datum is at most DATUM_BYTES_MAX bytes, even in a larger segment", () => {
    const state = new StoreState(2 * DATUM_BYTES_MAX, 4096);
    state.apply({ seq: 1, epoch: 1, session: 1, reqNo: 1, doneBelow: 0, op: { type: "open_session", timeoutMs: 1000 } });
    const create = (seq: number, size: number) =>
      state.apply({ seq, epoch: 1, session: 1, reqNo: seq, doneBelow: 0, op: { type: "create", name: `d${seq}`, size } })[0]!.reply;
    expect(codeOf(create(2, DATUM_BYTES_MAX + 1))).toBe("EINVAL");
    expect(codeOf(create(3, DATUM_BYTES_MAX))).toBe("created");
  });

  test("ENOSPC when full, and the space comes back on delete", () => {
    const d = new Driver(4);
    d.open(1);
    expect(codeOf(d.create(1, "a", 3 * PS))).toBe("created");
    expect(codeOf(d.create(1, "b", 2 * PS))).toBe("ENOSPC");
    expect(codeOf(d.create(1, "c", PS))).toBe("created");
    expect(codeOf(d.create(1, "d", 1))).toBe("ENOSPC");
    expect(codeOf(d.delete(1, "a"))).toBe("ok");
    expect(d.create(1, "e", 3 * PS)).toMatchObject({ type: "created", offset: 0 });
  });

  test("fragmentation: ENOSPC until the run between two holes is deleted", () => {
    const d = new Driver(4);
    d.open(1);
    for (const name of ["a", "b", "c", "d"]) d.create(1, name, PS);
    d.delete(1, "a");
    d.delete(1, "c");
    expect(codeOf(d.create(1, "big", 2 * PS))).toBe("ENOSPC");
    d.delete(1, "b");
    expect(d.create(1, "big", 3 * PS)).toMatchObject({ type: "created", offset: 0 });
  });

  test("a recreated datum reads as zeros, not as the bytes of the one before", () => {
    const d = new Driver(4);
    d.open(1);
    d.create(1, "a", 2 * PS);
    const hold = d.hold(1, "a", "write");
    d.release(1, hold, [pageOf(0, 9), pageOf(1, 9)]);
    d.delete(1, "a");
    d.create(1, "b", 2 * PS); // same pages
    expect(d.bytes("b")).toEqual(new Uint8Array(2 * PS));
  });
});

describe("delete", () => {
  test("ENOENT for an unknown name", () => {
    const d = new Driver();
    d.open(1);
    expect(codeOf(d.delete(1, "nope"))).toBe("ENOENT");
  });

  test("EBUSY while held or waited for; works once every hold is gone", () => {
    const d = new Driver(4);
    d.open(1);
    d.open(2);
    d.create(1, "a", 2 * PS);
    const read = d.hold(1, "a", "read");
    expect(codeOf(d.delete(2, "a"))).toBe("EBUSY");
    const wait = d.acquire(2, "a", "write");
    expect(codeOf(wait.reply)).toBe("waiting");
    const before = observable(d.state);
    expect(codeOf(d.delete(1, "a"))).toBe("EBUSY");
    expect(observable(d.state)).toEqual(before);
    const write = holdIdOf(replyTo(d.release(1, read).outputs, 2, wait.reqNo));
    expect(codeOf(d.delete(1, "a"))).toBe("EBUSY");
    d.release(2, write);
    expect(codeOf(d.delete(1, "a"))).toBe("ok");
    expect(d.state.data.has("a")).toBe(false);
    expect(codeOf(d.acquire(1, "a", "read").reply)).toBe("ENOENT");
    expect(d.state.allocator.freePages()).toBe(4);
    expect(d.create(1, "a", 1)).toMatchObject({ type: "created", offset: 0 });
  });
});

// ---- holds -----------------------------------------------------------------

/** A store with one datum "d" of 2 pages and sessions 1..n open. */
function withDatum(sessions = 6): Driver {
  const d = new Driver(8);
  for (let s = 1; s <= sessions; s++) d.open(s);
  d.create(1, "d", 2 * PS);
  return d;
}

describe("holds", () => {
  test("two readers hold together", () => {
    const d = withDatum();
    const a = d.hold(1, "d", "read");
    const b = d.hold(2, "d", "read");
    expect(a).not.toBe(b);
    expect(d.state.info(d.datum("d"))).toMatchObject({ readers: 2, writer: false, waiters: 0 });
  });

  test("a writer waits for the readers and is granted in the step that frees the datum", () => {
    const d = withDatum();
    const r1 = d.hold(1, "d", "read");
    const r2 = d.hold(2, "d", "read");
    const w = d.acquire(3, "d", "write");
    expect(codeOf(w.reply)).toBe("waiting");
    expect(grants(d.release(1, r1).outputs)).toEqual([]);
    const last = d.release(2, r2);
    expect(codeOf(last.reply)).toBe("released");
    expect(grants(last.outputs)).toEqual(["3:write"]);
    expect(replyTo(last.outputs, 3, w.reqNo)).toMatchObject({ type: "granted", mode: "write", name: "d" });
  });

  test("readers wait for a writer and are granted together when it releases", () => {
    const d = withDatum();
    const w = d.hold(1, "d", "write");
    expect(codeOf(d.acquire(2, "d", "read").reply)).toBe("waiting");
    expect(codeOf(d.acquire(3, "d", "read").reply)).toBe("waiting");
    expect(codeOf(d.acquire(4, "d", "write").reply)).toBe("waiting");
    const step = d.release(1, w);
    expect(grants(step.outputs)).toEqual(["2:read", "3:read"]);
    expect(d.state.info(d.datum("d"))).toMatchObject({ readers: 2, writer: false, waiters: 1 });
  });

  test("FIFO: a writer queued behind readers is not starved by later readers", () => {
    const d = withDatum();
    const r1 = d.hold(1, "d", "read");
    const w = d.acquire(2, "d", "write");
    expect(codeOf(w.reply)).toBe("waiting");
    // Only readers hold, yet R2 must queue behind the writer.
    expect(codeOf(d.acquire(3, "d", "read").reply)).toBe("waiting");
    expect(codeOf(d.acquire(4, "d", "read").reply)).toBe("waiting");
    const step = d.release(1, r1);
    expect(grants(step.outputs)).toEqual(["2:write"]);
    const after = d.release(2, holdIdOf(replyTo(step.outputs, 2, w.reqNo)));
    expect(grants(after.outputs)).toEqual(["3:read", "4:read"]);
  });

  test("a long queue is served in order: each batch of readers, then each writer", () => {
    const d = withDatum(6);
    const holds = new Map<number, number>([[1, d.hold(1, "d", "read")]]);
    const waits = new Map<number, number>();
    for (const [s, mode] of [
      [2, "write"],
      [3, "read"],
      [4, "read"],
      [5, "write"],
      [6, "read"],
    ] as const) {
      const step = d.acquire(s, "d", mode);
      expect(codeOf(step.reply)).toBe("waiting");
      waits.set(s, step.reqNo);
    }
    const releaseAndGrants = (s: number) => {
      const step = d.release(s, holds.get(s)!);
      expect(codeOf(step.reply)).toBe("released");
      for (const o of step.outputs) if (o.reply.type === "granted") holds.set(o.session, o.reply.holdId);
      return grants(step.outputs);
    };
    expect(releaseAndGrants(1)).toEqual(["2:write"]);
    expect(releaseAndGrants(2)).toEqual(["3:read", "4:read"]);
    expect(releaseAndGrants(3)).toEqual([]);
    expect(releaseAndGrants(4)).toEqual(["5:write"]);
    expect(releaseAndGrants(5)).toEqual(["6:read"]);
    expect(releaseAndGrants(6)).toEqual([]);
    expect(d.state.info(d.datum("d"))).toMatchObject({ readers: 0, writer: false, waiters: 0 });
  });

  test("a reader is granted at once when only readers hold and nobody waits", () => {
    const d = withDatum();
    d.hold(1, "d", "read");
    expect(codeOf(d.acquire(2, "d", "read").reply)).toBe("granted");
  });

  test("ENOENT for an unknown datum, EDEADLK for one the session holds or waits for", () => {
    const d = withDatum();
    expect(codeOf(d.acquire(1, "nope", "read").reply)).toBe("ENOENT");
    d.hold(1, "d", "read");
    expect(codeOf(d.acquire(1, "d", "read").reply)).toBe("EDEADLK");
    expect(codeOf(d.acquire(1, "d", "write").reply)).toBe("EDEADLK");
    d.hold(2, "d", "read");
    expect(codeOf(d.acquire(3, "d", "write").reply)).toBe("waiting");
    const before = observable(d.state);
    expect(codeOf(d.acquire(3, "d", "write").reply)).toBe("EDEADLK");
    expect(codeOf(d.acquire(3, "d", "read").reply)).toBe("EDEADLK");
    expect(observable(d.state)).toEqual(before);
  });
});

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

// ---- session monitor and replica -------------------------------------------

function request(session: number, reqNo: number, op: Op, doneBelow = 0): Request {
  return { session, reqNo, doneBelow, op };
}

function logged(ready: Ready): Update[] {
  return ready.persist.flatMap((p) => (p.kind === "log" ? [p.update] : []));
}

function replied(ready: Ready): Output[] {
  return ready.send.flatMap((o) => (o.kind === "reply" ? [{ session: o.session, reqNo: o.reqNo, reply: o.reply }] : []));
}

const REPLICA_OPTIONS = { sessionTimeoutMsDefault: 1000, heartbeatMs: 100, suspectMs: 1000 };

/** A server alone in its cluster: its first tick forms a chain of one (head and tail). */
function singleServer(state = new StoreState(16 * PS, PS), nowMs = 0): Replica {
  const replica = new Replica({ selfId: 1, peers: [1], ...REPLICA_OPTIONS }, state);
  replica.onTick(nowMs);
  if (!replica.isHead || !replica.isTail) throw new Error("a lone server did not form its chain");
  return replica;
}

describe("SessionMonitor", () => {
  test("a session silent for longer than its timeout is reported once", () => {
    const monitor = new SessionMonitor();
    const live = new Map([[5, { timeoutMs: 1000 }]]);
    monitor.heard(5);
    const reports: number[] = [];
    for (let now = 0; now <= 5000; now += 100) {
      monitor.nowMs = now;
      for (const id of monitor.expired(live)) reports.push(now * 1000 + id);
    }
    expect(reports).toEqual([1100 * 1000 + 5]);
  });
});

describe("Replica", () => {
  test("it sequences requests without gaps, logs before it replies, and fills in the default timeout", () => {
    const replica = singleServer();
    const open = replica.onRequest(request(5, 1, { type: "open_session", timeoutMs: 0 }));
    expect(logged(open).map((u) => [u.seq, u.op])).toEqual([[1, { type: "open_session", timeoutMs: 1000 }]]);
    expect(replied(open)).toEqual([{ session: 5, reqNo: 1, reply: { type: "session", timeoutMs: 1000 } }]);
    // Persist before send: the update is disk work of the step, its reply goes out after it.
    expect(open.persist.map((p) => p.kind)).toEqual(["log"]);
    expect(open.send.map((o) => o.kind)).toEqual(["reply"]);
    const create = replica.onRequest(request(5, 2, { type: "create", name: "a", size: 1 }));
    expect(logged(create).map((u) => u.seq)).toEqual([2]);
    expect(replica.state.appliedSeq).toBe(2);
  });

  test("an unknown session gets ESESSION without consuming a sequence number", () => {
    const replica = singleServer();
    replica.onRequest(request(5, 1, { type: "open_session", timeoutMs: 1000 }));
    const actions = replica.onRequest(request(6, 1, { type: "create", name: "a", size: 1 }));
    expect(logged(actions)).toEqual([]);
    expect(replied(actions).map((o) => [o.session, o.reqNo, codeOf(o.reply)])).toEqual([[6, 1, "ESESSION"]]);
    expect(replica.state.appliedSeq).toBe(1);
    expect(replica.state.data.size).toBe(0);
    expect(logged(replica.onRequest(request(5, 2, { type: "create", name: "a", size: 1 }))).map((u) => u.seq)).toEqual([2]);
  });

  test("a duplicate is answered from the stored reply and not sequenced again", () => {
    const replica = singleServer();
    replica.onRequest(request(5, 1, { type: "open_session", timeoutMs: 1000 }));
    const op: Op = { type: "create", name: "a", size: 1 };
    const first = replica.onRequest(request(5, 2, op));
    expect(codeOf(replied(first)[0]!.reply)).toBe("created");
    const before = everything(replica.state);
    const again = replica.onRequest(request(5, 2, op));
    expect(logged(again)).toEqual([]);
    expect(replied(again)).toEqual(replied(first));
    expect(everything(replica.state)).toEqual(before);
  });

  test("a server that is not head sequences nothing", () => {
    const replica = new Replica({ selfId: 2, peers: [1, 2], ...REPLICA_OPTIONS }, new StoreState(16 * PS, PS));
    replica.onTick(0); // still booting: it waits to hear from server 1
    expect(replica.isHead).toBe(false);
    const actions = replica.onRequest(request(5, 1, { type: "open_session", timeoutMs: 1000 }));
    expect(logged(actions)).toEqual([]);
    expect(replica.state.appliedSeq).toBe(0);
  });

  /** A head where session 5 holds "a" for writing (request 3) and session 6 waits for it. */
  function writerAndWaiter(): Replica {
    const replica = singleServer();
    replica.onRequest(request(5, 1, { type: "open_session", timeoutMs: 1000 }));
    replica.onRequest(request(6, 1, { type: "open_session", timeoutMs: 1000 }));
    replica.onRequest(request(5, 2, { type: "create", name: "a", size: 1 }));
    replica.onRequest(request(5, 3, { type: "acquire", name: "a", mode: "write", ...NO_CACHE }));
    const wait = replica.onRequest(request(6, 2, { type: "acquire", name: "a", mode: "write", ...NO_CACHE }));
    expect(replied(wait).map((o) => codeOf(o.reply))).toEqual(["waiting"]);
    return replica;
  }

  test("a heartbeat confirming replies this history never produced ends the session and frees its hold", () => {
    const replica = writerAndWaiter();
    // Confirming what it has: nothing happens.
    expect(logged(replica.onClientHeartbeat(5, 4))).toEqual([]);
    // Replies up to request 4 (its release, say, acknowledged by a chain whose history lost).
    const actions = replica.onClientHeartbeat(5, 5);
    expect(logged(actions).map((u) => u.op)).toEqual([{ type: "expire_session", session: 5 }]);
    expect(replied(actions).map((o) => [o.session, codeOf(o.reply)])).toEqual([[6, "granted"]]);
    expect(replica.state.sessions.has(5)).toBe(false);
  });

  test("a silent session is expired exactly once, a heart-beating one never, and the waiter is granted in that step", () => {
    const replica = writerAndWaiter();
    const expiries: [number, Update][] = [];
    const repliesAt: [number, string][] = [];
    for (let now = 100; now <= 6000; now += 100) {
      if (now % 300 === 0) replica.onClientHeartbeat(6, 3);
      const actions = replica.onTick(now);
      for (const update of logged(actions)) expiries.push([now, update]);
      for (const o of replied(actions)) repliesAt.push([now, `${o.session}/${o.reqNo}:${codeOf(o.reply)}`]);
    }
    expect(expiries.map(([now, u]) => [now, u.session, u.op])).toEqual([[1100, 0, { type: "expire_session", session: 5 }]]);
    expect(repliesAt).toEqual([[1100, "6/2:granted"]]);
    expect(replica.state.sessions.has(5)).toBe(false);
    expect(replica.state.sessions.has(6)).toBe(true);
  });

  test("requests count as signs of life", () => {
    const replica = singleServer();
    replica.onRequest(request(5, 1, { type: "open_session", timeoutMs: 1000 }));
    let reqNo = 1;
    for (let now = 100; now <= 5000; now += 100) {
      if (now % 500 === 0) replica.onRequest(request(5, ++reqNo, { type: "delete", name: "nope" }, reqNo));
      expect(logged(replica.onTick(now))).toEqual([]);
    }
    expect(replica.state.sessions.has(5)).toBe(true);
  });

  test("a session the head never heard from (state from before its start) gets a full timeout, then expires", () => {
    const state = new StoreState(16 * PS, PS);
    state.apply({ seq: 1, epoch: 1, session: 5, reqNo: 1, doneBelow: 0, op: { type: "open_session", timeoutMs: 1000 } });
    const replica = singleServer(state, 5000);
    const expiredAt: number[] = [];
    for (let now = 5000; now <= 8000; now += 100) {
      for (const update of logged(replica.onTick(now))) {
        expect(update).toMatchObject({ seq: 2, session: 0, op: { type: "expire_session", session: 5 } });
        expiredAt.push(now);
      }
    }
    expect(expiredAt).toEqual([6100]);
  });
});

// ---- replicas agree ----------------------------------------------------------

/** The update as a follower receives it: through the wire, sharing no memory with the head's. */
function overTheWire(update: Update): Update {
  const { session, reqNo, doneBelow, op } = update;
  const frame = encodeMessage({ type: "request", body: { session, reqNo, doneBelow, op } });
  const message = decodeMessage(frame[4]!, frame.slice(FRAME_HEADER_BYTES));
  if (message.type !== "request") throw new Error("not a request");
  return { ...update, op: message.body.op };
}

function checkInvariants(state: StoreState, where: string): void {
  const fail = (what: string) => {
    throw new Error(`${where}: ${what}`);
  };
  let used = 0;
  const owner = new Array<string | undefined>(state.pages.pageCount);
  for (const datum of state.data.values()) {
    used += datum.pageCount;
    for (let p = datum.firstPage; p < datum.firstPage + datum.pageCount; p++) {
      if (owner[p]) fail(`page ${p} in ${owner[p]} and ${datum.name}`);
      owner[p] = datum.name;
    }
    const writers = datum.holders.filter((h) => h.mode === "write").length;
    if (writers > 1 || (writers === 1 && datum.holders.length > 1)) fail(`${datum.name}: a writer shares the datum`);
    if (datum.queue.length > 0) {
      const front = datum.queue[0]!;
      if (datum.holders.length === 0) fail(`${datum.name}: waiters but no holder`);
      if (front.mode === "read" && writers === 0) fail(`${datum.name}: a reader waits with no writer holding`);
    }
    for (const hold of datum.holders) {
      if (state.holds.get(hold.id) !== hold) fail(`hold ${hold.id} not in the hold table`);
      if (!state.sessions.get(hold.session)?.holds.has(hold.id)) fail(`hold ${hold.id} not in its session`);
    }
    for (const waiter of datum.queue) {
      if (state.sessions.get(waiter.session)?.waiting.get(waiter.reqNo) !== datum.name) fail(`waiter ${waiter.session}/${waiter.reqNo} lost`);
    }
  }
  if (used + state.allocator.freePages() !== state.pages.pageCount) fail("pages leaked by the allocator");
  for (const run of state.allocator.freeRuns()) {
    for (let p = run.first; p < run.first + run.count; p++) if (owner[p]) fail(`free page ${p} belongs to ${owner[p]}`);
  }
  for (const hold of state.holds.values()) {
    if (!state.data.get(hold.name)?.holders.includes(hold)) fail(`hold ${hold.id} not on its datum`);
  }
  for (const session of state.sessions.values()) {
    for (const [reqNo, name] of session.waiting) {
      if (!state.data.get(name)?.queue.some((w) => w.session === session.id && w.reqNo === reqNo)) fail(`wait ${reqNo} not queued`);
    }
  }
}

interface Client {
  id: number;
  alive: boolean;
  nextReqNo: number;
  /** Every request sent, for resends. */
  sent: Map<number, Op>;
  /** Request numbers whose reply arrived. */
  answered: Set<number>;
  /** What the client has cached of each datum: the bytes it saw and their version. */
  cache: Map<string, { createdSeq: number; version: number; bytes: Uint8Array }>;
}

function runAgreement(seed: number, steps: number): { sequenced: number; grants: number; expiries: number; writes: number } {
  const random = prng(seed);
  const PAGES = 24;
  const head = singleServer(new StoreState(PAGES * PS, PS));
  const follower = new StoreState(PAGES * PS, PS);
  const names = ["a", "b", "c", "d", "e"];
  /** The committed bytes of each datum, from the replies users received. */
  const model = new Map<string, Uint8Array>();
  const clients: Client[] = [];
  let nextSession = 1;
  const stats = { sequenced: 0, grants: 0, expiries: 0, writes: 0 };
  const newClient = (): Client => ({
    id: nextSession++,
    alive: true,
    nextReqNo: 1,
    sent: new Map(),
    answered: new Set(),
    cache: new Map(),
  });
  for (let i = 0; i < 4; i++) clients.push(newClient());
  let now = 0;

  const datumBytes = (state: StoreState, name: string) => {
    const datum = state.data.get(name)!;
    const out = new Uint8Array(datum.pageCount * PS);
    for (let i = 0; i < datum.pageCount; i++) out.set(state.pages.read(datum.firstPage + i), i * PS);
    return out;
  };

  /** Delivers replies to the model clients, checking each grant's pages against the model. */
  const deliver = (outputs: Output[], where: string) => {
    for (const { session, reqNo, reply } of outputs) {
      const client = clients.find((c) => c.id === session);
      if (!client) continue;
      if (reply.type !== "queued") client.answered.add(reqNo); // "queued" is not the answer yet
      const op = client.sent.get(reqNo);
      if (reply.type === "created" && op?.type === "create") {
        if (!model.has(op.name)) model.set(op.name, new Uint8Array(Math.ceil(op.size / PS) * PS));
      } else if (reply.type === "ok" && op?.type === "delete") {
        model.delete(op.name);
      } else if (reply.type === "granted") {
        stats.grants++;
        const cached = client.cache.get(reply.name);
        const base = reply.sendAfter === -1 ? new Uint8Array(Math.ceil(reply.size / PS) * PS) : cached?.bytes.slice();
        if (!base) throw new Error(`${where}: sendAfter ${reply.sendAfter} for a client with no cache of ${reply.name}`);
        const firstPage = reply.offset / PS;
        for (const page of head.state.pagesAfter(reply.offset, reply.size, reply.sendAfter)) base.set(page.bytes, (page.page - firstPage) * PS);
        // Linearizability of the data: what the client now sees is the last released value.
        expect([where, reply.name, Buffer.from(base).toString("hex")]).toEqual([where, reply.name, Buffer.from(model.get(reply.name)!).toString("hex")]);
        client.cache.set(reply.name, { createdSeq: reply.createdSeq, version: reply.version, bytes: base });
      } else if (reply.type === "released" && op?.type === "release" && op.pages.length > 0) {
        stats.writes++;
      }
    }
  };

  /** Applies on the model the pages of a release the state accepted (known after the step). */
  const noteRelease = (session: number, op: Op, reply: Reply | null, holdName: string | undefined) => {
    if (op.type !== "release" || reply?.type !== "released" || !holdName) return;
    const bytes = model.get(holdName)!;
    const firstPage = head.state.data.get(holdName)!.firstPage;
    for (const page of op.pages) bytes.set(page.bytes, (page.page - firstPage) * PS);
    const client = clients.find((c) => c.id === session)!;
    const cached = client.cache.get(holdName);
    if (cached && op.pages.length > 0) client.cache.set(holdName, { ...cached, version: reply.version, bytes: bytes.slice() });
  };

  const doneBelowOf = (client: Client) => {
    let n = 1;
    while (n < client.nextReqNo && client.answered.has(n)) n++;
    return n;
  };

  const randomOp = (client: Client): Op => {
    const state = head.state;
    const session = state.sessions.get(client.id);
    const myHolds = [...state.holds.values()].filter((h) => h.session === client.id);
    const roll = random.next();
    if (roll < 0.15) {
      const size = random.chance(0.1) ? random.pick([0, PAGES * PS + 1]) : 1 + random.int(4 * PS);
      return { type: "create", name: random.pick(names), size };
    }
    if (roll < 0.2) return { type: "delete", name: random.pick(names) };
    if (roll < 0.5) {
      const name = random.chance(0.95) ? random.pick(names) : "missing";
      const cached = client.cache.get(name);
      const cache = cached && random.chance(0.8) ? { knownCreatedSeq: cached.createdSeq, cachedVersion: cached.version } : NO_CACHE;
      return { type: "acquire", name, mode: random.chance(0.5) ? "read" : "write", ...cache };
    }
    if (roll < 0.8 && myHolds.length > 0) {
      const hold = random.pick(myHolds);
      const datum = state.data.get(hold.name)!;
      const pages: PageWrite[] = [];
      if (hold.mode === "write" || random.chance(0.05)) {
        for (let p = 0; p < datum.pageCount; p++) if (random.chance(0.4)) pages.push(pageOf(datum.firstPage + p, 1 + random.int(255)));
        if (pages.length === 0 && random.chance(0.8)) pages.push(pageOf(datum.firstPage + random.int(datum.pageCount), 1 + random.int(255)));
        if (random.chance(0.05)) pages.push(pageOf(random.int(PAGES), 0xbb)); // maybe outside the datum
      }
      return { type: "release", holdId: random.chance(0.03) ? hold.id + 1000 : hold.id, pages };
    }
    if (roll < 0.88 && session) {
      const waiting = [...session.waiting.keys()];
      const acquires = [...client.sent].filter(([, op]) => op.type === "acquire").map(([reqNo]) => reqNo);
      const target = waiting.length > 0 && random.chance(0.7) ? random.pick(waiting) : acquires.length > 0 ? random.pick(acquires) : 999;
      return { type: "cancel", acquireReqNo: target };
    }
    if (roll < 0.9) return { type: "close_session" };
    return { type: "acquire", name: random.pick(names), mode: "read", ...NO_CACHE };
  };

  for (let step = 0; step < steps; step++) {
    const where = `seed ${seed} step ${step}`;
    now += 50;
    for (const client of clients) if (client.alive) head.onClientHeartbeat(client.id, 0);
    let actions: Ready = head.onTick(now);
    let op: Op | undefined;
    let sender: Client | undefined;
    let holdName: string | undefined;
    let resend = false;
    let resentReqNo = -1;
    if (isEmptyReady(actions)) {
      const choice = random.next();
      const live = clients.filter((c) => c.alive);
      if (choice < 0.01) {
        // A session nobody opened.
        actions = head.onRequest(request(10_000 + step, 1, { type: "delete", name: "a" }));
        expect([where, logged(actions).length, replied(actions).map((o) => codeOf(o.reply))]).toEqual([where, 0, ["ESESSION"]]);
      } else if (choice < 0.03 && live.length > 0) {
        random.pick(live).alive = false; // a client crashes: it will be expired
      } else if (live.length > 0) {
        sender = random.pick(live);
        const session = head.state.sessions.get(sender.id);
        let reqNo: number;
        if (!session) {
          op = { type: "open_session", timeoutMs: 1000 };
          reqNo = sender.nextReqNo++;
        } else if (sender.sent.size > 0 && random.chance(0.08)) {
          // A resend after a (simulated) failover: same number, same op.
          reqNo = random.pick([...sender.sent.keys()]);
          op = sender.sent.get(reqNo)!;
          resend = true;
          resentReqNo = reqNo;
        } else {
          op = randomOp(sender);
          reqNo = sender.nextReqNo++;
        }
        sender.sent.set(reqNo, op);
        if (op.type === "release") holdName = head.state.holds.get(op.holdId)?.name;
        const before = resend ? observable(head.state) : null;
        actions = head.onRequest(request(sender.id, reqNo, op, doneBelowOf(sender)));
        if (before) expect([where, observable(head.state)]).toEqual([where, before]);
        if (!resend) noteRelease(sender.id, op, replyTo(replied(actions), sender.id, reqNo), holdName);
      }
    }
    const updates = logged(actions);
    if (updates.length > 0) {
      // The follower gets its own copy of each update, in the same order, and must answer the same.
      const outputs = updates.flatMap((update) => follower.apply(overTheWire(update)));
      expect([where, outputs]).toEqual([where, replied(actions)]);
      stats.sequenced += updates.length;
      stats.expiries += updates.filter((u) => u.op.type === "expire_session").length;
    }
    // The client reuses its page buffers at once: the store must have copied them.
    if (op?.type === "release") for (const page of op.pages) page.bytes.fill(0xee);
    // A resent request's stored reply is one the client already had: it learns nothing new from it.
    deliver(
      replied(actions).filter((o) => !(resend && o.session === sender?.id && o.reqNo === resentReqNo)),
      where,
    );
    // Replace clients whose sessions are gone (expired or closed) with new ones.
    for (let i = 0; i < clients.length; i++) {
      const client = clients[i]!;
      if (!client.alive && !head.state.sessions.has(client.id)) clients[i] = newClient();
      else if (client.alive && client.nextReqNo > 1 && client.answered.has(1) && !head.state.sessions.has(client.id)) clients[i] = newClient();
    }
    checkInvariants(head.state, where);
    for (const [name, bytes] of model) {
      expect([where, name, Buffer.from(datumBytes(head.state, name)).equals(Buffer.from(bytes))]).toEqual([where, name, true]);
    }
    expect([where, [...model.keys()].sort()]).toEqual([where, [...head.state.data.keys()].sort()]);
    if (step % 50 === 0) expect([where, everything(follower)]).toEqual([where, everything(head.state)]);
  }
  expect(everything(follower)).toEqual(everything(head.state));
  return stats;
}

describe("--quorum majority: configurations agreed by Paxos", () => {
  const MAJORITY = { ...REPLICA_OPTIONS, peers: [1, 2, 3], quorum: "majority" as const };
  const sent = (ready: Ready) => ready.send.flatMap((o) => (o.kind === "peer" && o.message.type.startsWith("config") ? [o.message] : []));
  const heartbeat = (from: number) => ({ type: "heartbeat" as const, from, epoch: 0, chain: [], status: "booting" as const, appliedSeq: 0, lastEpoch: 0, busyMs: 0 });

  test("an acceptor's vote comes back from disk: a lower ballot is refused, a higher one is told what was accepted, and the vote is written before the promise leaves", () => {
    const accepted = { ballot: 129, epoch: 129, chain: [1, 3], baseEpoch: 65, formed: false };
    const replica = new Replica({ selfId: 3, ...MAJORITY }, new StoreState(16 * PS, PS), 0, { epoch: 65, chain: [1, 2, 3] }, { promised: 194, accepted });
    expect(sent(replica.onPeerMessage({ type: "config_prepare", from: 2, ballot: 130, baseEpoch: 65 }, 0))).toEqual([
      { type: "config_refuse", from: 3, ballot: 130, promised: 194 },
    ]);
    const actions = replica.onPeerMessage({ type: "config_prepare", from: 2, ballot: 258, baseEpoch: 65 }, 0);
    expect(sent(actions)).toEqual([{ type: "config_promise", from: 3, ballot: 258, configEpoch: 65, accepted }]);
    // Persist before send: the vote is disk work of the step, the promise goes out after it.
    expect(actions.persist).toEqual([{ kind: "vote", vote: { promised: 258, accepted } }]);
    expect(actions.send.some((o) => o.kind === "peer" && o.message.type === "config_promise")).toBe(true);
    // A proposal under an older ballot than the promise is refused too.
    expect(sent(replica.onPeerMessage({ type: "config_propose", from: 1, ballot: 194, epoch: 194, chain: [1], baseEpoch: 65, formed: false }, 0))[0]!.type).toBe("config_refuse");
  });

  test("a proposer completes a pending accepted proposal instead of its own, and its config makes nobody a member at once", () => {
    const replica = new Replica({ selfId: 1, ...MAJORITY }, new StoreState(16 * PS, PS));
    replica.onTick(0);
    replica.onPeerMessage(heartbeat(2), 10);
    replica.onPeerMessage(heartbeat(3), 10);
    const prepare = sent(replica.onTick(100)).filter((m) => m.type === "config_prepare");
    expect(prepare.length).toBe(2);
    const ballot = (prepare[0] as { ballot: number }).ballot;
    // Server 2 accepted server 3's proposal of the chain 3→2 (server 3 restarted since): it may have been chosen.
    const pending = { ballot: 67, epoch: 67, chain: [3, 2], baseEpoch: 0, formed: true };
    const propose = sent(replica.onPeerMessage({ type: "config_promise", from: 2, ballot, configEpoch: 0, accepted: pending }, 110));
    expect(propose).toEqual([
      { type: "config_propose", from: 1, ballot, epoch: 67, chain: [3, 2], baseEpoch: 0, formed: true },
      { type: "config_propose", from: 1, ballot, epoch: 67, chain: [3, 2], baseEpoch: 0, formed: true },
    ]);
    const commit = sent(replica.onPeerMessage({ type: "config_accept", from: 2, ballot }, 120));
    expect(commit).toContainEqual({ type: "config", from: 1, epoch: 67, chain: [3, 2], issued: false });
    expect(replica.config).toEqual({ epoch: 67, chain: [3, 2] });
    expect(replica.status).toBe("joining");
  });
});

describe("replicas fed the same updates", () => {
  for (const seed of [1, 2, 3, 0xc0ffee]) {
    test(`end in identical states, with every grant showing the last released bytes (seed ${seed})`, () => {
      const stats = runAgreement(seed, 500);
      // The run exercised what it claims to.
      expect(stats.sequenced).toBeGreaterThan(300);
      expect(stats.grants).toBeGreaterThan(40);
      expect(stats.writes).toBeGreaterThan(10);
      expect(stats.expiries).toBeGreaterThan(0);
    });
  }
});

describe("a history is never taken back", () => {
  /** Updates 1..n of session 5 creating datum `d<seq>`, in `epoch`. */
  function updates(from: number, to: number, epoch: number): Update[] {
    const out: Update[] = [];
    for (let seq = from; seq <= to; seq++) {
      const op: Op = seq === 1 ? { type: "open_session", timeoutMs: 60_000 } : { type: "create", name: `d${seq}`, size: 1 };
      out.push({ seq, epoch, session: 5, reqNo: seq, doneBelow: 0, op });
    }
    return out;
  }

  function replicaWith(selfId: number, history: Update[], config: { epoch: number; chain: number[] }, more: { peers?: number[]; quorum?: "none" | "majority" } = {}): Replica {
    const state = new StoreState(16 * PS, PS);
    const epochs = new EpochHistory(0, 0);
    for (const update of history) {
      state.apply(update);
      epochs.note(update.seq, update.epoch);
    }
    const lastEpoch = history.at(-1)?.epoch ?? 0;
    return new Replica({ selfId, peers: [1, 2], ...REPLICA_OPTIONS, ...more }, state, lastEpoch, config, undefined, epochs);
  }

  test("a joiner whose history holds the chain's and more is not sent back: the head takes its state", () => {
    // Server 2 acknowledged seqs 4-5 alone in epoch 129 (two chains after a cut, default mode);
    // server 1 serves a chain that never went past seq 3.
    const common = updates(1, 3, 65);
    const head = replicaWith(1, common, { epoch: 65, chain: [1] });
    const joiner = replicaWith(2, [...common, ...updates(4, 5, 129)], { epoch: 65, chain: [1] });
    const byId = new Map([[1, head], [2, joiner]]);
    const installs: [number, number][] = [];
    let now = 0;
    const run = (id: number, ready: Ready) => {
      const queue: [number, Ready][] = [[id, ready]];
      while (queue.length > 0) {
        const [from, batch] = queue.shift()!;
        for (const item of batch.persist) if (item.kind === "install") installs.push([from, item.seq]);
        for (const out of batch.send) if (out.kind === "peer") queue.push([out.to, byId.get(out.to)!.onPeerMessage(out.message, now)]);
      }
    };
    // Server 1 serves alone first (server 2 is cut off: what is sent to it is lost).
    for (now = 0; now <= 3000 && !head.isHead; now += 50) head.onTick(now);
    expect(head.config.chain).toEqual([1]);
    for (; now <= 8000 && !(joiner.status === "member" && head.state.appliedSeq === 5); now += 50) {
      run(1, head.onTick(now));
      run(2, joiner.onTick(now));
    }
    expect(installs.filter(([id]) => id === 2).every(([, seq]) => seq >= 5)).toBe(true);
    expect(head.state.appliedSeq).toBe(5);
    expect(head.lastEpoch).toBe(129);
    expect([...head.state.data.keys()].sort()).toEqual(["d2", "d3", "d4", "d5"]);
    expect(joiner.status).toBe("member");
    expect(head.config.chain).toEqual([1, 2]);
  });

  test("with --quorum majority the joiner installs the tail's snapshot instead: a history taken in would rank by its old last epoch", () => {
    const common = updates(1, 3, 65);
    const tailState = replicaWith(1, common, { epoch: 65, chain: [1] }).state;
    const snapshot = { type: "snapshot" as const, from: 1, epoch: 65, seq: 3, lastEpoch: 65, bytes: encodeSnapshot(tailState) };
    const joinerIn = (quorum: "none" | "majority") => {
      const joiner = replicaWith(2, [...common, ...updates(4, 5, 129)], { epoch: 65, chain: [1] }, { peers: [1, 2, 3], quorum });
      joiner.onTick(0);
      joiner.onPeerMessage({ type: "heartbeat", from: 1, epoch: 65, chain: [1], status: "member", appliedSeq: 3, lastEpoch: 65, busyMs: 0 }, 10);
      joiner.onTick(100);
      expect(joiner.status).toBe("joining");
      joiner.onPeerMessage({ type: "sync_request", from: 1, epoch: 65, chain: [1] }, 110);
      return joiner.onPeerMessage(snapshot, 120);
    };
    // Default mode: refused, and the head is offered the longer history.
    const refused = joinerIn("none");
    expect(refused.persist.some((p) => p.kind === "install")).toBe(false);
    expect(refused.send.some((o) => o.kind === "peer" && o.message.type === "ahead")).toBe(true);
    // Majority mode: 4-5 were never acknowledged (every acknowledged update is in the chain's history).
    const installed = joinerIn("majority");
    expect(installed.persist.flatMap((p) => (p.kind === "install" ? [p.seq] : []))).toEqual([3]);
    expect(installed.send.some((o) => o.kind === "peer" && o.message.type === "ahead")).toBe(false);
  });
});

describe("a joiner being appended", () => {
  /** Server 2, tail of 1→2 at seq 3 (epoch 65), with server 3 joining behind it and caught up. */
  function tailWithCaughtUpJoiner(answeredOurSync = true): { tail: Replica; caughtUp: Ready } {
    const state = new StoreState(16 * PS, PS);
    const epochs = new EpochHistory(0, 0);
    for (let seq = 1; seq <= 3; seq++) {
      const op: Op = seq === 1 ? { type: "open_session", timeoutMs: 60_000 } : { type: "create", name: `d${seq}`, size: 1 };
      state.apply({ seq, epoch: 65, session: 5, reqNo: seq, doneBelow: 0, op });
      epochs.note(seq, 65);
    }
    const tail = new Replica({ selfId: 2, peers: [1, 2, 3], ...REPLICA_OPTIONS }, state, 65, undefined, undefined, epochs);
    tail.onTick(0);
    tail.onPeerMessage({ type: "heartbeat", from: 1, epoch: 0, chain: [], status: "booting", appliedSeq: 3, lastEpoch: 65, busyMs: 0 }, 10);
    tail.onPeerMessage({ type: "heartbeat", from: 3, epoch: 0, chain: [], status: "booting", appliedSeq: 3, lastEpoch: 65, busyMs: 0 }, 10);
    tail.onPeerMessage({ type: "config", from: 1, epoch: 65, chain: [1, 2], issued: true }, 20);
    expect(tail.isTail).toBe(true);
    tail.onPeerMessage({ type: "join", from: 3, appliedSeq: 3, lastEpoch: 65 }, 30);
    // Our sync_request answered: we are its upstream in epoch 65.
    if (answeredOurSync) tail.onPeerMessage({ type: "sync_reply", from: 3, epoch: 65, appliedSeq: 3, lastEpoch: 65 }, 40);
    const caughtUp = tail.onTick(100);
    return { tail, caughtUp };
  }
  const create = (seq: number, epoch: number): Update => ({ seq, epoch, session: 5, reqNo: seq, doneBelow: 0, op: { type: "create", name: `d${seq}`, size: 1 } });

  test("the old tail applies nothing more until the configuration makes the joiner the tail, then passes it on", () => {
    const { tail, caughtUp } = tailWithCaughtUpJoiner();
    expect(caughtUp.send).toContainEqual({ kind: "peer", to: 1, message: { type: "caught_up", from: 2, epoch: 65, joiner: 3 } });
    // Applied now, 4 would be acknowledged here while the new tail lacks it.
    const held = tail.onPeerMessage({ type: "forward", from: 1, epoch: 65, prevEpoch: 65, updates: [create(4, 65)] }, 110);
    expect(logged(held)).toEqual([]);
    expect(tail.state.appliedSeq).toBe(3);
    tail.onPeerMessage({ type: "config", from: 1, epoch: 129, chain: [1, 2, 3], issued: true }, 120);
    expect([tail.status, tail.isTail]).toEqual(["member", false]);
    // The head resends it in the new configuration: applied, passed on, acknowledged by the new tail only.
    const passed = tail.onPeerMessage({ type: "forward", from: 1, epoch: 129, prevEpoch: 65, updates: [create(4, 65)] }, 130);
    expect(logged(passed).map((u) => u.seq)).toEqual([4]);
    expect(replied(passed)).toEqual([]);
  });

  // Sim seed 386002363: an empty tail took an empty joiner's join for caught up; appended before
  // we ever synced it, the joiner stayed joining and was removed, over and over.
  test("a joiner whose join shows our position is not caught up before it answered our sync", () => {
    const { tail, caughtUp } = tailWithCaughtUpJoiner(false);
    expect(caughtUp.send.some((out) => out.kind === "peer" && out.message.type === "caught_up")).toBe(false);
    tail.onPeerMessage({ type: "sync_reply", from: 3, epoch: 65, appliedSeq: 3, lastEpoch: 65 }, 110);
    expect(tail.onTick(250).send).toContainEqual({ kind: "peer", to: 1, message: { type: "caught_up", from: 2, epoch: 65, joiner: 3 } });
  });

  test("the old tail goes on after --suspect-ms if the head does not append the joiner", () => {
    const { tail } = tailWithCaughtUpJoiner();
    expect(logged(tail.onPeerMessage({ type: "forward", from: 1, epoch: 65, prevEpoch: 65, updates: [create(4, 65)] }, 500))).toEqual([]);
    tail.onPeerMessage({ type: "heartbeat", from: 1, epoch: 65, chain: [1, 2], status: "member", appliedSeq: 4, lastEpoch: 65, busyMs: 0 }, 1000);
    expect(logged(tail.onPeerMessage({ type: "forward", from: 1, epoch: 65, prevEpoch: 65, updates: [create(4, 65)] }, 1150)).map((u) => u.seq)).toEqual([4]);
  });
});

describe("a joiner whose member's heartbeats are late", () => {
  // Sim seeds 163000724, 163002720: heartbeats queue behind the snapshot and forwards a member
  // sends its joiner; counting heartbeats only, the joiner gave the serving chain up after half
  // --suspect-ms and formed a chain of its own beside it.
  test("keeps joining while a member of its chain syncs it and forwards to it, and gives up once that stops", () => {
    const joiner = new Replica({ selfId: 2, peers: [1, 2], ...REPLICA_OPTIONS }, new StoreState(16 * PS, PS));
    joiner.onTick(0);
    joiner.onPeerMessage({ type: "heartbeat", from: 1, epoch: 0, chain: [], status: "booting", appliedSeq: 0, lastEpoch: 0, busyMs: 0 }, 10);
    joiner.onPeerMessage({ type: "config", from: 1, epoch: 65, chain: [1], issued: true }, 20);
    expect(joiner.status).toBe("joining");
    joiner.onPeerMessage({ type: "sync_request", from: 1, epoch: 65, chain: [1] }, 30);
    const open: Update = { seq: 1, epoch: 65, session: 5, reqNo: 1, doneBelow: 0, op: { type: "open_session", timeoutMs: 60_000 } };
    joiner.onPeerMessage({ type: "forward", from: 1, epoch: 65, prevEpoch: 0, updates: [open] }, 400);
    joiner.onTick(600);
    expect(joiner.status).toBe("joining");
    joiner.onPeerMessage({ type: "forward", from: 1, epoch: 65, prevEpoch: 65, updates: [] }, 700);
    joiner.onTick(900);
    expect(joiner.status).toBe("joining");
    // Nothing from the chain for more than half --suspect-ms: it is gone, the joiner starts over.
    joiner.onTick(1250);
    expect(joiner.status).not.toBe("joining");
  });
});

describe("a configuration that never served", () => {
  // Sim seed 272007723 (default mode, --disks): server 2 issued epoch 258 [2,3] and crashed with
  // 3; server 1, removed without knowing it, went on alone in 257 [1]. Restarted, 2 and 3 found
  // 1 serving in an older epoch, kept their own and joined each other for ever.
  test("a booting server that hears a chain serving in an older epoch than its own joins that chain", () => {
    const booting = new Replica({ selfId: 2, peers: [1, 2, 3], ...REPLICA_OPTIONS }, new StoreState(16 * PS, PS), 0, { epoch: 258, chain: [2, 3] });
    booting.onTick(0);
    booting.onPeerMessage({ type: "heartbeat", from: 1, epoch: 257, chain: [1], status: "member", appliedSeq: 9, lastEpoch: 257, busyMs: 0 }, 10);
    booting.onPeerMessage({ type: "heartbeat", from: 3, epoch: 258, chain: [2, 3], status: "joining", appliedSeq: 0, lastEpoch: 0, busyMs: 0 }, 10);
    const step = booting.onTick(120);
    expect([booting.status, booting.config]).toEqual(["joining", { epoch: 257, chain: [1] }]);
    expect(step.persist).toContainEqual({ kind: "config", config: { epoch: 257, chain: [1] } });
    const joins = booting.onTick(240).send.filter((out) => out.kind === "peer" && out.message.type === "join");
    expect(joins.map((out) => out.kind === "peer" && out.to)).toEqual([1]);
  });
});

describe("sibling configurations at boot", () => {
  // Sim seed 403004127 (--disks --free-crashes): 3 issued e387 [3,2] from e321 and crashed
  // before 2 adopted it; 2, which knew only e321, issued e386 [2] and acknowledged updates up to
  // 69. After a total outage 3 (45@387) outranked 2 (69@386) by its epoch's number alone.
  function restarted(selfId: number, appliedSeq: number, lastEpoch: number, config: { epoch: number; chain: number[] }): Replica {
    const state = new StoreState(16 * PS, PS);
    state.appliedSeq = appliedSeq;
    const replica = new Replica({ selfId, peers: [2, 3], ...REPLICA_OPTIONS }, state, lastEpoch, config);
    replica.onTick(0);
    return replica;
  }
  const issued = (step: ReturnType<Replica["onTick"]>) => step.persist.filter((p) => p.kind === "config");

  test("a history whose last configuration's tail never adopted it ranks below that tail's", () => {
    const three = restarted(3, 45, 387, { epoch: 387, chain: [3, 2] });
    three.onPeerMessage({ type: "heartbeat", from: 2, epoch: 386, chain: [2], status: "booting", appliedSeq: 69, lastEpoch: 386, busyMs: 0 }, 10);
    expect(issued(three.onTick(120))).toEqual([]);
    const two = restarted(2, 69, 386, { epoch: 386, chain: [2] });
    two.onPeerMessage({ type: "heartbeat", from: 3, epoch: 387, chain: [3, 2], status: "booting", appliedSeq: 45, lastEpoch: 387, busyMs: 0 }, 10);
    expect(issued(two.onTick(120)).map((p) => p.kind === "config" && p.config.chain)).toEqual([[2]]);
  });

  // Sim seed 421000723 (default mode): a tail that restarted empty may have acknowledged the
  // updates and lost them: the other server's copy is the only one left.
  test("a tail that restarted empty does not outrank the history of a configuration it may have served", () => {
    const three = restarted(3, 45, 387, { epoch: 387, chain: [3, 2] });
    three.onPeerMessage({ type: "heartbeat", from: 2, epoch: 0, chain: [], status: "booting", appliedSeq: 0, lastEpoch: 0, busyMs: 0 }, 10);
    expect(issued(three.onTick(120)).map((p) => p.kind === "config" && p.config.chain)).toEqual([[3]]);
  });
});

describe("after a pause past --suspect-ms", () => {
  // Sim seed 283024131: the configuration that waited in our sockets while we were stopped made
  // us a member of a chain whose other servers had died; we removed them and served a history
  // older than one a later chain had acknowledged.
  test("a configuration that arrives with the resume makes the server a joiner, not a member", () => {
    const server = new Replica({ selfId: 3, peers: [2, 3], ...REPLICA_OPTIONS }, new StoreState(16 * PS, PS));
    server.onTick(0);
    server.onPeerMessage({ type: "heartbeat", from: 2, epoch: 0, chain: [], status: "booting", appliedSeq: 0, lastEpoch: 0, busyMs: 0 }, 10);
    server.onPeerMessage({ type: "config", from: 2, epoch: 66, chain: [2, 3], issued: true }, 20);
    expect(server.status).toBe("member");
    server.onTick(100);
    server.onTick(5000); // stopped for almost 5 s
    expect(server.status).toBe("booting");
    server.onPeerMessage({ type: "heartbeat", from: 2, epoch: 66, chain: [2, 3], status: "member", appliedSeq: 0, lastEpoch: 0, busyMs: 0 }, 5000);
    server.onPeerMessage({ type: "config", from: 2, epoch: 130, chain: [2, 3], issued: true }, 5000);
    expect([server.status, server.config.epoch]).toEqual(["joining", 130]);
  });
});

describe("silence as the others see it (default mode)", () => {
  /** Server 2, head of [2,3], with 3's heartbeat heard at `nowMs`. */
  function headOfTwo(): Replica {
    const head = new Replica({ selfId: 2, peers: [2, 3], ...REPLICA_OPTIONS }, new StoreState(16 * PS, PS));
    head.onTick(0);
    head.onPeerMessage({ type: "heartbeat", from: 3, epoch: 0, chain: [], status: "booting", appliedSeq: 0, lastEpoch: 0, busyMs: 0 }, 10);
    head.onPeerMessage({ type: "config", from: 3, epoch: 67, chain: [2, 3], issued: true }, 20);
    expect([head.status, head.config.chain]).toEqual(["member", [2, 3]]);
    return head;
  }
  const heartbeatOf3: PeerMessage = { type: "heartbeat", from: 3, epoch: 67, chain: [2, 3], status: "member", appliedSeq: 0, lastEpoch: 0, busyMs: 0 };
  /** Ticks every 50 ms until `untilMs`, hearing 3 at each. */
  function hearing3Until(head: Replica, untilMs: number): void {
    for (let t = 50; t <= untilMs; t += 50) {
      head.onTick(t);
      head.onPeerMessage(heartbeatOf3, t);
    }
  }

  // Sim seed 281005851: our connection to 3 broke, then we were stopped 185 ms (< --suspect-ms / 2);
  // at the resume the tick ran before 3's heartbeat waiting in our socket, we removed 3 and
  // served alone while 3 removed us: two chains.
  test("a server paused shortly after a broken connection reads what waited before it suspects", () => {
    const head = headOfTwo();
    hearing3Until(head, 700);
    head.onPeerDisconnected(3);
    head.onTick(750);
    const resumed = head.onTick(1150); // stopped 400 ms: 3's heartbeats wait unread
    expect(resumed.notes.some((note) => note.includes("removing"))).toBe(false);
    head.onPeerMessage(heartbeatOf3, 1150);
    head.onTick(1200);
    expect(head.config.chain).toEqual([2, 3]);
  });

  test("the same silence without a pause still suspects the peer two heartbeats after the break", () => {
    const head = headOfTwo();
    hearing3Until(head, 700);
    head.onPeerDisconnected(3);
    for (let t = 750; t <= 1000; t += 50) head.onTick(t);
    expect(head.config.chain).toEqual([2]);
  });

  test("heartbeats go out at least every --heartbeat-ms though ticks do not divide it", () => {
    const head = headOfTwo();
    const sentAt: number[] = [];
    for (let t = 47; t <= 2000; t += 47) {
      const step = head.onTick(t);
      if (step.send.some((out) => out.kind === "peer" && out.to === 3 && out.message.type === "heartbeat")) sentAt.push(t);
      head.onPeerMessage(heartbeatOf3, t);
    }
    const gaps = sentAt.slice(1).map((t, i) => t - sentAt[i]!);
    expect(gaps.length).toBeGreaterThan(15);
    expect(Math.max(...gaps)).toBeLessThanOrEqual(REPLICA_OPTIONS.heartbeatMs);
  });

  test("a peer we reconnect to hears from us at once", () => {
    const head = headOfTwo();
    const step = head.onPeerConnected(3);
    expect(step.send.some((out) => out.kind === "peer" && out.to === 3 && out.message.type === "heartbeat")).toBe(true);
  });
});
