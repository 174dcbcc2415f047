#!/usr/bin/env bun
/**
 * How long a killed server takes to serve again while a client rewrites an 8 MiB datum
 * without pause (test/failover.test.ts's scenario, many times over): kill -9 the middle, then
 * the head, each time restarting it once three more rewrites were acknowledged, and time from
 * the restart until a new configuration has three servers serving. Prints each kill, each
 * rejoin's time, and the servers' notes about joining, snapshots and held-back forwards.
 *
 *   bun bench/rejoin.ts [--rounds 6] [--binary dist/pstore] [--mib 8]
 *
 * Before session 24 a restarted server, slower than the chain while it wrote new log files,
 * could stay joining for 20 s here (once in ~12 rejoins); docs/benchmarks.md, session 24.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { LocalCluster } from "../src/cli/cluster";
import { connect } from "../src/index";

const ROOT = resolve(import.meta.dir, "..");
const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(name);
  return i === -1 ? fallback : process.argv[i + 1]!;
};
const REJOIN_WAIT_MS = 60_000;
const rounds = Number(arg("--rounds", "6"));
const size = Number(arg("--mib", "8")) * 1024 * 1024;
if (!(rounds > 0) || !(size > 0)) throw new Error("--rounds and --mib take positive numbers");

const t0 = performance.now();
const at = () => (performance.now() - t0).toFixed(0).padStart(6);
const dataDir = mkdtempSync(join(tmpdir(), "pstore-rejoin-"));
const cluster = new LocalCluster({
  count: 3,
  basePort: 0,
  dataDir,
  segmentSize: 64 * 1024 * 1024,
  fsync: "off",
  command: [resolve(ROOT, arg("--binary", "dist/pstore"))],
  serveArgs: ["--session-timeout-ms", "5000"],
  onLog: (index, line) => {
    if (/snapshot|member in|joining|holding/.test(line)) console.log(`${at()} server ${index + 1}: ${line.slice(0, 160)}`);
  },
});
const rejoins: number[] = [];
try {
  await cluster.start();
  const writer = await connect({ servers: cluster.servers, failoverTimeoutMs: 20_000 });
  await writer.create("big", size);
  let acknowledged = 0;
  let stop = false;
  const loop = (async () => {
    for (let round = 1; !stop; round++) {
      await writer.withWrite("big", (view) => void view.fill(round & 0xff)).then(
        () => void (acknowledged = round),
        () => {},
      );
    }
  })();
  try {
    for (let round = 0; round < rounds; round++) {
      for (const role of ["middle", "head"] as const) {
        await Bun.sleep(800);
        const victim = (await writer.status()).chain.find((server) => server.role === role);
        if (!victim) throw new Error(`no ${role} in the chain`);
        console.log(`${at()} kill -9 the ${role} (server ${victim.id}), ${acknowledged} rewrites acknowledged`);
        await cluster.kill(victim.id - 1, "SIGKILL");
        const before = acknowledged;
        const deadline = performance.now() + REJOIN_WAIT_MS;
        while (acknowledged < before + 3 && performance.now() < deadline) await Bun.sleep(20);
        const epoch = (await writer.status()).epoch;
        await cluster.restart(victim.id - 1);
        const restarted = performance.now();
        for (;;) {
          const status = await writer.status();
          const serving = status.chain.filter((server) => server.state === "serving").length;
          if ((status.epoch > epoch && serving === 3) || performance.now() - restarted > REJOIN_WAIT_MS) break;
          await Bun.sleep(50);
        }
        rejoins.push(Math.round(performance.now() - restarted));
        console.log(`${at()} serving again ${rejoins.at(-1)} ms after its restart, ${acknowledged} rewrites acknowledged`);
      }
    }
  } finally {
    stop = true;
    await loop;
    await writer.close();
  }
} finally {
  await cluster.stop();
  rmSync(dataDir, { recursive: true, force: true });
}
const sorted = [...rejoins].sort((a, b) => a - b);
console.log(`rejoins (ms): ${rejoins.join(" ")}; median ${sorted[Math.floor((sorted.length - 1) / 2)]}, longest ${sorted.at(-1)}`);
