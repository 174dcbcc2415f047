/**
 * Partitions with real processes: 3 servers whose --peers point at
 * link-cutting proxies (src/chaos). Server 1, the head, is cut off from 2 and
 * 3 while one client writes through server 1 and another through server 2;
 * then the links heal.
 *
 * - default mode (--quorum none): both sides may go on serving (server 1 as a
 *   chain of one). After healing the cluster converges to one chain; the side
 *   with the older configuration (server 1's) loses the writes it
 *   acknowledged during the partition, and the sessions that used it are
 *   ended (ESESSION) so that no hold they released there stays held.
 *   Measured and reported, not required.
 * - --quorum majority: server 1 alone acknowledges nothing (no majority
 *   accepts its new configuration, and its old chain's tail is out of reach),
 *   the majority side goes on, and after healing every acknowledged write is
 *   present.
 */
import { afterEach, expect, test } from "bun:test";
import { ChaosCluster } from "../src/chaos/cluster";
import { type Store, connect } from "../src/index";
import { pstoreCommand, removeDir, tempDir } from "./helpers/processes";

let cluster: ChaosCluster | null = null;
let stores: Store[] = [];
let dataDir = "";
const logLines: string[] = [];
if (process.env.PSTORE_QUORUM_LOG) setInterval(() => require("node:fs").writeFileSync("/tmp/quorum-live.log", logLines.join("\n")), 500).unref();

afterEach(async () => {
  for (const store of stores) await store.close().catch(() => {});
  stores = [];
  await cluster?.stop();
  cluster = null;
  removeDir(dataDir);
});

const COUNTERS = ["side1", "side2"];

/** Increments `name` in a loop; counts acknowledged increments and, apart, those acknowledged while `during()` holds. */
class Writer {
  acked = 0;
  ackedDuring = 0;
  errors: string[] = [];
  private stopping = false;
  private loop: Promise<void> | null = null;

  constructor(
    private readonly store: Store,
    private readonly name: string,
    private readonly during: () => boolean,
  ) {}

  start(): void {
    this.loop = (async () => {
      while (!this.stopping) {
        try {
          await this.store.withWrite(this.name, (view) => {
            const counter = new Int32Array(view.buffer, view.byteOffset, 1);
            counter[0] = counter[0]! + 1;
          });
          this.acked++;
          if (this.during()) this.ackedDuring++;
        } catch (error) {
          if (this.errors.length < 20) this.errors.push((error as Error).message);
          await Bun.sleep(50);
        }
      }
    })();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await this.loop;
  }
}

interface Outcome {
  /** What each server saw during the partition: epoch and chain (server ids). */
  during: string[];
  ackedDuring: number[];
  acked: number[];
  final: number[];
  chainsAfter: string[];
  errors: string[][];
}

async function partitionRun(quorum: "none" | "majority"): Promise<Outcome> {
  dataDir = tempDir();
  cluster = new ChaosCluster({
    count: 3,
    dataDir,
    command: pstoreCommand(),
    segmentSize: "16MiB",
    onLog: (index, line) => logLines.push(`${index + 1} ${line}`),
    // (for a failing run: PSTORE_QUORUM_LOG=1 writes /tmp/quorum-<mode>.log as it goes)
    serveArgs: ["--quorum", quorum, "--session-timeout-ms", "5000", "--heartbeat-ms", "50", "--suspect-ms", "500"],
  });
  await cluster.start();
  const c = cluster;
  const setup = await connect({ servers: c.addresses, failoverTimeoutMs: 20_000 });
  stores.push(setup);
  await waitChain(c, 3, 15_000);
  for (const name of COUNTERS) await setup.create(name, 4);

  let partitioned = false;
  // Client i starts from server i only (it may still fail over through the proxies' addresses).
  const clientStores = await Promise.all([0, 1].map((i) => connect({ servers: [c.addresses[i]!], failoverTimeoutMs: 3_000 })));
  stores.push(...clientStores);
  const writers = clientStores.map((store, i) => new Writer(store, COUNTERS[i]!, () => partitioned));
  for (const writer of writers) writer.start();
  await Bun.sleep(500);

  logLines.push("---- cut");
  c.cut(0, 1, "drop");
  c.cut(0, 2, "drop");
  partitioned = true;
  await Bun.sleep(4_000);
  const during = await Promise.all([0, 1, 2].map(async (i) => describe(await c.statusOf(i))));
  partitioned = false;
  logLines.push("---- heal");
  c.heal(0, 1);
  c.heal(0, 2);
  await waitChain(c, 3, 30_000);
  await Bun.sleep(500);
  for (const [i, writer] of writers.entries()) await within(writer.stop(), 30_000, `writer ${i + 1} to stop (errors: ${writer.errors.join("; ")})`);

  const reader = await connect({ servers: c.addresses, failoverTimeoutMs: 20_000 });
  stores.push(reader);
  const final = [];
  for (const name of COUNTERS) {
    const read = reader.withRead(name, (view) => new Int32Array(view.buffer, view.byteOffset, 1)[0]!);
    final.push(await within(read, 30_000, `a read of ${name}`));
  }
  await Bun.write(`/tmp/quorum-${quorum}.log`, logLines.join("\n"));
  logLines.length = 0;
  const chainsAfter = await Promise.all([0, 1, 2].map(async (i) => describe(await c.statusOf(i))));
  return {
    during,
    ackedDuring: writers.map((w) => w.ackedDuring),
    acked: writers.map((w) => w.acked),
    final,
    chainsAfter,
    errors: writers.map((w) => w.errors.slice(0, 3)),
  };
}

/** `promise`, or a failure naming what did not happen within `ms`. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`waited ${ms} ms for ${what}`)), ms)));
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

function describe(status: Awaited<ReturnType<ChaosCluster["statusOf"]>>): string {
  if (!status) return "no answer";
  return `epoch ${status.epoch}`;
}

/** Waits until all three servers report the same chain of `length` servers. */
async function waitChain(c: ChaosCluster, length: number, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    const views = await Promise.all([0, 1, 2].map((i) => c.statusOf(i)));
    const chains = views.map((v) => (v ? `${v.epoch}:${v.chain.length}` : "none"));
    if (chains.every((x) => x === chains[0]) && views[0]?.chain.length === length) return;
    await Bun.sleep(200);
  }
  throw new Error(`no common chain of ${length} servers within ${timeoutMs} ms`);
}

// Once hung after healing: a release that the losing side acknowledged was lost, so its hold
// stayed on the winning side for the writer's whole session and the final read waited for ever.
// Such sessions are now ended (Session.lastReqNo; docs/protocol.md, Sessions), and every wait
// here is bounded (`within`). PSTORE_QUORUM_LOG=1 writes the servers' log to /tmp as it goes.
test("default mode: both sides may serve; after healing one chain, and the newer configuration's state wins", async () => {
  const outcome = await partitionRun("none");
  console.log("quorum none:", JSON.stringify(outcome));
  // Converged to one chain of the three servers.
  expect(new Set(outcome.chainsAfter).size).toBe(1);
  // Writes went on during the cut (server 1, the head both clients know, served on alone).
  expect(outcome.ackedDuring[0]! + outcome.ackedDuring[1]!).toBeGreaterThan(0);
  // Nothing is invented: a counter never exceeds its acknowledged increments. Whether the
  // cut-off side's writes survive depends on which side's configuration is newer (they
  // do when server 1 reconfigured more often, as usually here; they are lost otherwise).
  expect(outcome.final[0]!).toBeLessThanOrEqual(outcome.acked[0]!);
  expect(outcome.final[1]!).toBeLessThanOrEqual(outcome.acked[1]!);
}, 120_000);

test("--quorum majority: the minority acknowledges nothing, the majority goes on, nothing acknowledged is lost", async () => {
  const outcome = await partitionRun("majority");
  console.log("quorum majority:", JSON.stringify(outcome));
  expect(new Set(outcome.chainsAfter).size).toBe(1);
  // Servers 2 and 3 formed a newer chain; server 1, alone, kept its old configuration.
  expect(outcome.during[1]).toBe(outcome.during[2]!);
  expect(outcome.during[0]).not.toBe(outcome.during[1]!);
  // Both clients went on writing, the one that knew only server 1 too (it found the newer chain).
  expect(outcome.ackedDuring[0]).toBeGreaterThan(0);
  expect(outcome.ackedDuring[1]).toBeGreaterThan(0);
  // Every acknowledged write is there (unacknowledged ones may have been applied too).
  for (const i of [0, 1]) expect(outcome.final[i]).toBeGreaterThanOrEqual(outcome.acked[i]!);
}, 120_000);
