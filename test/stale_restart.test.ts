/**
 * A restart after a total outage serves no stale history (issue 11, item 2):
 * the server with the oldest configuration, restarted alone, waits for the
 * servers of its last chain instead of serving what it has; once they are back
 * the cluster serves every acknowledged write. `--force-boot` is the
 * operator's way out when those servers are gone for good: it serves at once
 * and logs what may be lost.
 */
import { afterEach, expect, test } from "bun:test";
import { LocalCluster } from "../src/cli/cluster";
import { type Store, connect } from "../src/index";
import { pstoreCommand, removeDir, tempDir } from "./helpers/processes";

let cluster: LocalCluster | null = null;
let store: Store | null = null;
let dataDir = "";

afterEach(async () => {
  await store?.close().catch(() => {});
  store = null;
  await cluster?.stop();
  cluster = null;
  removeDir(dataDir);
});

async function increment(s: Store, name: string, times: number): Promise<void> {
  for (let i = 0; i < times; i++) {
    await s.withWrite(name, (view) => {
      const counter = new Int32Array(view.buffer, view.byteOffset, 1);
      counter[0] = counter[0]! + 1;
    });
  }
}

async function readCounter(s: Store, name: string): Promise<number> {
  return s.withRead(name, (view) => new Int32Array(view.buffer, view.byteOffset, 1)[0]!);
}

/** The ids of the servers in the chain, in order. */
async function serving(s: Store): Promise<number[]> {
  return (await s.status()).chain.filter((server) => ["head", "middle", "tail", "single"].includes(server.role)).map((server) => server.id);
}

/** Polls until `check` holds, for at most `ms`. */
async function until(ms: number, what: string, check: () => boolean | Promise<boolean>): Promise<void> {
  const deadline = performance.now() + ms;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await Bun.sleep(50);
  }
}

test("after a total outage the server with the oldest configuration does not serve alone; with the others back, every acknowledged write is there", async () => {
  dataDir = tempDir();
  const logs: string[][] = [[], [], []];
  cluster = new LocalCluster({
    count: 3,
    basePort: 0,
    dataDir,
    command: pstoreCommand(),
    fsync: "always",
    segmentSize: 1024 * 1024,
    serveArgs: ["--suspect-ms", "400", "--heartbeat-ms", "50"],
    onLog: (index, line) => logs[index]!.push(line),
  });
  await cluster.start();
  store = await connect({ servers: cluster.servers, failoverTimeoutMs: 20_000 });
  // All three serve before 3 dies, as the test assumes: 3 must know a chain of 1, 2 and 3.
  await until(15_000, "a chain of servers 1, 2 and 3", async () => (await serving(store!)).length === 3);
  await store.create("counter", 4);
  await increment(store, "counter", 20);

  // Server 3 dies; the others go on without it: its configuration is now the oldest.
  await cluster.kill(2, "SIGKILL");
  await until(10_000, "a chain of servers 1 and 2", async () => (await serving(store!)).join() === "1,2");
  await increment(store, "counter", 30);
  await store.close();
  store = null;

  // Total outage; server 3 comes back first, alone.
  await Promise.all([cluster.kill(0, "SIGKILL"), cluster.kill(1, "SIGKILL")]);
  await cluster.restart(2);
  await Bun.sleep(2000); // five times --suspect-ms: long enough to have formed a chain
  const outcome = await connect({ servers: [cluster.servers[2]!], failoverTimeoutMs: 1500 }).then(
    async (alone) => {
      try {
        return new Error(`server 3 served alone: counter ${await readCounter(alone, "counter")}`);
      } catch (error) {
        return error as Error;
      } finally {
        await alone.close().catch(() => {});
      }
    },
    (error: Error) => error,
  );
  expect((outcome as { code?: string }).code).toBe("EUNAVAILABLE");
  expect(logs[2]!.join("\n")).toMatch(/waiting for server\(s\) 1,2 /);

  // The others come back: one chain, with all 50 acknowledged increments.
  await Promise.all([cluster.restart(0), cluster.restart(1)]);
  store = await connect({ servers: cluster.servers, failoverTimeoutMs: 20_000 });
  expect(await readCounter(store, "counter")).toBe(50);
}, 60_000);

test("--force-boot: a server whose peers are gone for good serves what it has and says what may be lost", async () => {
  dataDir = tempDir();
  const logs: string[] = [];
  cluster = new LocalCluster({
    count: 2,
    basePort: 0,
    dataDir,
    command: pstoreCommand(),
    fsync: "always",
    segmentSize: 1024 * 1024,
    serveArgs: ["--suspect-ms", "400", "--heartbeat-ms", "50", "--force-boot"],
    onLog: (index, line) => index === 0 && logs.push(line),
  });
  await cluster.start();
  store = await connect({ servers: cluster.servers, failoverTimeoutMs: 20_000 });
  await store.create("counter", 4);
  await increment(store, "counter", 5);
  await until(10_000, "a chain of servers 1 and 2", async () => (await serving(store!)).join() === "1,2");
  await store.close();
  store = null;
  // A total outage, and server 2 never comes back.
  await Promise.all([cluster.kill(0, "SIGKILL"), cluster.kill(1, "SIGKILL")]);
  await cluster.restart(0);
  store = await connect({ servers: [cluster.servers[0]!], failoverTimeoutMs: 10_000 });
  expect(await readCounter(store, "counter")).toBe(5);
  expect(logs.some((line) => /--force-boot: forming a chain without server\(s\) 2; updates they hold after seq \d+/.test(line))).toBe(true);
}, 60_000);
