/**
 * The pure core as a user of a storage system sees it: where data land in the
 * segment, which errors leave the store untouched, and who gets a hold and when
 * (FIFO, readers together, writers not starved). Releases, sessions and grants'
 * bytes: core_releases.test.ts; replicas: replica.test.ts, configurations.test.ts.
 */
import { describe, expect, test } from "bun:test";
import { DATUM_BYTES_MAX } from "../src/constants";
import { PageAllocator, StoreState } from "../src/core";
import { PS, Driver, replyTo, holdIdOf, codeOf, grants, pageOf, observable, withDatum } from "./helpers/core";

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
