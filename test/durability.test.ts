/**
 * Whole-cluster crashes with real server processes and `--fsync always`:
 * every server is killed with SIGKILL at a random moment while 8 clients
 * increment counters, then all restart from their disks. No acknowledged
 * increment may be lost; sessions that never come back expire.
 */
import { afterEach, expect, test } from "bun:test";
import { LocalCluster } from "../src/cli/cluster";
import { type Store, connect } from "../src/index";
import { pstoreCommand, removeDir, spawnChild, tempDir } from "./helpers/processes";
import { IncrementWorkload, verifyCounters } from "./helpers/workload";
import { Random } from "../src/chaos/random";

const CLIENTS = 8;
/** Fewer rounds under CI to stay in its time budget; `CRASH_ROUNDS=200 bun test test/durability.test.ts` for more. */
const ROUNDS = Number(process.env.CRASH_ROUNDS ?? 20);

let cluster: LocalCluster | null = null;
let stores: Store[] = [];
let dataDir = "";

afterEach(async () => {
  for (const store of stores) await store.close().catch(() => {});
  stores = [];
  await cluster?.stop();
  cluster = null;
  removeDir(dataDir);
});

/** A small seeded generator: the crash moments are random but a failure can be replayed. */
function random(seed: number): () => number {
  const generator = new Random(seed);
  return () => generator.next();
}

async function killAll(c: LocalCluster): Promise<void> {
  await Promise.all(c.servers.map((_, i) => c.kill(i, "SIGKILL")));
}

async function restartAll(c: LocalCluster): Promise<void> {
  await Promise.all(c.servers.map((_, i) => c.restart(i)));
}

test(`${ROUNDS} whole-cluster kill -9 and restarts with --fsync always: no acknowledged increment lost`, async () => {
  const seed = Number(process.env.CRASH_SEED ?? Date.now() % 100_000);
  const next = random(seed);
  dataDir = tempDir();
  cluster = new LocalCluster({
    count: 3,
    basePort: 0,
    dataDir,
    command: pstoreCommand(),
    fsync: "always",
    segmentSize: 16 * 1024 * 1024,
    serveArgs: ["--session-timeout-ms", "4000", "--checkpoint-mb", "1"],
  });
  await cluster.start();
  stores = await Promise.all(
    Array.from({ length: CLIENTS }, () => connect({ servers: cluster!.servers, failoverTimeoutMs: 30_000 })),
  );
  const keys = ["shared", ...stores.map((_, i) => `private-${i}`)];
  const workload = new IncrementWorkload(stores, { shared: "shared", privateOf: (i) => `private-${i}` });
  for (const key of keys) {
    await stores[0]!.create(key, 4);
    workload.history.initial(key, 0);
  }
  workload.start();
  for (let round = 0; round < ROUNDS; round++) {
    await Bun.sleep(150 + Math.floor(next() * 450));
    await killAll(cluster);
    await restartAll(cluster);
    // Progress after each restart: the clients found the new chain and resent.
    const restartedAt = workload.elapsedMs;
    const deadline = performance.now() + 20_000;
    while (workload.acknowledgedAfter(restartedAt) < 20 && performance.now() < deadline) await Bun.sleep(20);
    expect(workload.acknowledgedAfter(restartedAt)).toBeGreaterThanOrEqual(20);
  }
  const result = await workload.stop();
  const problems = await verifyCounters(stores[0]!, result, keys);
  if (problems.length > 0) console.log(`seed ${seed}: ${problems.join("\n")}`);
  expect(problems).toEqual([]);
  const acknowledged = [...result.acknowledged.values()].reduce((a, b) => a + b, 0);
  console.log(`seed ${seed}: ${ROUNDS} crashes, ${acknowledged} acknowledged increments, all present`);
}, 600_000);

test("after a whole-cluster crash, a session that does not come back expires and frees its hold", async () => {
  dataDir = tempDir();
  cluster = new LocalCluster({
    count: 3,
    basePort: 0,
    dataDir,
    command: pstoreCommand(),
    fsync: "always",
    segmentSize: 16 * 1024 * 1024,
    serveArgs: ["--session-timeout-ms", "1500"],
  });
  await cluster.start();
  const store = await connect({ servers: cluster.servers, failoverTimeoutMs: 30_000 });
  stores = [store];
  await store.create("orphan", 4);
  await store.withWrite("orphan", (view) => void (new Int32Array(view.buffer, view.byteOffset, 1)[0] = 5));
  const holder = spawnChild([process.execPath, "test/fixtures/hold_and_hang.ts", "orphan", "99"], {
    PSTORE_SERVERS: cluster.servers.join(","),
    SESSION_TIMEOUT_MS: "1500",
  });
  await holder.waitFor(/HELD/, 10_000);
  // A data write after the grant: its sync makes the holder's session and hold durable too.
  await store.create("after", 4);
  holder.proc.kill("SIGKILL");
  await holder.proc.exited;
  await killAll(cluster);
  await restartAll(cluster);
  const started = performance.now();
  const view = await store.accessReadWrite("orphan", { timeoutMs: 15_000 });
  expect(new Int32Array(view.buffer, view.byteOffset, 1)[0]).toBe(5);
  await store.releaseReadWrite(view);
  console.log(`the orphaned hold was freed ${Math.round(performance.now() - started)} ms after the restart`);
}, 60_000);

test("a stale server restarted first waits for the servers of its last chain: it does not wipe what they acknowledged", async () => {
  dataDir = tempDir();
  cluster = new LocalCluster({ count: 3, basePort: 0, dataDir, command: pstoreCommand(), fsync: "always", segmentSize: 4 << 20 });
  await cluster.start();
  const writeValue = async (value: number) => {
    const store = await connect({ servers: cluster!.servers, failoverTimeoutMs: 30_000 });
    await store.withWrite("c", (view) => void (new Int32Array(view.buffer, view.byteOffset, 1)[0] = value));
    await store.close();
  };
  const first = await connect({ servers: cluster.servers });
  await first.create("c", 4);
  await first.close();
  await writeValue(1);
  await cluster.kill(2, "SIGKILL"); // server 3 leaves with the value 1
  await writeValue(2); // acknowledged by servers 1 and 2 only
  await cluster.kill(0, "SIGKILL");
  await cluster.kill(1, "SIGKILL");
  await cluster.restart(2); // the stale one comes back first, alone...
  await Bun.sleep(2500); // ...longer than --suspect-ms: it must still not serve on its own
  await cluster.restart(0);
  await cluster.restart(1);
  const reader = await connect({ servers: cluster.servers, failoverTimeoutMs: 30_000 });
  stores = [reader];
  expect(await reader.withRead("c", (view) => new Int32Array(view.buffer, view.byteOffset, 1)[0])).toBe(2);
}, 60_000);
