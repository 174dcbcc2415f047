/**
 * The history checker (src/check/): recording, linearizability per key
 * (Wing–Gong/Lowe with memoisation), hold safety and the counter check.
 * Times are plain numbers here (nanoseconds in real use).
 */
import { describe, expect, test } from "bun:test";
import { History, checkCounter, checkHistory, checkHolds, checkLinearizability, type Op, type Value } from "../src/check";
import { Random } from "../src/chaos/random";

/** A small deterministic generator (the checker itself uses none). */
function rng(seed: number): () => number {
  const random = new Random(seed);
  return () => random.next();
}

/** Record one complete operation. */
function op(h: History, client: string, o: Op, from: number, to: number, result?: Value, outcome: "ok" | "fail" | "unknown" = "ok"): number {
  const id = h.invoke(client, o, from);
  if (outcome === "ok") h.ok(id, result, to);
  else if (outcome === "fail") h.fail(id, "ESESSION", to);
  else h.unknown(id, to);
  return id;
}
const w = (key: string, value: Value): Op => ({ kind: "write", key, value });
const r = (key: string): Op => ({ kind: "read", key });
const rmw = (key: string, value: Value, expected?: Value): Op => (expected === undefined ? { kind: "rmw", key, value } : { kind: "rmw", key, value, expected });

/**
 * `clients` clients each doing `each` increments of `key` under a write hold:
 * intervals overlap in real time (they queue for the hold), but the holds
 * themselves are serialised, so each sees the previous one's value.
 */
function increments(h: History, key: string, clients: number, each: number, rand: () => number, start = 0): { t: number; count: number } {
  h.initial(key, 0);
  const pending: Array<{ client: string; invokeNs: number; left: number }> = [];
  for (let c = 0; c < clients; c++) pending.push({ client: `c${c}`, invokeNs: start + Math.floor(rand() * 10), left: each });
  let t = start + 10;
  let value = 0;
  let count = 0;
  let holdId = 0;
  while (pending.length) {
    // Grant the hold to a random waiting client.
    const i = Math.floor(rand() * pending.length);
    const p = pending[i] as (typeof pending)[number];
    const id = h.invoke(p.client, rmw(key, value + 1), p.invokeNs);
    const hid = `${key}-${holdId++}`;
    t += 1 + Math.floor(rand() * 3);
    h.holdGranted(p.client, key, "write", hid, t);
    t += 1 + Math.floor(rand() * 3);
    h.holdReleased(p.client, key, hid, t);
    t += 1 + Math.floor(rand() * 3);
    h.ok(id, value, t); // the tail's acknowledgement
    value++;
    count++;
    p.invokeNs = t + Math.floor(rand() * 2);
    if (--p.left === 0) pending.splice(i, 1);
  }
  return { t, count };
}

describe("History recording", () => {
  test("round-trips through JSON and refuses a second outcome", () => {
    const h = new History();
    h.initial("x", 0);
    const a = h.invoke("c1", w("x", 1), 10n);
    h.ok(a, undefined, 20);
    const b = h.invoke("c2", r("x"), 15);
    h.unknown(b, 30);
    h.holdGranted("c1", "x", "write", 7, 12);
    h.holdReleased("c1", "x", 7, 18);
    expect(() => h.ok(a, undefined, 40)).toThrow(/already completed/);
    expect(() => h.ok(99, 1, 40)).toThrow(/no such operation/);
    expect(() => h.fail(h.invoke("c3", r("x"), 50), "x", 49)).toThrow(/before its invocation/);
    expect(() => h.ok(h.invoke("c3", r("x"), 60), undefined, 61)).toThrow(/needs the value it saw/);
    const text = JSON.stringify(h);
    const back = History.fromJSON(text);
    expect(back.toJSON()).toEqual(h.toJSON());
    expect(back.ops[0]).toMatchObject({ id: 0, client: "c1", invokeNs: 10, endNs: 20, outcome: "ok" });
    expect(back.holds).toHaveLength(2);
    expect(checkHistory(back).ok).toBe(true);
  });
});

describe("linearizable histories are accepted", () => {
  test("sequential writes and reads", () => {
    const h = new History();
    h.initial("x", 0);
    op(h, "a", r("x"), 0, 1, 0);
    op(h, "a", w("x", 1), 2, 3);
    op(h, "b", r("x"), 4, 5, 1);
    op(h, "b", w("x", 2), 6, 7);
    op(h, "a", rmw("x", 3), 8, 9, 2);
    op(h, "a", r("x"), 10, 11, 3);
    expect(checkLinearizability(h)).toMatchObject({ ok: true, keys: 1, ops: 6 });
  });

  test("concurrent writes with a read seeing either", () => {
    for (const seen of [1, 2]) {
      const h = new History();
      h.initial("x", 0);
      op(h, "a", w("x", 1), 0, 10);
      op(h, "b", w("x", 2), 5, 15);
      op(h, "c", r("x"), 20, 21, seen);
      // and the second read agrees with the first
      op(h, "c", r("x"), 22, 23, seen);
      expect(checkLinearizability(h).ok).toBe(true);
    }
    // A read concurrent with a write may see the old or the new value.
    for (const seen of [0, 1]) {
      const h = new History();
      h.initial("x", 0);
      op(h, "a", w("x", 1), 0, 10);
      op(h, "b", r("x"), 5, 6, seen);
      expect(checkLinearizability(h).ok).toBe(true);
    }
  });

  test("increments from 3 clients, interleaved in time, each under its hold", () => {
    for (let seed = 1; seed <= 20; seed++) {
      const h = new History();
      h.initial("n", 0);
      const { count } = increments(h, "n", 3, 15, rng(seed));
      expect(checkHistory(h)).toMatchObject({ ok: true, explanation: "" });
      expect(checkCounter(h, "n", count)).toEqual({ ok: true, acknowledged: 45, unknown: 0, unknownApplied: 0 });
    }
  });

  test("unknown writes that did or did not take effect", () => {
    for (const seen of [0, 1]) {
      const h = new History();
      h.initial("x", 0);
      op(h, "a", w("x", 1), 0, 5, undefined, "unknown");
      op(h, "b", r("x"), 100, 101, seen);
      op(h, "b", r("x"), 102, 103, seen);
      expect(checkLinearizability(h).ok).toBe(true);
    }
    // It may take effect late, long after the client gave up on it...
    const late = new History();
    late.initial("x", 0);
    op(late, "a", w("x", 1), 0, 5, undefined, "unknown");
    op(late, "b", r("x"), 100, 101, 0);
    op(late, "b", r("x"), 102, 103, 1);
    expect(checkLinearizability(late).ok).toBe(true);
    // ...but not before it was invoked, and a failed write never takes effect.
    const early = new History();
    early.initial("x", 0);
    op(early, "b", r("x"), 0, 1, 1);
    op(early, "a", w("x", 1), 2, 5, undefined, "unknown");
    expect(checkLinearizability(early).ok).toBe(false);
    const failed = new History();
    failed.initial("x", 0);
    op(failed, "a", w("x", 1), 0, 5, undefined, "fail");
    op(failed, "b", r("x"), 10, 11, 1);
    const res = checkLinearizability(failed);
    expect(res.ok).toBe(false);
    if (res.ok === false) expect(res.explanation).toMatch(/only #0 wrote it, and it failed/);
    // An unknown rmw that knows what it saw can only take effect where the value was that.
    const u = new History();
    u.initial("n", 0);
    op(u, "a", rmw("n", 1, 0), 0, 5, undefined, "unknown");
    op(u, "b", rmw("n", 1), 10, 20, 0);
    op(u, "c", r("n"), 30, 31, 2);
    expect(checkLinearizability(u).ok).toBe(false);
    const u2 = new History();
    u2.initial("n", 0);
    op(u2, "a", rmw("n", 1, 0), 0, 5, undefined, "unknown");
    op(u2, "c", r("n"), 30, 31, 1);
    op(u2, "b", rmw("n", 2), 40, 50, 1);
    expect(checkLinearizability(u2).ok).toBe(true);
  });
});

describe("non-linearizable histories are rejected with an explanation", () => {
  test("a stale read after a completed write", () => {
    const h = new History();
    h.initial("x", 0);
    const wid = op(h, "a", w("x", 1), 0, 10);
    const rid = op(h, "b", r("x"), 20, 30, 0);
    const res = checkLinearizability(h);
    expect(res.ok).toBe(false);
    if (res.ok !== false) return;
    expect(res.key).toBe("x");
    expect(res.prefix).toEqual([wid]);
    expect(res.stuck[0]).toBe(rid);
    expect(res.state).toBe(1);
    expect(res.explanation).toContain("register holds 1");
    expect(res.explanation).toContain(`#${rid} client b x: read → 0`);
  });

  test("two acknowledged rmw that saw the same value (a lost update)", () => {
    const h = new History();
    h.initial("n", 0);
    op(h, "p", rmw("n", 1), 0, 1, 0); // an earlier, fine increment
    const a = op(h, "a", rmw("n", 2), 10, 20, 1);
    const b = op(h, "b", rmw("n", 2), 12, 25, 1);
    const res = checkLinearizability(h);
    expect(res.ok).toBe(false);
    if (res.ok !== false) return;
    expect(res.prefix).toHaveLength(2);
    expect(new Set([res.prefix[1], res.stuck[0]])).toEqual(new Set([a, b]));
    expect(res.explanation).toMatch(/rmw saw 1 wrote 2/);
    expect(checkCounter(h, "n", 2)).toMatchObject({ ok: false, ops: [a, b] });
  });

  test("a read of a value never written", () => {
    const h = new History();
    h.initial("x", 0);
    op(h, "a", w("x", 1), 0, 10);
    const rid = op(h, "b", r("x"), 5, 30, 42);
    const res = checkLinearizability(h);
    expect(res).toMatchObject({ ok: false, key: "x", stuck: [rid] });
    if (res.ok === false) expect(res.explanation).toMatch(/no operation wrote 42, and it is not the initial value 0, yet\n.*read → 42/);
  });

  test("a read going back in time, found by the search", () => {
    // Values were all written, so only the search can see the problem.
    const h = new History();
    h.initial("x", 0);
    op(h, "a", w("x", 1), 0, 100);
    op(h, "b", r("x"), 10, 20, 1);
    const back = op(h, "c", r("x"), 30, 40, 0);
    const res = checkLinearizability(h);
    expect(res.ok).toBe(false);
    if (res.ok !== false) return;
    expect(res.stuck[0]).toBe(back);
    expect(res.explanation).toContain("Linearizable prefix reached");
    expect(res.explanation).toContain("no operation left can write that");
  });

  test("a failure on one key among many names that key", () => {
    const h = new History();
    for (let k = 0; k < 5; k++) {
      h.initial(`k${k}`, 0);
      op(h, "a", w(`k${k}`, 1), 0, 10);
      op(h, "b", r(`k${k}`), 20, 30, k === 3 ? 0 : 1);
    }
    expect(checkLinearizability(h)).toMatchObject({ ok: false, key: "k3" });
    expect(checkLinearizability(h, { keys: ["k0", "k1"] }).ok).toBe(true);
  });
});

describe("agrees with a brute-force search", () => {
  /** Every order of the operations, with real-time order and optional unknown ones: the definition itself. */
  function brute(h: History, initial: Value): boolean {
    const ops = h.ops.filter((o) => o.outcome !== "fail" && !(o.op.kind === "read" && o.outcome !== "ok"));
    const used = ops.map(() => false);
    const search = (state: Value): boolean => {
      if (ops.every((o, i) => used[i] || o.outcome !== "ok")) return true;
      for (let i = 0; i < ops.length; i++) {
        const o = ops[i] as (typeof ops)[number];
        if (used[i]) continue;
        // Nothing still unplaced may have returned before this one was invoked.
        if (ops.some((q, j) => !used[j] && j !== i && q.outcome === "ok" && (q.endNs as number) < o.invokeNs)) continue;
        let next = state;
        if (o.op.kind === "read") {
          if (o.result !== state) continue;
        } else if (o.op.kind === "write") next = o.op.value;
        else {
          const seen = o.outcome === "ok" && o.result !== undefined ? o.result : o.op.expected;
          if (seen !== undefined && seen !== state) continue;
          next = o.op.value;
        }
        used[i] = true;
        const found = search(next);
        used[i] = false;
        if (found) return true;
      }
      return false;
    };
    return search(initial);
  }

  test("on 3,000 small random histories with every kind of outcome", () => {
    let linearizable = 0;
    for (let seed = 1; seed <= 3000; seed++) {
      const rand = rng(seed);
      const h = new History();
      h.initial("x", 0);
      const n = 2 + Math.floor(rand() * 8);
      for (let i = 0; i < n; i++) {
        const from = Math.floor(rand() * 20);
        const to = from + Math.floor(rand() * 10);
        const roll = rand();
        const v = Math.floor(rand() * 3);
        let o: Op = roll < 0.4 ? r("x") : roll < 0.7 ? w("x", v) : rmw("x", v);
        const outcome = ((x) => (x < 0.75 ? "ok" : x < 0.9 ? "unknown" : "fail"))(rand());
        if (o.kind === "rmw" && outcome !== "ok" && rand() < 0.5) o = rmw("x", v, Math.floor(rand() * 3));
        op(h, `c${i}`, o, from, to, o.kind === "write" ? undefined : Math.floor(rand() * 3), outcome);
      }
      const expected = brute(h, 0);
      const got = checkLinearizability(h);
      if ((got.ok === true) !== expected) throw new Error(`seed ${seed}: checker says ${got.ok}, brute force ${expected}: ${JSON.stringify(h)}`);
      if (expected) linearizable++;
    }
    // Both answers are well represented.
    expect(linearizable).toBeGreaterThan(500);
    expect(linearizable).toBeLessThan(2500);
  });
});

describe("per-key partitioning and bounds", () => {
  function manyKeys(keys: number, opsPerKey: number, seed: number, corrupt?: number): History {
    const rand = rng(seed);
    const h = new History();
    for (let k = 0; k < keys; k++) {
      const key = `k${k}`;
      h.initial(key, 0);
      let t = 0;
      let value = 0;
      for (let i = 0; i < opsPerKey; i++) {
        // Three clients overlap; the effect lands at a point inside each interval.
        const at = t + 5;
        const from = at - 1 - Math.floor(rand() * 5);
        const to = at + 1 + Math.floor(rand() * 5);
        const roll = rand();
        if (roll < 0.4) op(h, `c${i % 3}`, r(key), from, to, k === corrupt && i === opsPerKey - 1 ? value + 7 : value);
        else if (roll < 0.7) op(h, `c${i % 3}`, w(key, ++value), from, to);
        else {
          op(h, `c${i % 3}`, rmw(key, value + 1), from, to, value);
          value++;
        }
        t = at;
      }
    }
    return h;
  }

  test("50 keys × 20 overlapping operations check in well under a second", () => {
    const h = manyKeys(50, 20, 7);
    const t0 = performance.now();
    const res = checkLinearizability(h);
    const ms = performance.now() - t0;
    expect(res).toMatchObject({ ok: true, keys: 50, ops: 1000 });
    expect(ms).toBeLessThan(1000);
    // The same with a bad read on key 31: found, and named.
    const bad = manyKeys(50, 20, 7, 31);
    expect(checkLinearizability(bad)).toMatchObject({ ok: false, key: "k31" });
  });

  test("memoisation of (linearized set, value) keeps concurrent writes tractable", () => {
    // 12 concurrent writes, then reads of 1 and then 2: 12! orders, but only
    // 2^12 × 13 distinct (set, value) nodes.
    const h = new History();
    h.initial("x", 0);
    for (let i = 1; i <= 12; i++) op(h, `c${i}`, w("x", i), 0, 100);
    op(h, "r", r("x"), 200, 201, 1);
    op(h, "r", r("x"), 202, 203, 2);
    expect(checkLinearizability(h, { maxSteps: 5_000_000 }).ok).toBe(false);
  });

  test("a bounded search answers unknown instead of hanging", () => {
    // 24 writes of distinct values, all concurrent, then two reads in turn
    // seeing 1 and 2: not linearizable (the value cannot change once every
    // write is done), but proving it means trying the orders of the 22 other
    // writes that the memo cannot merge (2^22 sets × last value).
    const h = new History();
    h.initial("x", 0);
    for (let i = 1; i <= 24; i++) op(h, `c${i}`, w("x", i), 0, 100);
    op(h, "r", r("x"), 200, 201, 1);
    op(h, "r", r("x"), 202, 203, 2);
    const t0 = performance.now();
    const res = checkLinearizability(h, { maxSteps: 20_000 });
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(res).toMatchObject({ ok: "unknown", key: "x" });
    if (res.ok === "unknown") expect(res.reason).toContain("maxSteps");
    expect(checkHistory(h, { maxSteps: 20_000 }).ok).toBe("unknown");
    // A definite failure on another key still wins over an unknown.
    op(h, "a", w("y", 1), 0, 10);
    op(h, "b", r("y"), 20, 30, null);
    expect(checkLinearizability(h, { maxSteps: 20_000 })).toMatchObject({ ok: false, key: "y" });
    // With a few writes only, the same shape is decided.
    const small = new History();
    small.initial("x", 0);
    for (let i = 1; i <= 6; i++) op(small, `c${i}`, w("x", i), 0, 100);
    op(small, "r", r("x"), 200, 201, 1);
    op(small, "r", r("x"), 202, 203, 2);
    expect(checkLinearizability(small, { maxSteps: 20_000 }).ok).toBe(false);
  });
});

describe("hold safety", () => {
  test("overlapping write holds are detected, and the pair is named", () => {
    const h = new History();
    h.holdGranted("a", "x", "write", 1, 10);
    h.holdGranted("b", "x", "write", 2, 15);
    h.holdReleased("a", "x", 1, 20);
    h.holdReleased("b", "x", 2, 25);
    const res = checkHolds(h);
    expect(res.ok).toBe(false);
    if (res.ok !== false || !("a" in res)) throw new Error("expected a pair");
    expect([res.a.client, res.b.client]).toEqual(["a", "b"]);
    expect(res.explanation).toContain("write hold 1 of client a");
    expect(res.explanation).toContain("write hold 2 of client b");
    // A reader inside a writer's hold is as bad.
    const rw = new History();
    rw.holdGranted("a", "x", "write", 1, 10);
    rw.holdGranted("b", "x", "read", 2, 12);
    rw.holdReleased("b", "x", 2, 13);
    rw.holdReleased("a", "x", 1, 20);
    expect(checkHolds(rw)).toMatchObject({ ok: false, key: "x" });
    // A lost hold is certain only at its grant: a grant inside another write hold still counts.
    const lost = new History();
    lost.holdGranted("a", "x", "write", 1, 10);
    lost.holdGranted("b", "x", "write", 2, 15);
    lost.holdLost("b", "x", 2, 50);
    lost.holdReleased("a", "x", 1, 20);
    expect(checkHolds(lost).ok).toBe(false);
  });

  test("adjacent holds (release, then grant) and overlapping reads are accepted", () => {
    const h = new History();
    h.holdGranted("a", "x", "write", 1, 10);
    h.holdReleased("a", "x", 1, 20);
    h.holdGranted("b", "x", "write", 2, 20);
    h.holdReleased("b", "x", 2, 30);
    h.holdGranted("c", "x", "read", 3, 31);
    h.holdGranted("d", "x", "read", 4, 32);
    h.holdReleased("c", "x", 3, 40);
    h.holdReleased("d", "x", 4, 41);
    // Write holds on different keys may overlap.
    h.holdGranted("a", "y", "write", 5, 10);
    h.holdGranted("b", "z", "write", 6, 11);
    h.holdReleased("a", "y", 5, 50);
    h.holdReleased("b", "z", 6, 50);
    // A lost hold granted before another began is not a certain overlap.
    h.holdGranted("e", "x", "write", 7, 45);
    h.holdLost("e", "x", 7, 100);
    h.holdGranted("f", "x", "write", 8, 60);
    h.holdReleased("f", "x", 8, 70);
    expect(checkHolds(h)).toEqual({ ok: true, holds: 8, keys: 3 });
  });

  test("malformed hold events are reported", () => {
    const h = new History();
    h.holdReleased("a", "x", 1, 10);
    expect(checkHolds(h)).toMatchObject({ ok: false, key: "x", malformed: expect.stringContaining("without a grant") });
  });
});

describe("counter check", () => {
  function counter(unknowns: Array<"applied" | "lost">): { h: History; final: number } {
    const h = new History();
    h.initial("n", 0);
    let v = 0;
    let t = 0;
    for (let i = 0; i < 10; i++) {
      op(h, `c${i % 3}`, rmw("n", v + 1), t, t + 5, v);
      v++;
      t += 10;
    }
    for (const u of unknowns) {
      // Seen v under the hold, then the connection dropped during the release.
      op(h, "c9", rmw("n", v + 1, v), t, t + 5, undefined, "unknown");
      if (u === "applied") v++;
      t += 10;
      op(h, "c0", rmw("n", v + 1), t, t + 5, v);
      v++;
      t += 10;
    }
    op(h, "c1", rmw("n", v + 5), t, t + 5, undefined, "fail"); // definitely not applied
    return { h, final: v };
  }

  test("exact", () => {
    const { h, final } = counter([]);
    expect(checkCounter(h, "n", final)).toEqual({ ok: true, acknowledged: 10, unknown: 0, unknownApplied: 0 });
    expect(checkCounter(h, "n", final - 1)).toMatchObject({ ok: false, explanation: expect.stringContaining("acknowledged increment(s) lost") });
    expect(checkCounter(h, "n", final + 1)).toMatchObject({ ok: false });
  });

  test("with unknowns", () => {
    const { h, final } = counter(["applied", "lost", "applied"]);
    expect(final).toBe(15);
    expect(checkCounter(h, "n", final)).toEqual({ ok: true, acknowledged: 13, unknown: 3, unknownApplied: 2 });
    expect(checkHistory(h).ok).toBe(true);
    // Each count between 13 and 16 is allowed by the count alone...
    expect(checkCounter(h, "n", 16)).toMatchObject({ ok: true, unknownApplied: 3 });
    expect(checkCounter(h, "n", 17).ok).toBe(false);
    // ...and the seen values must fit below the final value.
    expect(checkCounter(h, "n", 13).ok).toBe(false);
  });

  test("a lost update is detected", () => {
    const h = new History();
    h.initial("n", 0);
    op(h, "a", rmw("n", 1), 0, 10, 0);
    const a = op(h, "a", rmw("n", 2), 20, 30, 1);
    const b = op(h, "b", rmw("n", 2), 22, 32, 1);
    const res = checkCounter(h, "n", 2);
    expect(res).toMatchObject({ ok: false, ops: [a, b] });
    if (res.ok === false) expect(res.explanation).toContain("lost update");
    expect(checkHistory(h).ok).toBe(false);
  });
});

describe("speed", () => {
  test("a 10k-operation history: 8 clients on one contended counter and private keys", () => {
    const rand = rng(42);
    const h = new History();
    h.initial("shared", 0);
    const { t } = increments(h, "shared", 8, 500, rand); // 4,000 contended increments
    for (let c = 0; c < 8; c++) increments(h, `private-${c}`, 1, 750, rand, t); // 6,000 more
    expect(h.ops.length).toBe(10_000);
    const t0 = performance.now();
    const res = checkHistory(h);
    const ms = performance.now() - t0;
    expect(res.explanation).toBe("");
    expect(res.ok).toBe(true);
    expect(checkCounter(h, "shared", 4000)).toMatchObject({ ok: true });
    console.log(`checkHistory on ${h.ops.length} operations: ${ms.toFixed(0)} ms`);
    expect(ms).toBeLessThan(10_000);
  });
});
