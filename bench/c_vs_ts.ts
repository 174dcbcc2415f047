#!/usr/bin/env bun
/**
 * The C write cycle (libpstore.so through `pstore agent`) against the
 * TypeScript client's, side by side in one run (issue 14's goal: C ≤ 1.2×).
 * A temporary 3-server cluster; one C program (bench/c_cycle.c) and one
 * TypeScript store, each with its own session and 4-byte datum, run the same
 * cycle (access for writing → +1 → release) in alternating blocks, which one
 * first alternating too: a load spike hits both sides alike. Prints the
 * medians of all cycles (and of the access half), and the median of the
 * per-block ratios. Each block also times bare round trips of an 8-byte
 * message between the C program and a Bun process echoing on a Unix socket:
 * the floor of one C → agent → C hop, whatever the agent does.
 *
 *   bun bench/c_vs_ts.ts [--blocks 40] [--ops 25] [--fsync always|batch|off]
 *
 * Needs `bun build.ts` (dist/pstore, dist/libpstore.so) and cc.
 */
import type { Subprocess } from "bun";
import { mkdtempSync, rmSync } from "node:fs";
import { loadavg } from "node:os";
import { join, resolve } from "node:path";
import { LocalCluster } from "../src/cli/cluster.ts";
import { outputLines } from "../src/cli/cluster.ts";
import { connect } from "../src/index.ts";

const ROOT = resolve(import.meta.dir, "..");
const DIST = join(ROOT, "dist");

function flag(name: string, fallback: string): string {
  const at = process.argv.indexOf(`--${name}`);
  return at >= 0 && process.argv[at + 1] ? process.argv[at + 1]! : fallback;
}
const blocks = Number(flag("blocks", "40"));
const ops = Number(flag("ops", "25"));
const fsync = flag("fsync", "off");

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

const work = mkdtempSync("/tmp/pstore-cbench-");
const program = join(work, "c_cycle");
const built = Bun.spawnSync([process.env.CC || "cc", "-O2", "-I", DIST, "-o", program, join(ROOT, "bench/c_cycle.c"), "-L", DIST, "-lpstore", `-Wl,-rpath,${DIST}`], { stderr: "inherit" });
if (built.exitCode !== 0) throw new Error("bench/c_cycle.c did not compile");

const cluster = new LocalCluster({ count: 3, basePort: 0, dataDir: join(work, "data"), command: [join(DIST, "pstore")], segmentSize: 64 * 1024 * 1024, serveArgs: ["--fsync", fsync] });
const socket = join(work, "agent.sock");
const pingSocket = join(work, "ping.sock");
// The bare Bun side of the ping-pong: echoes what it reads, as the agent's socket handler would.
const echoScript = `Bun.listen({ unix: ${JSON.stringify(pingSocket)}, socket: { data(s, chunk) { s.write(chunk); } } }); console.log("READY");`;
const echo = Bun.spawn([process.execPath, "-e", echoScript], { stdout: "pipe", stderr: "inherit" });
const agent = Bun.spawn([join(DIST, "pstore"), "agent", "--socket", socket, "--die-with-parent"], { stdout: "pipe", stderr: "inherit" });
let c: Subprocess<"pipe", "pipe", "inherit"> | null = null;
try {
  await cluster.start();
  const agentLines = outputLines(agent.stdout);
  for await (const line of agentLines) if (line.startsWith("READY")) break;
  for await (const line of outputLines(echo.stdout)) if (line.startsWith("READY")) break;
  const store = await connect({ servers: cluster.servers });
  await store.create("c", 4);
  await store.create("ts", 4);
  c = Bun.spawn([program, "c"], {
    env: { ...process.env, PSTORE_SERVERS: cluster.servers.join(","), PSTORE_AGENT_SOCKET: socket, PSTORE_PING_SOCKET: pingSocket },
    stdin: "pipe",
    stdout: "pipe",
    stderr: "inherit",
  });
  const cLines = outputLines(c.stdout);
  const cycles = { c: [] as number[], ts: [] as number[] };
  const access = { c: [] as number[], ts: [] as number[] };
  const ratios: number[] = [];
  const pings: number[] = [];

  const runPing = async (): Promise<void> => {
    c!.stdin.write(`P ${ops}\n`);
    c!.stdin.flush();
    for (;;) {
      const { value: line, done } = await cLines.next();
      if (done) throw new Error("the C program stopped");
      if (line === "DONE") break;
      pings.push(Number(line));
    }
  };

  const runC = async (): Promise<number> => {
    const times: number[] = [];
    c!.stdin.write(`${ops}\n`);
    c!.stdin.flush();
    for (;;) {
      const { value: line, done } = await cLines.next();
      if (done) throw new Error("the C program stopped");
      if (line === "DONE") break;
      const [cycle, granted] = line.split(" ").map(Number);
      times.push(cycle!);
      access.c.push(granted!);
    }
    cycles.c.push(...times);
    return median(times);
  };
  const runTs = async (): Promise<number> => {
    const times: number[] = [];
    for (let i = 0; i < ops; i++) {
      const start = performance.now();
      const view = await store.accessReadWrite("ts");
      access.ts.push((performance.now() - start) * 1000);
      view[0] = (view[0]! + 1) & 0xff;
      await store.releaseReadWrite(view);
      times.push((performance.now() - start) * 1000);
    }
    cycles.ts.push(...times);
    return median(times);
  };

  await runC(); // warm-up of both sides, not counted
  await runTs();
  cycles.c.length = cycles.ts.length = access.c.length = access.ts.length = 0;
  const loadBefore = loadavg()[0]!;
  for (let block = 0; block < blocks; block++) {
    let cMedian: number;
    let tsMedian: number;
    if (block % 2 === 0) {
      cMedian = await runC();
      tsMedian = await runTs();
    } else {
      tsMedian = await runTs();
      cMedian = await runC();
    }
    ratios.push(cMedian / tsMedian);
    await runPing();
  }
  const f = (n: number) => n.toFixed(0);
  console.log(`fsync ${fsync}; ${blocks} alternating blocks of ${ops} cycles a side; load (1 min) ${loadBefore.toFixed(1)} before, ${loadavg()[0]!.toFixed(1)} after`);
  console.log(`cycle p50: C ${f(median(cycles.c))} µs, TypeScript ${f(median(cycles.ts))} µs, ratio ${(median(cycles.c) / median(cycles.ts)).toFixed(2)}`);
  console.log(`access p50: C ${f(median(access.c))} µs, TypeScript ${f(median(access.ts))} µs`);
  console.log(`C ↔ Bun Unix-socket round trip (8 bytes, the floor of one agent hop) p50: ${f(median(pings))} µs`);
  console.log(`median of the per-block ratios: ${median(ratios).toFixed(2)} (blocks: ${[...ratios].sort((a, b) => a - b).map((r) => r.toFixed(2)).join(" ")})`);
  c.stdin.end();
  await c.exited;
  await store.close();
} finally {
  c?.kill();
  agent.kill();
  echo.kill();
  await cluster.stop();
  rmSync(work, { recursive: true, force: true });
}
