/** The benchmark engine behind `pstore bench` and bench/compare.ts. */
export { LatencyRecorder, median, round1, type LatencySummary } from "./histogram.ts";
export { runLoop, type Budget, type LoopOptions, type LoopResult } from "./loop.ts";
export { createProgress, formatResultsTable, formatRss, notesOf, type Progress } from "./render.ts";
export { rssKiB, serversRss, type ServerRss } from "./rss.ts";
export * from "./spec.ts";
export {
  COUNTER_BYTES,
  cycleOp,
  LARGE_BYTES,
  resultOf,
  runPrefix,
  runWorkload,
  SMALL_BYTES,
  type BenchResult,
  type BenchTarget,
  type KillableCluster,
  type RunHooks,
} from "./workloads.ts";
export { resolveServers } from "../client/index.ts";
