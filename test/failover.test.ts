/**
 * Chain replication with real server processes (the built binary when it
 * exists): 8 clients increment counters while servers are killed with
 * SIGKILL and restarted. No acknowledged increment may be lost, no two
 * writers may overlap, and the clients must all finish.
 */
import { expect, test } from "bun:test";
import { PAGE_SIZE } from "../src/constants";
import { type Store, connect } from "../src/index";
import { clusterPerTest, recoveredPages, waitServing } from "./helpers/cluster";
import { IncrementWorkload, verifyCounters } from "./helpers/workload";

const CLIENTS = 8;
const clusters = clusterPerTest({ segmentSize: 16 * 1024 * 1024, serveArgs: ["--session-timeout-ms", "5000"] });
const startCluster = () => clusters.start();

async function clients(servers: string[]): Promise<Store[]> {
  const stores = await Promise.all(Array.from({ length: CLIENTS }, () => connect({ servers, failoverTimeoutMs: 20_000 })));
  clusters.stores.push(...stores);
  // On a loaded machine the third server may still be joining: start from a full chain.
  await waitServing(stores[0]!, 3, 15_000);
  return stores;
}

/** The index (in cluster.servers) of the server holding `role` in the current chain. */
async function indexOf(store: Store, role: "head" | "middle" | "tail", servers: string[]): Promise<number> {
  const status = await store.status();
  const entry = status.chain.find((server) => server.role === role);
  if (!entry) throw new Error(`no ${role} in ${JSON.stringify(status.chain)}`);
  return servers.indexOf(entry.address);
}

/** Waits (bounded) until `count` servers serve and agree on the applied sequence number. */
async function waitConverged(store: Store, count: number, timeoutMs: number): Promise<number> {
  const deadline = performance.now() + timeoutMs;
  let last = "";
  while (performance.now() < deadline) {
    const status = await store.status();
    const serving = status.chain.filter((server) => server.state === "serving");
    last = JSON.stringify(status.chain);
    if (serving.length === count && new Set(serving.map((server) => server.appliedSeq)).size === 1) {
      return serving[0]!.appliedSeq;
    }
    await Bun.sleep(100);
  }
  throw new Error(`servers did not converge within ${timeoutMs} ms: ${last}`);
}

async function createCounters(store: Store, workload: IncrementWorkload, keys: string[]): Promise<void> {
  for (const key of keys) {
    await store.create(key, 4);
    workload.history.initial(key, 0);
  }
}

test("kill -9 of the head, then the tail, then the middle, each restarted: no acknowledged increment lost", async () => {
  const c = await startCluster();
  const all = await clients(c.servers);
  const keys = ["shared", ...all.map((_, i) => `private-${i}`)];
  const workload = new IncrementWorkload(all, { shared: "shared", privateOf: (i) => `private-${i}` });
  await createCounters(all[0]!, workload, keys);
  workload.start();
  const gaps: string[] = [];
  for (const role of ["head", "tail", "middle"] as const) {
    await Bun.sleep(700);
    const victim = await indexOf(all[0]!, role, c.servers);
    const before = workload.acknowledgedAfter(0);
    const killedAt = workload.elapsedMs;
    await c.kill(victim, "SIGKILL");
    // Writes must resume without the victim.
    const deadline = performance.now() + 10_000;
    while (workload.acknowledgedAfter(killedAt) === 0 && performance.now() < deadline) await Bun.sleep(10);
    expect(workload.acknowledgedAfter(killedAt)).toBeGreaterThan(0);
    expect(workload.acknowledgedAfter(0)).toBeGreaterThan(before);
    await Bun.sleep(2500);
    // Reported, not asserted: speed belongs to `pstore bench failover`.
    gaps.push(`${role}: longest pause in acknowledged writes ${workload.longestGapBetween(killedAt, killedAt + 2500)} ms`);
    await c.restart(victim);
    // The restarted server rejoins (at the tail) before the next one is killed.
    await waitServing(all[0]!, 3, 20_000);
  }
  await Bun.sleep(500);
  const result = await workload.stop();
  const unknown = result.history.ops.filter((op) => op.outcome === "unknown").length;
  console.log(`${gaps.join("; ")}; ${result.history.ops.length} increments, ${unknown} unknown`);
  const problems = await verifyCounters(all[0]!, result, keys);
  expect(problems).toEqual([]);
  const total = [...result.acknowledged.values()].reduce((a, b) => a + b, 0);
  expect(total).toBeGreaterThan(100);
  await waitConverged(all[0]!, 3, 15_000);
}, 120_000);

test("down to one server of three: the clients go on", async () => {
  const c = await startCluster();
  const all = await clients(c.servers);
  const keys = ["shared", ...all.map((_, i) => `private-${i}`)];
  const workload = new IncrementWorkload(all, { shared: "shared", privateOf: (i) => `private-${i}` });
  await createCounters(all[0]!, workload, keys);
  workload.start();
  await Bun.sleep(500);
  await c.kill(await indexOf(all[0]!, "head", c.servers), "SIGKILL");
  await Bun.sleep(1500);
  await c.kill(await indexOf(all[0]!, "tail", c.servers), "SIGKILL");
  const lastKillAt = workload.elapsedMs;
  const deadline = performance.now() + 10_000;
  while (workload.acknowledgedAfter(lastKillAt) < 50 && performance.now() < deadline) await Bun.sleep(20);
  expect(workload.acknowledgedAfter(lastKillAt)).toBeGreaterThanOrEqual(50);
  const result = await workload.stop();
  expect(await verifyCounters(all[0]!, result, keys)).toEqual([]);
  const status = await all[0]!.status();
  expect(status.chain.filter((server) => server.state === "serving").map((server) => server.role)).toEqual(["single"]);
}, 120_000);

test.each(["middle", "head"] as const)("a paused %s (SIGSTOP: connections open, heartbeats stop) is removed after --suspect-ms and rejoins when resumed", async (role) => {
  const c = await startCluster();
  const all = await clients(c.servers);
  const keys = ["shared", ...all.map((_, i) => `private-${i}`)];
  const workload = new IncrementWorkload(all, { shared: "shared", privateOf: (i) => `private-${i}` });
  await createCounters(all[0]!, workload, keys);
  workload.start();
  await Bun.sleep(400);
  const victim = await indexOf(all[0]!, role, c.servers);
  const pid = c.pids[victim]!;
  process.kill(pid, "SIGSTOP");
  const pausedAt = workload.elapsedMs;
  try {
    const deadline = performance.now() + 10_000;
    // Writes stall until the others stop hearing it, then go on without it.
    while (workload.acknowledgedAfter(pausedAt + 1500) < 20 && performance.now() < deadline) await Bun.sleep(20);
    expect(workload.acknowledgedAfter(pausedAt + 1500)).toBeGreaterThanOrEqual(20);
    const status = await all[0]!.status();
    expect(status.chain.filter((server) => server.state === "serving").map((server) => server.address)).not.toContain(c.servers[victim]);
  } finally {
    process.kill(pid, "SIGCONT");
  }
  const result = await workload.stop();
  expect(await verifyCounters(all[0]!, result, keys)).toEqual([]);
  // Resumed, it learns it was removed, rejoins at the tail and catches up.
  await waitConverged(all[0]!, 3, 15_000);
  console.log(`paused ${role}: longest pause in acknowledged writes ${workload.longestGapBetween(pausedAt, pausedAt + 3000)} ms`);
}, 120_000);

const largeClusters = clusterPerTest({ segmentSize: 64 * 1024 * 1024, fsync: "off", serveArgs: ["--session-timeout-ms", "5000"] });

test("8 MiB rewrites while the middle, then the head, is killed -9 and restarted: each rewrite is whole or absent, none acknowledged is lost", async () => {
  // A head or middle holds its disk work while a large forward leaves (src/server/server.ts,
  // afterForwardsLeave): the link under it dies here, mid-forward.
  const c = await largeClusters.start();
  const writer = await connect({ servers: c.servers, failoverTimeoutMs: 20_000 });
  largeClusters.stores.push(writer);
  await waitServing(writer, 3, 15_000);
  const size = 8 * 1024 * 1024;
  const byteOf = (round: number, i: number) => (i * 31 + round * 7 + (i >> 12)) & 0xff;
  await writer.create("big", size);
  let acknowledged = 0;
  let attempted = 0;
  let stop = false;
  const loop = (async () => {
    while (!stop) {
      const round = ++attempted;
      await writer
        .withWrite("big", (view) => {
          for (let i = 0; i < size; i++) view[i] = byteOf(round, i);
        })
        .then(
          () => void (acknowledged = round),
          () => {},
        );
    }
  })();
  try {
    for (const role of ["middle", "head"] as const) {
      await Bun.sleep(800);
      const victim = await indexOf(writer, role, c.servers);
      const before = acknowledged;
      await c.kill(victim, "SIGKILL");
      const deadline = performance.now() + 15_000;
      while (acknowledged < before + 3 && performance.now() < deadline) await Bun.sleep(20);
      expect(acknowledged).toBeGreaterThanOrEqual(before + 3);
      await c.restart(victim);
      await waitServing(writer, 3, 20_000);
    }
  } finally {
    // Also when a check above fails: left running, the loop spun on a closed store and the
    // test process never ended (a CI run hung on it).
    stop = true;
    await loop;
  }
  /** The round whose bytes `page` holds in full (-1: none). */
  const roundOf = (bytes: Uint8Array, at: number): number => {
    for (let round = acknowledged; round <= attempted; round++) {
      let same = true;
      for (let j = 0; j < bytes.length && same; j += 97) same = bytes[j] === byteOf(round, at + j);
      if (same) return round;
    }
    return -1;
  };
  const seen = await writer.withRead("big", (view) => roundOf(view, 0));
  expect(seen).toBeGreaterThanOrEqual(acknowledged);
  await writer.withRead("big", (view) => expect(roundOf(view.subarray(size - 4096), size - 4096)).toBe(seen));
  await waitConverged(writer, 3, 20_000);
  await writer.close();
  await c.stop();
  for (const server of [1, 2, 3]) {
    const pageOf = recoveredPages(c, server, 64 * 1024 * 1024, "big", false);
    const rounds = new Set<number>();
    for (let page = 0; page < size / PAGE_SIZE; page += 255) rounds.add(roundOf(pageOf(page), page * PAGE_SIZE));
    expect({ server, rounds: [...rounds] }).toEqual({ server, rounds: [seen] });
  }
  console.log(`large rewrites: ${acknowledged} acknowledged of ${attempted}, the datum holds round ${seen}`);
}, 120_000);
