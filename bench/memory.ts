#!/usr/bin/env bun
/**
 * Where a server's memory goes: 3 servers with a 1 GiB segment, N data of 64 MiB written once
 * each, RSS of each server after every datum (and after a pause, and after a checkpoint).
 *
 *   bun bench/memory.ts [--data 4] [--checkpoint-mb 64]
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { serversRss } from "../src/bench/index.ts";
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
  await store.close();
} finally {
  await cluster.stop();
  rmSync(dataDir, { recursive: true, force: true });
}
