/**
 * The segment size is part of what the log means (src/store/segment_file.ts): a
 * server started with another --segment-size than its cluster's would apply the
 * same updates to another state (a create too large for it refused, so a datum
 * the others hold missing there). Real processes: such a server is kept out of
 * the chain, loudly, on both sides; started with the cluster's size it joins.
 */
import { afterAll, expect, test } from "bun:test";
import { join } from "node:path";
import { LocalCluster } from "../src/cli/cluster";
import { type Store, connect } from "../src/index";
import { type Child, pstoreCommand, removeDir, spawnChild, tempDir } from "./helpers/processes";

const dataDir = tempDir();
const logs: string[] = [];
const cluster = new LocalCluster({ count: 3, basePort: 0, dataDir, command: pstoreCommand(), segmentSize: 8 * 1024 * 1024, onLog: (_, line) => logs.push(line) });
let store: Store | null = null;
let replacement: Child | null = null;

afterAll(async () => {
  await store?.close().catch(() => {});
  await replacement?.stop();
  await cluster.stop();
  removeDir(dataDir);
});

/** Waits (bounded) until the chain, as a client sees it, is `members` (addresses), all serving. */
async function waitChain(members: string[], timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  let last = "";
  while (performance.now() < deadline) {
    const chain = (await store!.status()).chain.filter((server) => server.state === "serving").map((server) => server.address);
    last = chain.join(",");
    if (last === members.join(",")) return;
    await Bun.sleep(100);
  }
  throw new Error(`the chain is not ${members.join(",")} within ${timeoutMs} ms: ${last}`);
}

test("a server with another --segment-size is kept out of the chain and says why; with the cluster's size it joins and gets the data", async () => {
  await cluster.start();
  const [first, second, third] = cluster.servers as [string, string, string];
  store = await connect({ servers: [first, second], failoverTimeoutMs: 20_000 });
  await waitChain([first, second, third], 15_000);
  await cluster.kill(2, "SIGKILL");
  await waitChain([first, second], 15_000);

  // Server 3 replaced, configured with half the segment: a 6 MiB datum would not fit there.
  const serve = (segmentSize: string, dir: string) =>
    spawnChild([...pstoreCommand(), "serve", "--listen", third, "--peers", cluster.servers.join(","), "--data-dir", dir, "--segment-size", segmentSize, "--die-with-parent"]);
  replacement = serve("4MiB", join(dataDir, "3-wrong"));
  await replacement.waitFor(/READY/, 15_000);
  await store.create("big", 6 * 1024 * 1024);
  await store.withWrite("big", (view) => view.fill(7));
  const deadline = performance.now() + 10_000;
  const refusal = /server 3 \(.*\) has a segment of 4 MiB \(pages of 4096 bytes\), this server 8 MiB \(pages of 4096 bytes\): every server of a cluster needs the same --segment-size; not connecting/;
  while (performance.now() < deadline && logs.filter((line) => refusal.test(line)).length < 2) await Bun.sleep(100);
  expect(logs.filter((line) => refusal.test(line)).map((line) => line.match(/\[server:(\d)\]/)?.[1]).sort()).toEqual(["1", "2"]);
  expect(replacement.stderr()).toMatch(/server 1 \(.*\) has a segment of 8 MiB \(pages of 4096 bytes\), this server 4 MiB/);
  await waitChain([first, second], 5_000);
  await replacement.stop();

  // Started with the cluster's size, it joins and holds the datum: the chain of three serves it alone.
  replacement = serve("8MiB", join(dataDir, "3-right"));
  await replacement.waitFor(/READY/, 15_000);
  await waitChain([first, second, third], 20_000);
  await cluster.kill(0, "SIGKILL");
  await cluster.kill(1, "SIGKILL");
  await store.close();
  store = await connect({ servers: [third], failoverTimeoutMs: 20_000 });
  expect(await store.withRead("big", (view) => [view.length, view[0], view[view.length - 1]])).toEqual([6 * 1024 * 1024, 7, 7]);
}, 90_000);
