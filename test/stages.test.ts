/**
 * Large releases in stages (docs/protocol.md "Large releases in stages") with real server
 * processes: a write larger than a part goes as stages and a release, lands whole on every
 * server and in their logs, and a head killed while the parts travel leaves the datum
 * whole, old or new, never a mix.
 */
import { expect, test } from "bun:test";
import { type Store, connect } from "../src/index";
import { clusterPerTest, waitServing } from "./helpers/cluster";

const clusters = clusterPerTest({ segmentSize: 16 * 1024 * 1024, serveArgs: ["--session-timeout-ms", "5000"] });
const PART = 64 * 1024;
const SIZE = 2 * 1024 * 1024;

async function store(servers: string[]): Promise<Store> {
  const opened = await connect({ servers, stagePartBytes: PART, failoverTimeoutMs: 20_000 });
  clusters.stores.push(opened);
  return opened;
}

/** Every byte of `name`, or a description of the first place where it is not `fill`. */
async function mismatch(reader: Store, name: string, fill: number): Promise<string | null> {
  return reader.withRead(name, (view) => {
    const at = view.findIndex((byte) => byte !== fill);
    return at === -1 ? null : `byte ${at} is ${view[at]}, not ${fill}`;
  });
}

test("a write larger than a part lands whole on every server, and again after they all restart from their logs", async () => {
  const cluster = await clusters.start();
  const writer = await store(cluster.servers);
  await waitServing(writer, 3, 15_000);
  await writer.create("big", SIZE);
  const before = writer.stats();
  await writer.withWrite("big", (view) => view.fill(7));
  const after = writer.stats();
  expect(after.pagesSent - before.pagesSent).toBe(SIZE / 4096);
  // The acquire, then the pages in SIZE / PART requests: stages and the release.
  expect(after.requests - before.requests).toBe(1 + SIZE / PART);
  // All three restart from their logs (stages and release replayed) and still have it.
  expect(await mismatch(writer, "big", 7)).toBeNull();
  for (let i = 0; i < 3; i++) await cluster.kill(i);
  for (let i = 0; i < 3; i++) await cluster.restart(i);
  const reader = await store(cluster.servers);
  await waitServing(reader, 3, 20_000);
  expect(await mismatch(reader, "big", 7)).toBeNull();
}, 60_000);

test("the head, then the tail killed while large writes are in stages: the datum is always whole, and every acknowledged write stays", async () => {
  const cluster = await clusters.start();
  const writer = await store(cluster.servers);
  await waitServing(writer, 3, 15_000);
  await writer.create("big", SIZE);
  const kills: Record<number, "head" | "tail"> = { 10: "head", 25: "tail" };
  let last = 0;
  let failed = 0;
  for (let round = 1; round <= 40; round++) {
    const view = await writer.accessReadWrite("big");
    view.fill(round);
    const released = writer.releaseReadWrite(view).then(
      () => true,
      () => false,
    );
    const victim = kills[round];
    if (victim) {
      // While this release's parts are on their way.
      const server = (await writer.status()).chain.find((entry) => entry.role === victim)!;
      await cluster.kill(cluster.servers.indexOf(server.address));
    }
    if (await released) last = round;
    else failed++;
    // Whole: the last acknowledged write, or (after a failed release) nothing of it.
    expect(await mismatch(writer, "big", last)).toBeNull();
  }
  expect(failed).toBeLessThanOrEqual(2);
  expect(last).toBe(40);
}, 60_000);
