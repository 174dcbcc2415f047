/** The shell's `bench` command. */
import type { Store } from "../../../client/types.ts";
import { PStoreError } from "../../../errors.ts";
import { formatBytes, parseSize } from "../../flags.ts";
import { type CommandSpec, connectedStore, type ShellContext, type ShellOutput, usage, WAIT_NOTICE_MS } from "./spec.ts";

export const bench: CommandSpec = {
  usage: "bench [CYCLES] [SIZE]",
  summary: "Time CYCLES write cycles on a temporary datum of SIZE bytes (default 1000 of 4KiB)",
  details: [
    "A cycle is acquire-write, rewrite every byte, release (which ships every page to every server).",
    "It prints the median and 99th percentile latency of a cycle and the cycles per second.",
    "The datum (bench-…) is deleted afterwards. Ctrl-C stops early and prints what was measured.",
    "More workloads, clients and a JSON report: pstore bench --help.",
  ],
  examples: ["bench", "bench 200 64KiB"],
  args: [0, 2],
  cancellable: true,
  async run(ctx, [cyclesText, sizeText], signal) {
    const cycles = cyclesText === undefined ? _BENCH_CYCLES_DEFAULT : _benchCycles(cyclesText);
    const size = sizeText === undefined ? _BENCH_SIZE_DEFAULT : usage(() => parseSize(sizeText, "SIZE"));
    return _runBench(ctx, await connectedStore(ctx, signal), cycles, size, signal);
  },
};

const _BENCH_CYCLES_DEFAULT = 1000;
const _BENCH_CYCLES_MAX = 1_000_000;
const _BENCH_SIZE_DEFAULT = 4096;
const _PROGRESS_EVERY_MS = 100;

function _benchCycles(text: string): number {
  if (!/^\d+$/.test(text) || Number(text) < 1 || Number(text) > _BENCH_CYCLES_MAX) {
    throw new PStoreError("EINVAL", `CYCLES must be a whole number from 1 to ${_BENCH_CYCLES_MAX}, got "${text}"`);
  }
  return Number(text);
}

/** Write cycles on a datum of its own, deleted afterwards; stops early (keeping what it measured) on abort. */
async function _runBench(ctx: ShellContext, store: Store, cycles: number, size: number, signal: AbortSignal | undefined): Promise<ShellOutput> {
  const name = `bench-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  await store.create(name, size);
  const latenciesMs: number[] = [];
  const startMs = performance.now();
  // After the notice, the same bar as pstore bench (on a terminal): a long run shows that it moves.
  const label = `bench ${formatBytes(size)}`;
  let progress: Timer | undefined;
  const notice = setTimeout(() => {
    ctx.notice?.(`running ${cycles} cycles… (Ctrl-C stops)`);
    if (ctx.progress) progress = setInterval(() => ctx.progress?.update(label, latenciesMs.length / cycles, latenciesMs.length), _PROGRESS_EVERY_MS);
  }, WAIT_NOTICE_MS);
  try {
    for (let i = 0; i < cycles && !signal?.aborted; i++) {
      const cycleStartMs = performance.now();
      let view: Uint8Array;
      try {
        view = await store.accessReadWrite(name, { signal });
      } catch (error) {
        if (error instanceof PStoreError && error.code === "ECANCELED") break;
        throw error;
      }
      view.fill(i & 0xff);
      await store.releaseReadWrite(view);
      latenciesMs.push(performance.now() - cycleStartMs);
    }
  } finally {
    clearTimeout(notice);
    clearInterval(progress);
    ctx.progress?.clear();
    await store.delete(name).catch(() => {});
  }
  const elapsedMs = performance.now() - startMs;
  if (latenciesMs.length === 0) throw new PStoreError("ECANCELED", "the benchmark was stopped before its first cycle");
  latenciesMs.sort((a, b) => a - b);
  const percentile = (p: number) => latenciesMs[Math.max(0, Math.ceil(p * latenciesMs.length) - 1)]!;
  const result = {
    cycles: latenciesMs.length,
    size,
    p50Ms: _round(percentile(0.5)),
    p99Ms: _round(percentile(0.99)),
    opsPerSec: Math.round((latenciesMs.length * 1000) / elapsedMs),
  };
  const done = result.cycles < cycles ? `stopped after ${result.cycles} of ${cycles} cycles` : `${cycles} cycles`;
  return {
    text: `${done} of ${formatBytes(size)}: p50 ${result.p50Ms} ms, p99 ${result.p99Ms} ms, ${result.opsPerSec} ops/s`,
    value: result,
  };
}

/** Three significant digits, at most 3 decimals: 0.412, 12.3, 1530. */
function _round(ms: number): number {
  if (ms >= 100) return Math.round(ms);
  return Number(ms.toPrecision(3));
}
