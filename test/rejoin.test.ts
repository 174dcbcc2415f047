/**
 * A corrupt log on one server while the others hold the history (issue 11):
 * the refusal says what can be done for this case, and `pstore serve
 * --rejoin` moves the bad files aside and fetches the state from the others
 * (docs/recovery.md). Real processes: three servers of the built binary.
 */
import { afterAll, expect, test } from "bun:test";
import { existsSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { LocalCluster } from "../src/cli/cluster";
import { type Store, connect } from "../src/index";
import { BATCH_HEADER_BYTES, WAL_HEADER_BYTES, listSegments, nodeFs } from "../src/store";
import { type Child, pstoreCommand, removeDir, spawnChild, tempDir } from "./helpers/processes";

const dataDir = tempDir();
const cluster = new LocalCluster({ count: 3, basePort: 0, dataDir, command: pstoreCommand(), segmentSize: 4 * 1024 * 1024, serveArgs: ["--session-timeout-ms", "5000"] });
let store: Store | null = null;
let third: Child | null = null;

afterAll(async () => {
  await store?.close().catch(() => {});
  await third?.stop();
  await cluster.stop();
  removeDir(dataDir);
});

/** Waits (bounded) until `count` servers serve at one applied sequence number. */
async function waitConverged(count: number, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  let last = "";
  while (performance.now() < deadline) {
    const chain = (await store!.status()).chain.filter((server) => server.state === "serving");
    last = JSON.stringify(chain);
    if (chain.length === count && new Set(chain.map((server) => server.appliedSeq)).size === 1) return;
    await Bun.sleep(100);
  }
  throw new Error(`not converged within ${timeoutMs} ms: ${last}`);
}

async function write(name: string, value: number): Promise<void> {
  await store!.withWrite(name, (view) => view.fill(value));
}

test("a corrupt log: the refusal says --rejoin (and that there is no checkpoint); with --rejoin it gets the state from the others", async () => {
  await cluster.start();
  store = await connect({ servers: cluster.servers, failoverTimeoutMs: 20_000 });
  await waitConverged(3, 15_000);
  for (const name of ["a", "b", "c"]) await store.create(name, 8192);
  await write("a", 1);
  await write("b", 2);
  await waitConverged(3, 10_000);

  // Server 3 stops; a byte of its first record flips (records follow it: not a torn tail, a corrupt log).
  await cluster.kill(2, "SIGTERM");
  const dir3 = join(dataDir, "3");
  const segment = listSegments(nodeFs, dir3)[0]!.file;
  const bytes = readFileSync(segment);
  bytes[WAL_HEADER_BYTES + BATCH_HEADER_BYTES + 8 + 1]! ^= 0xff;
  writeFileSync(segment, bytes);
  // The others go on meanwhile: server 3 must fetch what it never had, too.
  await write("c", 3);
  await write("a", 4);

  const args = ["serve", "--listen", cluster.servers[2]!, "--peers", cluster.servers.join(","), "--data-dir", dir3, "--segment-size", "4MiB", "--session-timeout-ms", "5000", "--die-with-parent"];
  const refused = spawnChild([...pstoreCommand(), ...args]);
  expect(await refused.proc.exited).toBe(1);
  expect(refused.stderr()).toContain("checksum mismatch in the record at offset");
  expect(refused.stderr()).toContain("pstore serve --rejoin");
  expect(refused.stderr()).toContain("There is no checkpoint here to restore");
  expect(refused.stderr()).not.toContain("restore --data-dir");

  third = spawnChild([...pstoreCommand(), ...args, "--rejoin"]);
  await third.waitFor(/READY/, 15_000);
  expect(third.stderr()).toMatch(/--rejoin: .*checksum mismatch.*moved the log and checkpoints aside to .*aside-/);
  const aside = readdirSync(dir3).filter((name) => name.startsWith("aside-"));
  expect(aside.length).toBe(1);
  expect(existsSync(join(dir3, aside[0]!, segment.split("/").pop()!))).toBe(true);
  await waitConverged(3, 20_000);

  // Servers 1 and 2 go: server 3 alone serves every acknowledged write.
  await cluster.kill(0, "SIGTERM");
  await cluster.kill(1, "SIGTERM");
  const values = [];
  for (const name of ["a", "b", "c"]) values.push(await store.withRead(name, (view) => [view[0], view[8191]]));
  expect(values).toEqual([[4, 4], [2, 2], [3, 3]]);
}, 90_000);
