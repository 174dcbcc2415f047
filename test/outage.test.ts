/**
 * A long-lived client through a whole-cluster stop and start (issue 15 item
 * 1), at the API level: it must find the cluster again when it comes back;
 * the holds it had are reported lost, nothing else.
 */
import { expect, test } from "bun:test";
import { PAGE_SIZE } from "../src/constants";
import { connect, PStoreError } from "../src/index";
import { codeOf } from "./helpers/errors";
import { clusterPerTest, recoveredPages, waitServing } from "./helpers/cluster";

const clusters = clusterPerTest({ segmentSize: 1024 * 1024, serveArgs: ["--session-timeout-ms", "1000"] });
const startCluster = () => clusters.start();
const stores = clusters.stores;

test("after a whole-cluster stop and start, the same store works again; its holds are reported lost", async () => {
  const c = await startCluster();
  const store = await connect({ servers: c.servers, failoverTimeoutMs: 1500, connectTimeoutMs: 3000 });
  stores.push(store);
  await store.create("compteur", 4);
  await store.withWrite("compteur", (view) => void new DataView(view.buffer, view.byteOffset).setInt32(0, 1035, true));
  const kept = await store.accessRead("compteur");

  await c.stop();
  // With every server gone, a call fails once the failover budget is spent...
  const failedAt = performance.now();
  expect(await codeOf(store.list())).toBe("EUNAVAILABLE");
  expect(performance.now() - failedAt).toBeLessThan(10_000);

  await c.start();
  // ...and once they are back, the same store finds them (before: every later call failed at once, stale).
  const names = (await store.list()).map((info) => info.name);
  expect(names).toEqual(["compteur"]);
  expect(store.stats().sessionsLost).toBe(1);
  const value = await store.withRead("compteur", (view) => new DataView(view.buffer, view.byteOffset).getInt32(0, true));
  expect(value).toBe(1035);

  // The hold kept across the outage is reported lost, by name, not as an unknown view.
  const error = await store.releaseRead(kept).then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(PStoreError);
  expect((error as PStoreError).code).toBe("ESTALE");
  expect((error as PStoreError).message).toContain('the hold on "compteur" was lost with its session');

  // The old session's read hold (if the servers restored it) expires: a writer gets through.
  await store.withWrite("compteur", (view) => void new DataView(view.buffer, view.byteOffset).setInt32(0, 1036, true), { timeoutMs: 10_000 });
  const other = await connect({ servers: c.servers });
  stores.push(other);
  expect(await other.withRead("compteur", (view) => new DataView(view.buffer, view.byteOffset).getInt32(0, true))).toBe(1036);
}, 60_000);

test("a store idle through a whole-cluster outage longer than its failover budget works when the cluster is back", async () => {
  const c = await startCluster();
  const store = await connect({ servers: c.servers, failoverTimeoutMs: 500, connectTimeoutMs: 3000 });
  stores.push(store);
  await store.create("x", 4);
  await c.stop();
  // Longer than failoverTimeoutMs: the background search for the chain gives up meanwhile.
  await Bun.sleep(1500);
  await c.start();
  expect((await store.stat("x")).name).toBe("x");
  await store.withWrite("x", (view) => void (view[0] = 7));
  expect(await store.withRead("x", (view) => view[0])).toBe(7);
}, 60_000);

test("connect with nothing listening fails at once, naming the addresses and what to do", async () => {
  const startedAt = performance.now();
  const error = await connect({ servers: ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"] }).catch((e: unknown) => e);
  expect(performance.now() - startedAt).toBeLessThan(1000);
  expect(error).toBeInstanceOf(PStoreError);
  expect((error as PStoreError).message).toBe("EUNAVAILABLE: no server at 127.0.0.1:1-3 (connection refused) — start one with `pstore local`");
});

test("what a wait is for: onQueued when a holder blocks the access, chainMissingMs while the chain is gone", async () => {
  const c = await startCluster();
  const holder = await connect({ servers: c.servers });
  const waiter = await connect({ servers: c.servers, failoverTimeoutMs: 1000 });
  stores.push(holder, waiter);
  // The chain must be whole first: a third server joining changes the chain, and the
  // waiter then looks for it for a few ms (chainMissingMs 8 in one loaded full run).
  await waitServing(waiter, 3, 15_000);
  await holder.create("d", 4);
  const held = await holder.accessReadWrite("d");
  let queued = 0;
  const waiting = waiter.accessRead("d", { onQueued: () => queued++ });
  const deadline = performance.now() + 5000;
  while (queued === 0 && performance.now() < deadline) await Bun.sleep(10);
  expect(queued).toBe(1);
  expect(waiter.stats().chainMissingMs).toBeNull();
  await holder.releaseReadWrite(held);
  await waiter.releaseRead(await waiting);

  await c.stop();
  const failed = waiter.list().catch((e: unknown) => e);
  await Bun.sleep(300);
  expect(waiter.stats().chainMissingMs).toBeGreaterThanOrEqual(200);
  expect(await failed).toBeInstanceOf(PStoreError);
}, 60_000);

const largeClusters = clusterPerTest({ segmentSize: 64 * 1024 * 1024, fsync: "off" });

test("large rewrites down a 3-server chain, then a stop: every server's own disk holds the last one byte for byte", async () => {
  // A server holds back its log write while a large forward leaves (src/server/server.ts,
  // afterForwardsLeave); held or not, the write must reach its disk.
  const c = await largeClusters.start();
  const store = await connect({ servers: c.servers });
  largeClusters.stores.push(store);
  const size = 16 * 1024 * 1024;
  const pattern = (round: number, i: number) => (i * 7 + round * 13 + (i >> 12)) & 0xff;
  await store.create("big", size);
  for (const round of [1, 2, 3]) {
    await store.withWrite("big", (view) => {
      for (let i = 0; i < size; i++) view[i] = pattern(round, i);
    });
  }
  await store.close();
  await c.stop();
  for (const server of [1, 2, 3]) {
    const pageOf = recoveredPages(c, server, 64 * 1024 * 1024, "big", false);
    let wrong = -1;
    for (let page = 0; page < size / PAGE_SIZE && wrong < 0; page++) {
      const bytes = pageOf(page);
      for (let j = 0; j < PAGE_SIZE && wrong < 0; j++) if (bytes[j] !== pattern(3, page * PAGE_SIZE + j)) wrong = page * PAGE_SIZE + j;
    }
    expect({ server, wrong }).toEqual({ server, wrong: -1 });
  }
}, 60_000);
