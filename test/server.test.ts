/**
 * One server end to end: real `pstore serve` processes, clients in this
 * process and in child processes.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { codeOf } from "./helpers/errors";
import { PStoreError, type Store, connect } from "../src/index";
import { type ServerProcess, removeDir, spawnChild, startServer } from "./helpers/processes";

let server: ServerProcess;
const stores: Store[] = [];

async function client(sessionTimeoutMs?: number): Promise<Store> {
  const store = await connect({ servers: server.address, sessionTimeoutMs });
  stores.push(store);
  return store;
}

function int32(view: Uint8Array): Int32Array {
  return new Int32Array(view.buffer, view.byteOffset, 1);
}

/** Resolves to "pending" if `promise` has not settled within `ms`. */
async function settledWithin<T>(promise: Promise<T>, ms: number): Promise<T | "pending"> {
  return Promise.race([promise, Bun.sleep(ms).then(() => "pending" as const)]);
}


beforeAll(async () => {
  server = await startServer({ segmentSize: "128MiB", sessionTimeoutMs: 1000 });
});

afterEach(async () => {
  for (const store of stores.splice(0)) await store.close();
});

afterAll(async () => {
  expect(await server.stop()).toBe(0);
  removeDir(server.dataDir);
});

describe("the seed's example", () => {
  test("a process writes 23*45 and another process reads 1035", async () => {
    const env = { PSTORE_SERVERS: server.address };
    const writer = spawnChild([process.execPath, "test/fixtures/seed_example.ts"], env);
    expect(await writer.proc.exited).toBe(0);
    const reader = spawnChild([process.execPath, "test/fixtures/seed_reader.ts", "compteur"], env);
    expect(await reader.proc.exited).toBe(0);
    expect(reader.stdout().trim()).toBe("1035");
  });
});

describe("holds", () => {
  test("a reader blocks while a writer holds, then sees the write", async () => {
    const [a, b] = [await client(), await client()];
    await a.create("rw-1", 4);
    const w = await a.accessReadWrite("rw-1");
    int32(w)[0] = 7;
    const read = b.accessRead("rw-1");
    expect(await settledWithin(read, 200)).toBe("pending");
    await a.releaseReadWrite(w);
    const r = await read;
    expect(int32(r)[0]).toBe(7);
    await b.releaseRead(r);
  });

  test("a writer blocks while readers hold", async () => {
    const [a, b, c] = [await client(), await client(), await client()];
    await a.create("rw-2", 4);
    const r1 = await a.accessRead("rw-2");
    const r2 = await b.accessRead("rw-2"); // readers share
    const write = c.accessReadWrite("rw-2");
    expect(await settledWithin(write, 200)).toBe("pending");
    await a.releaseRead(r1);
    expect(await settledWithin(write, 200)).toBe("pending");
    await b.releaseRead(r2);
    await c.releaseReadWrite(await write);
  });

  test("grants follow the order of arrival; readers at the front go together; a writer is not starved", async () => {
    const [a, b, c, d, e] = [await client(), await client(), await client(), await client(), await client()];
    await a.create("fifo", 4);
    const order: string[] = [];
    const held = await a.accessReadWrite("fifo");
    const rb = b.accessRead("fifo").then((v) => (order.push("b:read"), v));
    await Bun.sleep(30);
    const rc = c.accessRead("fifo").then((v) => (order.push("c:read"), v));
    await Bun.sleep(30);
    const wd = d.accessReadWrite("fifo").then((v) => (order.push("d:write"), v));
    await Bun.sleep(30);
    const re = e.accessRead("fifo").then((v) => (order.push("e:read"), v));
    await Bun.sleep(100);
    expect(order).toEqual([]);
    await a.releaseReadWrite(held);
    const [vb, vc] = [await rb, await rc];
    expect(await settledWithin(wd, 150)).toBe("pending");
    // e came after the waiting writer d: it must not overtake it.
    expect(await settledWithin(re, 50)).toBe("pending");
    await b.releaseRead(vb);
    await c.releaseRead(vc);
    const vd = await wd;
    expect(await settledWithin(re, 100)).toBe("pending");
    await d.releaseReadWrite(vd);
    await e.releaseRead(await re);
    expect(order).toEqual(["b:read", "c:read", "d:write", "e:read"]);
  });

  test("a wait that times out gives ETIMEDOUT and leaves the queue clean", async () => {
    const [a, b, c] = [await client(), await client(), await client()];
    await a.create("timeout", 4);
    const held = await a.accessReadWrite("timeout");
    const started = performance.now();
    expect(await codeOf(b.accessReadWrite("timeout", { timeoutMs: 300 }))).toBe("ETIMEDOUT");
    expect(performance.now() - started).toBeGreaterThanOrEqual(290);
    expect((await c.stat("timeout")).waiters).toBe(0);
    await a.releaseReadWrite(held);
    // Nobody is left in the queue: the next access is granted at once.
    const again = await settledWithin(c.accessRead("timeout"), 1000);
    expect(again).not.toBe("pending");
    await c.releaseRead(again as Uint8Array);
  });

  test("an aborted wait gives ECANCELED and leaves no hold", async () => {
    const [a, b] = [await client(), await client()];
    await a.create("abort", 4);
    const held = await a.accessRead("abort");
    const controller = new AbortController();
    const waiting = b.accessReadWrite("abort", { signal: controller.signal });
    await Bun.sleep(50);
    controller.abort();
    expect(await codeOf(waiting)).toBe("ECANCELED");
    await a.releaseRead(held);
    const info = await a.stat("abort");
    expect([info.readers, info.writer, info.waiters]).toEqual([0, false, 0]);
  });

  test("acquiring what the session already holds is EDEADLK, not a hang", async () => {
    const a = await client();
    await a.create("self", 4);
    const held = await a.accessReadWrite("self");
    expect(await codeOf(a.accessRead("self", { timeoutMs: 2000 }))).toBe("EDEADLK");
    await a.releaseReadWrite(held);
  });
});

describe("sessions", () => {
  test("a client killed while holding the write hold blocks others only until its session expires, and its write is not visible", async () => {
    const a = await client();
    await a.create("crash", 4);
    await a.withWrite("crash", (view) => void (int32(view)[0] = 41));
    const holder = spawnChild([process.execPath, "test/fixtures/hold_and_hang.ts", "crash", "99"], {
      PSTORE_SERVERS: server.address,
      SESSION_TIMEOUT_MS: "1000",
    });
    await holder.waitFor(/HELD/, 10_000);
    holder.proc.kill("SIGKILL");
    await holder.proc.exited;
    const started = performance.now();
    const view = await a.accessReadWrite("crash", { timeoutMs: 5000 });
    const waitedMs = performance.now() - started;
    expect(int32(view)[0]).toBe(41);
    expect(waitedMs).toBeLessThan(3000);
    await a.releaseReadWrite(view);
  });
});

describe("pages on the wire", () => {
  test("1 changed byte in a 64 MiB datum ships 1 page; a client with no copy gets that page only; re-acquiring unchanged data transfers none", async () => {
    // Sessions outlive a 64 MiB copy on a loaded machine (the server's 1 s default here is for the expiry tests).
    const [a, b] = [await client(10_000), await client(10_000)];
    await a.create("big", 64 * 1024 * 1024);
    const first = await a.accessReadWrite("big");
    const before = a.stats();
    first[5_000_000] = 1;
    await a.releaseReadWrite(first);
    expect(a.stats().pagesSent - before.pagesSent).toBe(1);

    const received = a.stats().pagesReceived;
    const again = await a.accessRead("big");
    expect(again[5_000_000]).toBe(1);
    await a.releaseRead(again);
    expect(a.stats().pagesReceived).toBe(received);

    // b has no copy: it gets the one page written since the creation, and zeroes the others.
    const fresh = await b.accessRead("big");
    expect(fresh[5_000_000]).toBe(1);
    expect(fresh.every((byte, i) => byte === (i === 5_000_000 ? 1 : 0))).toBe(true);
    expect(b.stats().pagesReceived).toBe(1);
    await b.releaseRead(fresh);
    const update = await a.accessReadWrite("big");
    update[0] = 2;
    await a.releaseReadWrite(update);
    const b0 = b.stats().pagesReceived;
    const seen = await b.accessRead("big");
    expect([seen[0], seen[5_000_000]]).toEqual([2, 1]);
    expect(b.stats().pagesReceived - b0).toBe(1);
    await b.releaseRead(seen);
  });

  test("large rewrites one after another each reach another client byte for byte (their packing buffer is reused)", async () => {
    const [a, b] = [await client(10_000), await client(10_000)];
    const size = 16 * 1024 * 1024;
    await a.create("rewritten", size);
    const pattern = (round: number, i: number) => (i * 7 + round * 13 + (i >> 12)) & 0xff;
    // The third rewrite changes half the pages: a smaller release packed into part of the kept buffer.
    for (const [round, end] of [[1, size], [2, size], [3, size / 2]] as const) {
      const view = await a.accessReadWrite("rewritten");
      for (let i = 0; i < end; i++) view[i] = pattern(round, i);
      await a.releaseReadWrite(view);
      const seen = await b.accessRead("rewritten");
      let wrong = -1;
      for (let i = 0; i < size && wrong < 0; i++) if (seen[i] !== pattern(i < end ? round : 2, i)) wrong = i;
      await b.releaseRead(seen);
      expect({ round, wrong }).toEqual({ round, wrong: -1 });
    }
  });
});

describe("bad creates", () => {
  test("duplicate, zero, oversized and badly named creates fail with their code and change nothing", async () => {
    const a = await client();
    await a.create("exists", 8);
    const before = await a.list();
    expect(await codeOf(a.create("exists", 8))).toBe("EEXIST");
    expect(await codeOf(a.create("zero", 0))).toBe("EINVAL");
    expect(await codeOf(a.create("negative", -4))).toBe("EINVAL");
    expect(await codeOf(a.create("fraction", 1.5))).toBe("EINVAL");
    expect(await codeOf(a.create("huge", 1024 * 1024 * 1024))).toBe("ENOSPC");
    expect(await codeOf(a.create("", 4))).toBe("EINVAL");
    expect(await codeOf(a.create("x".repeat(256), 4))).toBe("EINVAL");
    expect(await codeOf(a.create("bad\nname", 4))).toBe("EINVAL");
    expect(await a.list()).toEqual(before);
    expect(await codeOf(a.stat("zero"))).toBe("ENOENT");
  });

  test("bad timeouts are EINVAL naming the option, before anything is sent: connect's and an access's", async () => {
    const bad = { connectTimeoutMs: -5, failoverTimeoutMs: Number.NaN, sessionTimeoutMs: 10 } as const;
    for (const [option, value] of Object.entries(bad)) {
      const error = await connect({ servers: server.address, [option]: value }).then(() => null, (caught: PStoreError) => caught);
      expect([option, error?.code, error?.message]).toEqual([option, "EINVAL", expect.stringContaining(`${option} must be a number of milliseconds from`)]);
    }
    const a = await client();
    await a.create("bad-timeout", 4);
    for (const timeoutMs of [-1, Number.POSITIVE_INFINITY, 2 ** 31]) {
      expect(await a.accessRead("bad-timeout", { timeoutMs }).then(() => "granted", (caught: PStoreError) => caught.message)).toStartWith("EINVAL: timeoutMs must be");
    }
    // Nothing was queued by the refused accesses: a write hold is granted at once.
    await a.releaseReadWrite(await a.accessReadWrite("bad-timeout", { timeoutMs: 0 }));
  });

  test("delete refuses a held datum and frees the pages of a released one", async () => {
    const a = await client();
    await a.create("doomed", 4096);
    const held = await a.accessRead("doomed");
    expect(await codeOf(a.delete("doomed"))).toBe("EBUSY");
    await a.releaseRead(held);
    await a.delete("doomed");
    expect(await codeOf(a.stat("doomed"))).toBe("ENOENT");
    expect(await codeOf(a.accessRead("doomed"))).toBe("ENOENT");
  });
});

describe("long sessions", () => {
  test("after a timed-out wait the session goes on: 1,500 more cycles work (no request stays pending forever)", async () => {
    const [a, b] = [await client(), await client()];
    await a.create("x-held", 4);
    await b.create("y-free", 4);
    const held = await a.accessReadWrite("x-held");
    expect(await codeOf(b.accessReadWrite("x-held", { timeoutMs: 100 }))).toBe("ETIMEDOUT");
    await a.releaseReadWrite(held);
    for (let i = 0; i < 1500; i++) await b.withWrite("y-free", (view) => void (view[0] = i & 0xff));
    expect(await b.withRead("y-free", (view) => view[0])).toBe(1499 & 0xff);
  }, 60_000);
});
