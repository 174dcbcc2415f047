#!/usr/bin/env bun
/**
 * Where a server's memory goes: 3 servers with a 1 GiB segment, N data of 64 MiB written once
 * each, RSS of each server after every datum (and after a pause); then, with --load-seconds,
 * under 8 clients' 4 KiB write cycles on other data (the garbage a busy server keeps beside
 * its data), every 2 s and after.
 *
 *   bun bench/memory.ts [--data 4] [--checkpoint-mb 64] [--load-seconds 10]
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { runPrefix, runWorkload, serversRss } from "../src/bench/index.ts";
import { LocalCluster } from "../src/cli/cluster.ts";
import { connect } from "../src/index.ts";

const ROOT = resolve(import.meta.dir, "..");
const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(name);
  return i === -1 ? fallback : process.argv[i + 1]!;
};
const data = Number(arg("--data", "4"));
const dataDir = mkdtempSync(join(tmpdir(), "pstore-memory-"));
const cluster = new LocalCluster({
  count: 3,
  basePort: 0,
  dataDir,
  fsync: "off",
  segmentSize: 1024 ** 3,
  command: [join(ROOT, "dist/pstore")],
  serveArgs: ["--suspect-ms", "10000", "--checkpoint-mb", arg("--checkpoint-mb", "64")],
});
const mib = (kib: number) => `${Math.round(kib / 1024)}`;
const line = (what: string) => console.log(`${what.padEnd(28)} ${serversRss(cluster.pids).map((e) => mib(e.rss_kib).padStart(5)).join(" ")}  MiB`);
try {
  await cluster.start();
  await Bun.sleep(500);
  line("idle");
  const store = await connect({ servers: cluster.servers });
  for (let i = 0; i < data; i++) {
    await store.create(`m-${i}`, 64 * 1024 * 1024);
    await store.withWrite(`m-${i}`, (view) => view.fill(i + 1));
    line(`after ${(i + 1) * 64} MiB`);
  }
  await Bun.sleep(2000);
  line("2 s later");
  const loadSeconds = Number(arg("--load-seconds", "0"));
  if (loadSeconds > 0) {
    const timer = setInterval(() => line("under 8 clients' cycles"), 2000);
    const spec = { workload: "cycle", clients: 8, size: 4096, budget: { durationMs: loadSeconds * 1000 }, warmupMs: 500, victim: "head" } as const;
    const result = await runWorkload({ servers: cluster.servers, cluster, prefix: runPrefix() }, spec, {});
    clearInterval(timer);
    line(`after them (${Math.round(result.ops_per_s)}/s)`);
  }
  await store.close();
} finally {
  await cluster.stop();
  rmSync(dataDir, { recursive: true, force: true });
}
