/**
 * Restart time and disk use of one server with a 1 GiB segment and 100,000
 * updates after its last checkpoint (issue 4). Usage: bun bench/restart.ts [--updates N]
 */
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { LocalCluster } from "../src/cli/cluster";
import { connect } from "../src/index";
import { pstoreCommand, removeDir, tempDir } from "../test/helpers/processes";

const updates = Number(process.argv[process.argv.indexOf("--updates") + 1] ?? 100_000) || 100_000;
const dataDir = tempDir("pstore-restart-");
const cluster = new LocalCluster({
  count: 1,
  basePort: 0,
  dataDir,
  command: pstoreCommand(),
  fsync: "off",
  segmentSize: 1024 * 1024 * 1024,
  serveArgs: ["--checkpoint-mb", "100000"],
});

function diskBytes(dir: string): number {
  let total = 0;
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    total += statSync(path).isDirectory() ? diskBytes(path) : statSync(path).size;
  }
  return total;
}

try {
  await cluster.start();
  const store = await connect({ servers: cluster.servers });
  // 64 data of 1 MiB (256 pages): 64 MiB of the 1 GiB segment in use.
  for (let i = 0; i < 64; i++) await store.create(`d${i}`, 1024 * 1024);
  await store.checkpoint();
  const started = performance.now();
  for (let i = 0; i < updates / 2; i++) {
    const view = await store.accessReadWrite(`d${i % 64}`); // acquire: one update
    view[(i * 4096) % view.length] = i & 0xff; // one dirty page
    await store.releaseReadWrite(view); // release with one page: one update
  }
  const writingMs = performance.now() - started;
  await store.close();
  const disk = diskBytes(dataDir);
  await cluster.kill(0, "SIGKILL");
  const restartStarted = performance.now();
  await cluster.restart(0);
  const readyMs = performance.now() - restartStarted;
  const reader = await connect({ servers: cluster.servers });
  const view = await reader.accessRead("d1");
  const servingMs = performance.now() - restartStarted;
  await reader.releaseRead(view);
  await reader.close();
  console.log(
    JSON.stringify({
      segment_bytes: 1024 * 1024 * 1024,
      updates_after_checkpoint: updates,
      data_in_use_bytes: 64 * 1024 * 1024,
      disk_bytes: disk,
      write_seconds: +(writingMs / 1000).toFixed(2),
      restart_to_ready_ms: Math.round(readyMs),
      restart_to_first_read_ms: Math.round(servingMs),
    }),
  );
} finally {
  await cluster.stop();
  removeDir(dataDir);
}
