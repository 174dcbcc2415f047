/**
 * A 3-server local cluster per test, and the stores the test opens: after
 * each test the stores are closed, exactly that cluster's servers stopped and
 * its data removed.
 */
import { afterEach } from "bun:test";
import { join } from "node:path";
import { LocalCluster, type LocalClusterOptions } from "../../src/cli/cluster";
import { PAGE_SIZE } from "../../src/constants";
import { NODE_IO, recover } from "../../src/store";
import type { Store } from "../../src/index";
import { pstoreCommand, removeDir, tempDir } from "./processes";

export interface ClusterPerTest {
  /** Starts the test's cluster (servers from the built binary when it exists). */
  start(): Promise<LocalCluster>;
  /** Stores to close after the test. */
  readonly stores: Store[];
}

export function clusterPerTest(options: Pick<LocalClusterOptions, "segmentSize" | "serveArgs" | "fsync">): ClusterPerTest {
  let cluster: LocalCluster | null = null;
  let dataDir = "";
  const stores: Store[] = [];
  afterEach(async () => {
    for (const store of stores.splice(0)) await store.close().catch(() => {});
    await cluster?.stop();
    cluster = null;
    if (dataDir) removeDir(dataDir);
    dataDir = "";
  }, 30_000);
  return {
    stores,
    async start() {
      dataDir = tempDir();
      cluster = new LocalCluster({ count: 3, basePort: 0, dataDir, command: pstoreCommand(), ...options });
      await cluster.start();
      return cluster;
    },
  };
}

/** Waits (bounded) until `count` servers serve, whatever their applied sequence numbers. */
export async function waitServing(store: Store, count: number, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  let last = "";
  while (performance.now() < deadline) {
    const status = await store.status();
    last = JSON.stringify(status.chain);
    if (status.chain.filter((server) => server.state === "serving").length === count) return;
    await Bun.sleep(50);
  }
  throw new Error(`${count} servers were not serving within ${timeoutMs} ms: ${last}`);
}

/**
 * What a stopped cluster's server `server` (from 1) recovers of datum `name` from its own
 * data dir: its pages, one at a time. `syncs`: false for --fsync off.
 */
export function recoveredPages(cluster: LocalCluster, server: number, segmentSize: number, name: string, syncs: boolean): (page: number) => Uint8Array {
  const recovered = recover(NODE_IO, join(cluster.dataDir, String(server)), segmentSize, PAGE_SIZE, syncs);
  recovered.wal.close();
  const datum = recovered.state.data.get(name);
  if (!datum) throw new Error(`server ${server} recovered no datum ${name}`);
  return (page) => recovered.state.pages.read(datum.firstPage + page);
}
