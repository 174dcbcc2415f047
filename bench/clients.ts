#!/usr/bin/env bun
/**
 * Can one Bun process drive `pstore bench`'s 8 clients, or do they need
 * worker processes? This runs the 8-client cycle (4 KiB, --fsync off) with
 * the clients split over 1, 2, 4 and 8 processes, in alternating rounds, and
 * prints the median cycles/s of each split and the CPU share the client
 * processes used. docs/benchmarks.md quotes it.
 *
 *   bun bench/clients.ts [--rounds 3] [--seconds 3]
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { cycleOp, median, runLoop } from "../src/bench/index.ts";
import { LocalCluster } from "../src/cli/cluster.ts";
import { connect, type Store } from "../src/index.ts";

const CLIENTS = 8;
const SPLITS = [1, 2, 4, 8];
const ROOT = resolve(import.meta.dir, "..");

/** Worker: `--worker servers first count ms`; prints READY, waits for a line on stdin, runs, prints {ops, cpuMs}. */
async function worker(servers: string, first: number, count: number, ms: number): Promise<void> {
  const stores: Store[] = await Promise.all(Array.from({ length: count }, () => connect({ servers })));
  const names = stores.map((_, i) => `clients-${first + i}`);
  process.stdout.write("READY\n");
  for await (const _ of console) break;
  const cpuBefore = process.cpuUsage();
  const run = await runLoop({ clients: count, budget: { durationMs: ms }, warmupMs: 0, op: cycleOp(stores, names) });
  const cpu = process.cpuUsage(cpuBefore);
  process.stdout.write(`${JSON.stringify({ ops: run.ops, seconds: run.seconds, cpuMs: (cpu.user + cpu.system) / 1000 })}\n`);
  await Promise.all(stores.map((store) => store.close()));
}

async function measure(servers: string[], processes: number, ms: number): Promise<{ opsPerS: number; cpuShare: number }> {
  const per = CLIENTS / processes;
  const children = Array.from({ length: processes }, (_, p) =>
    Bun.spawn([process.execPath, import.meta.path, "--worker", servers.join(","), String(p * per), String(per), String(ms)], {
      stdin: "pipe",
      stdout: "pipe",
      stderr: "inherit",
    }),
  );
  try {
    const outputs = children.map((child) => {
      let text = "";
      const done = (async () => {
        for await (const chunk of child.stdout) text += new TextDecoder().decode(chunk);
      })();
      return { text: () => text, done };
    });
    while (!outputs.every((output) => output.text().includes("READY"))) await Bun.sleep(10);
    for (const child of children) {
      child.stdin.write("go\n");
      child.stdin.flush();
    }
    await Promise.all(outputs.map((output) => output.done));
    const results = outputs.map((output) => JSON.parse(output.text().split("\n")[1]!) as { ops: number; seconds: number; cpuMs: number });
    const seconds = Math.max(...results.map((r) => r.seconds));
    const ops = results.reduce((sum, r) => sum + r.ops, 0);
    const cpuMs = results.reduce((sum, r) => sum + r.cpuMs, 0);
    return { opsPerS: ops / seconds, cpuShare: cpuMs / (seconds * 1000) };
  } finally {
    for (const child of children) if (child.exitCode === null) child.kill("SIGKILL");
  }
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const option = (name: string, fallback: number) => (argv.includes(name) ? Number(argv[argv.indexOf(name) + 1]) : fallback);
  const rounds = option("--rounds", 3);
  const ms = option("--seconds", 3) * 1000;
  const dataDir = mkdtempSync(join(tmpdir(), "pstore-clients-"));
  const cluster = new LocalCluster({ count: 3, basePort: 0, dataDir, fsync: "off", command: [join(ROOT, "dist/pstore")] });
  try {
    await cluster.start();
    const setup = await connect({ servers: cluster.servers });
    for (let i = 0; i < CLIENTS; i++) await setup.create(`clients-${i}`, 4096);
    await setup.close();
    const seen = new Map<number, { ops: number[]; cpu: number[] }>(SPLITS.map((split) => [split, { ops: [], cpu: [] }]));
    for (let round = 0; round < rounds; round++) {
      for (const split of round % 2 === 0 ? SPLITS : [...SPLITS].reverse()) {
        const { opsPerS, cpuShare } = await measure(cluster.servers, split, ms);
        seen.get(split)!.ops.push(opsPerS);
        seen.get(split)!.cpu.push(cpuShare);
        process.stderr.write(`round ${round + 1}: ${split} process(es): ${opsPerS.toFixed(0)} cycles/s, clients used ${(cpuShare * 100).toFixed(0)}% of a core\n`);
      }
    }
    for (const [split, { ops, cpu }] of seen) {
      console.log(`${CLIENTS} clients in ${split} process(es): median ${median(ops).toFixed(0)} cycles/s, client CPU ${(median(cpu) * 100).toFixed(0)}% of a core`);
    }
  } finally {
    await cluster.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

if (process.argv[2] === "--worker") {
  const [servers, first, count, ms] = process.argv.slice(3);
  await worker(servers!, Number(first), Number(count), Number(ms));
  process.exit(0);
} else {
  await main();
}
