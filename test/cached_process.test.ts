/**
 * Cached holds with real server processes (the built binary when it exists): local
 * grants send nothing, a recall moves the datum to the client that waits, a client
 * that caches and dies or stops blocks the others no longer than its session timeout,
 * and counters stay exact with the head killed while recalls are in flight.
 */
import { afterEach, expect, test } from "bun:test";
import { type Store, connect } from "../src/index";
import { clusterPerTest } from "./helpers/cluster";
import { type ServerProcess, removeDir, spawnChild, startServer } from "./helpers/processes";

const clusters = clusterPerTest({ segmentSize: 16 * 1024 * 1024, serveArgs: ["--session-timeout-ms", "5000"] });
const startCluster = () => clusters.start();
const stores = clusters.stores;
let server: ServerProcess | null = null;

afterEach(async () => {
  if (server) {
    await server.stop();
    removeDir(server.dataDir);
    server = null;
  }
});

async function client(servers: string | string[], options: Parameters<typeof connect>[0] = {}): Promise<Store> {
  const store = await connect({ servers, failoverTimeoutMs: 20_000, ...options });
  stores.push(store);
  return store;
}

function int32(view: Uint8Array): Int32Array {
  return new Int32Array(view.buffer, view.byteOffset, 1);
}

async function increment(store: Store, name: string): Promise<void> {
  const view = await store.accessReadWrite(name);
  int32(view)[0]! += 1;
  await store.releaseReadWrite(view);
}

test("a re-access sends nothing; another client's access recalls the grant and sees the write", async () => {
  server = await startServer({ sessionTimeoutMs: 5000 });
  const [a, b] = [await client(server.address), await client(server.address)];
  await a.create("n", 4);
  await increment(a, "n");
  const before = a.stats().requests;
  const view = await a.accessReadWrite("n");
  expect(a.stats().requests).toBe(before); // granted locally
  int32(view)[0]! += 1;
  await a.releaseReadWrite(view); // still one replicated update
  expect(a.stats().requests).toBe(before + 1);
  const read = await a.accessRead("n");
  await a.releaseRead(read);
  expect(a.stats().requests).toBe(before + 1);
  expect(await a.stat("n")).toMatchObject({ writer: false, cachedWriter: true, readers: 0 });
  // b's acquire recalls a's grant: a, idle, gives it back from its event loop.
  const seen = await b.accessRead("n", { timeoutMs: 5000 });
  expect(int32(seen)[0]).toBe(2);
  await b.releaseRead(seen);
  expect(a.stats().recalls).toBe(1);
  expect(await a.stat("n")).toMatchObject({ cachedWriter: false, cachedReaders: 1 });
}, 30_000);

test("cacheHolds false: every access is a request, as before", async () => {
  server = await startServer({ sessionTimeoutMs: 5000 });
  const a = await client(server.address, { cacheHolds: false });
  await a.create("plain", 4);
  await increment(a, "plain");
  const before = a.stats().requests;
  await increment(a, "plain");
  expect(a.stats().requests).toBe(before + 2);
  expect(a.stats().localGrants).toBe(0);
  expect(await a.stat("plain")).toMatchObject({ cachedWriter: false, writer: false });
}, 30_000);

test("delete takes back a grant another client caches", async () => {
  server = await startServer({ sessionTimeoutMs: 5000 });
  const [a, b] = [await client(server.address), await client(server.address)];
  await a.create("doomed", 4);
  await increment(a, "doomed");
  await b.delete("doomed");
  expect(await a.list()).toEqual([]);
  // a's grant went back with the recall: its next access asks the servers.
  await expect(a.accessRead("doomed")).rejects.toMatchObject({ code: "ENOENT" });
}, 30_000);

for (const how of ["SIGKILL", "SIGSTOP"] as const) {
  test(`a client that caches the write grant and is stopped (${how}) blocks another no longer than its session timeout`, async () => {
    const timeoutMs = 1000;
    server = await startServer({ sessionTimeoutMs: timeoutMs });
    const b = await client(server.address);
    await b.create("orphan", 4);
    const holder = spawnChild([process.execPath, "test/fixtures/cache_and_hang.ts", "orphan", "99"], {
      PSTORE_SERVERS: server.address,
      SESSION_TIMEOUT_MS: String(timeoutMs),
    });
    const line = await holder.waitFor(/CACHED local=(\d+) requests=(\d+)/, 10_000);
    expect(line.slice(1)).toEqual(["1", "0"]);
    holder.proc.kill(how);
    try {
      const started = performance.now();
      const view = await b.accessReadWrite("orphan", { timeoutMs: 10_000 });
      const waitedMs = performance.now() - started;
      // The write it released landed before it stopped; only the cached grant stayed.
      expect(int32(view)[0]).toBe(99);
      await b.releaseReadWrite(view);
      console.log(`${how}: waited ${Math.round(waitedMs)} ms for a cached grant (session timeout ${timeoutMs} ms)`);
      expect(waitedMs).toBeLessThan(timeoutMs + 2000);
    } finally {
      if (how === "SIGSTOP") holder.proc.kill("SIGCONT");
      holder.proc.kill("SIGKILL");
      await holder.proc.exited;
    }
  }, 30_000);
}

test("a caching client paused past its session's expiry sees the newer write when it resumes (no stale local grant)", async () => {
  const timeoutMs = 1000;
  server = await startServer({ sessionTimeoutMs: timeoutMs });
  const b = await client(server.address);
  await b.create("lease", 4);
  const poller = spawnChild([process.execPath, "test/fixtures/cache_and_poll.ts", "lease", "99"], {
    PSTORE_SERVERS: server.address,
    SESSION_TIMEOUT_MS: String(timeoutMs),
  });
  try {
    await poller.waitFor(/READ 99 at=\d+ local=true/, 10_000);
    poller.proc.kill("SIGSTOP");
    // Granted once the paused client's session expired (its recall is never answered).
    const view = await b.accessReadWrite("lease", { timeoutMs: 10_000 });
    int32(view)[0] = 555;
    await b.releaseReadWrite(view);
    const writtenAt = Date.now();
    poller.proc.kill("SIGCONT");
    await poller.waitFor(/READ 555 /, 10_000);
    const reads = [...poller.stdout().matchAll(/READ (\d+) at=(\d+) local=(\w+)/g)].map((m) => ({ value: Number(m[1]), at: Number(m[2]), local: m[3] }));
    // No read granted after the newer write saw the old bytes (no stale local grant).
    expect(reads.filter((r) => r.at > writtenAt && r.value !== 555)).toEqual([]);
    expect(reads.filter((r) => r.at > writtenAt).length).toBeGreaterThan(0);
  } finally {
    poller.proc.kill("SIGCONT");
    poller.proc.kill("SIGKILL");
    await poller.proc.exited;
  }
}, 30_000);

async function headIndex(store: Store, servers: string[]): Promise<number> {
  const deadline = performance.now() + 15_000;
  for (;;) {
    const status = await store.status();
    const head = status.chain.find((s) => s.role === "head");
    if (head && status.chain.filter((s) => s.state === "serving").length === 3) return servers.indexOf(head.address);
    if (performance.now() > deadline) throw new Error(`no full chain: ${JSON.stringify(status.chain)}`);
    await Bun.sleep(50);
  }
}

test("two clients alternate on one counter while a third reads; the head is killed during recalls; the counter is exact", async () => {
  const c = await startCluster();
  const [a, b, reader] = [await client(c.servers), await client(c.servers), await client(c.servers)];
  const victim = await headIndex(a, c.servers);
  await a.create("ping", 4);
  let stop = false;
  const done = [0, 0];
  const errors: unknown[] = [];
  // Strict turns: each access finds the other's grant cached and idle, so each one is a recall.
  let turn = 0;
  const writer = async (store: Store, index: number) => {
    while (!stop) {
      if (turn !== index) {
        await Bun.sleep(0);
        continue;
      }
      try {
        await increment(store, "ping");
        done[index]!++;
        turn = 1 - index;
      } catch (error) {
        errors.push(error);
        stop = true;
      }
    }
  };
  let reads = 0;
  let lastSeen = 0;
  let backwards = 0;
  const read = async () => {
    while (!stop) {
      const view = await reader.accessRead("ping");
      const value = int32(view)[0]!;
      await reader.releaseRead(view);
      if (value < lastSeen) backwards++;
      lastSeen = value;
      reads++;
      await Bun.sleep(2);
    }
  };
  const running = [writer(a, 0), writer(b, 1), read().catch((error) => errors.push(error))];
  const deadline = performance.now() + 10_000;
  while (done[0]! + done[1]! < 100 && performance.now() < deadline) await Bun.sleep(10);
  const recallsBefore = a.stats().recalls + b.stats().recalls;
  await c.kill(victim, "SIGKILL");
  const killedAt = done[0]! + done[1]!;
  const after = performance.now() + 15_000;
  while (done[0]! + done[1]! < killedAt + 100 && performance.now() < after) await Bun.sleep(10);
  stop = true;
  await Promise.all(running);
  expect(errors).toEqual([]);
  const view = await reader.accessRead("ping");
  const total = int32(view)[0];
  await reader.releaseRead(view);
  console.log(`alternating: ${done[0]} + ${done[1]} increments (${killedAt} before the head was killed), ${reads} reads, recalls received ${a.stats().recalls} + ${b.stats().recalls} + ${reader.stats().recalls}`);
  expect(total).toBe(done[0]! + done[1]!);
  expect(done[0]! + done[1]!).toBeGreaterThanOrEqual(killedAt + 100);
  expect(backwards).toBe(0);
  // Turns recall the other writer's grant (once per CACHE_BACKOFF_MS: in between, releases hand over).
  expect(recallsBefore).toBeGreaterThan(0);
  expect(a.stats().recalls + b.stats().recalls).toBeGreaterThan(recallsBefore);
}, 90_000);

test("eight clients increment one counter (contended): exact, with and without cached holds", async () => {
  server = await startServer({ sessionTimeoutMs: 5000 });
  for (const cacheHolds of [true, false]) {
    const name = `counter-${cacheHolds}`;
    const all = await Promise.all(Array.from({ length: 8 }, () => client(server!.address, { cacheHolds })));
    await all[0]!.create(name, 4);
    await Promise.all(all.map(async (store) => {
      for (let i = 0; i < 40; i++) await increment(store, name);
    }));
    const view = await all[0]!.accessRead(name);
    expect(int32(view)[0]).toBe(8 * 40);
    await all[0]!.releaseRead(view);
  }
}, 60_000);
