/**
 * Runs a range of seeds in a Web Worker (so a test or a long run can use every
 * core): receives { from, count, options }, posts back one line per failure
 * and a summary. Web APIs only.
 */
import { type SimOptions, runSeed } from "./simulation";

export interface WorkerRequest {
  from: number;
  count: number;
  options: Omit<SimOptions, "seed">;
}

export interface WorkerReply {
  from: number;
  count: number;
  failures: { seed: number; invariant: string; message: string; trace: string[] }[];
  events: number;
  ms: number;
}

declare const self: { onmessage: ((event: { data: WorkerRequest }) => void) | null; postMessage(reply: WorkerReply): void };

self.onmessage = (event) => {
  const { from, count, options } = event.data;
  const started = performance.now();
  const failures: WorkerReply["failures"] = [];
  let events = 0;
  for (let seed = from; seed < from + count; seed++) {
    const result = runSeed({ ...options, seed });
    events += result.stats.events;
    if (!result.ok) failures.push({ seed, invariant: result.failure!.invariant, message: result.failure!.message, trace: result.failure!.trace.slice(-40) });
  }
  self.postMessage({ from, count, failures, events, ms: performance.now() - started });
};
