#!/usr/bin/env bun
/**
 * The C write cycle (libpstore.so through `pstore agent`) against the
 * TypeScript client's, side by side in one run (issue 14's goal: C ≤ 1.2×).
 * A temporary 3-server cluster; each round runs the C program and a
 * TypeScript loop (one session each, 4-byte datum, access → +1 → release),
 * which one first alternating by round. Prints each round's medians and the
 * median of the per-round ratios.
 *
 *   bun bench/c_vs_ts.ts [--rounds 5] [--ops 300] [--fsync always|batch|off]
 *
 * Needs `bun build.ts` (dist/pstore, dist/libpstore.so) and cc.
 */
import { join, resolve } from "node:path";
import { LocalCluster } from "../src/cli/cluster.ts";
import { connect } from "../src/index.ts";

const ROOT = resolve(import.meta.dir, "..");
const DIST = join(ROOT, "dist");

function flag(name: string, fallback: string): string {
  const at = process.argv.indexOf(`--${name}`);
  return at >= 0 && process.argv[at + 1] ? process.argv[at + 1]! : fallback;
}
const rounds = Number(flag("rounds", "5"));
const ops = Number(flag("ops", "300"));
const fsync = flag("fsync", "always");

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

const work = (await import("node:fs")).mkdtempSync("/tmp/pstore-cbench-");
const program = join(work, "c_cycle");
const cc = Bun.spawnSync([process.env.CC || "cc", "-O2", "-I", DIST, "-o", program, join(ROOT, "bench/c_cycle.c"), "-L", DIST, "-lpstore", `-Wl,-rpath,${DIST}`], { stderr: "inherit" });
if (cc.exitCode !== 0) throw new Error("bench/c_cycle.c did not compile");

const cluster = new LocalCluster({ count: 3, basePort: 0, dataDir: join(work, "data"), command: [join(DIST, "pstore")], segmentSize: 64 * 1024 * 1024, serveArgs: ["--fsync", fsync] });
const socket = join(work, "agent.sock");
const agent = Bun.spawn([join(DIST, "pstore"), "agent", "--socket", socket, "--die-with-parent"], { stdout: "pipe", stderr: "inherit" });
try {
  await cluster.start();
  for await (const chunk of agent.stdout) if (new TextDecoder().decode(chunk).includes("READY")) break;
  const env = { ...process.env, PSTORE_SERVERS: cluster.servers.join(","), PSTORE_AGENT_SOCKET: socket };
  const store = await connect({ servers: cluster.servers });
  await store.create("c", 4);
  await store.create("ts", 4);

  const runC = async (): Promise<number> => {
    const proc = Bun.spawn([program, "c", String(ops)], { env, stdout: "pipe", stderr: "inherit" });
    const text = await new Response(proc.stdout).text();
    if ((await proc.exited) !== 0 || !text.includes("DONE")) throw new Error("the C cycle failed");
    const lines = text.trim().split("\n").slice(0, -1).map((line) => line.split(" ").map(Number));
    accessTimes.push(median(lines.map((l) => l[1]!)));
    return median(lines.map((l) => l[0]!));
  };
  const runTs = async (): Promise<number> => {
    const times: number[] = [];
    const tsAccess: number[] = [];
    for (let i = 0; i < ops; i++) {
      const start = performance.now();
      const view = await store.accessReadWrite("ts");
      tsAccess.push((performance.now() - start) * 1000);
      view[0] = (view[0]! + 1) & 0xff;
      await store.releaseReadWrite(view);
      times.push((performance.now() - start) * 1000);
    }
    tsAccessTimes.push(median(tsAccess));
    return median(times);
  };

  const ratios: number[] = [];
  const accessTimes: number[] = [];
  const tsAccessTimes: number[] = [];
  console.log(`fsync ${fsync}, ${ops} cycles a side a round, load ${(await import("node:os")).loadavg().map((l) => l.toFixed(1)).join(" ")}`);
  for (let round = 0; round < rounds; round++) {
    let c: number;
    let ts: number;
    if (round % 2 === 0) {
      c = await runC();
      ts = await runTs();
    } else {
      ts = await runTs();
      c = await runC();
    }
    ratios.push(c / ts);
    console.log(`round ${round + 1}: C p50 ${c.toFixed(0)} µs, TypeScript p50 ${ts.toFixed(0)} µs, C/TS ${(c / ts).toFixed(2)} (access p50: C ${accessTimes.at(-1)!.toFixed(0)} µs, TypeScript ${tsAccessTimes.at(-1)!.toFixed(0)} µs)`);
  }
  console.log(`median C/TS over ${rounds} rounds: ${median(ratios).toFixed(2)}`);
  await store.close();
} finally {
  agent.kill();
  await cluster.stop();
  (await import("node:fs")).rmSync(work, { recursive: true, force: true });
}
