/** What a benchmark run is asked to do: the names and shapes the CLI checks before loading the engine. */
import type { Budget } from "./loop.ts";

export const WORKLOADS = ["cycle", "read", "contended", "large", "failover", "pingpong"] as const;
export type WorkloadName = (typeof WORKLOADS)[number];
export const VICTIMS = ["head", "middle", "tail"] as const;
export type Victim = (typeof VICTIMS)[number];

export interface WorkloadSpec {
  workload: WorkloadName;
  clients: number;
  /** Datum size of cycle, read and failover. */
  size: number;
  budget: Budget;
  warmupMs: number;
  victim: Victim;
}
