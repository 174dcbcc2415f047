/**
 * Runs ranges of seeds in a Web Worker (so a test or a long run can use every
 * core): receives a list of jobs { from, count, options }, posts back the
 * failures and a summary. Web APIs only.
 */
import { type SimOptions, runSeed } from "./simulation";

export interface SeedJob {
  from: number;
  count: number;
  options: Omit<SimOptions, "seed">;
}

export interface WorkerReply {
  seeds: number;
  failures: { seed: number; options: Omit<SimOptions, "seed">; invariant: string; message: string; trace: string[] }[];
  events: number;
  ms: number;
}

declare const self: { onmessage: ((event: { data: SeedJob[] }) => void) | null; postMessage(reply: WorkerReply): void };

self.onmessage = (event) => {
  const started = performance.now();
  const reply: WorkerReply = { seeds: 0, failures: [], events: 0, ms: 0 };
  for (const { from, count, options } of event.data) {
    for (let seed = from; seed < from + count; seed++) {
      const result = runSeed({ ...options, seed });
      reply.seeds++;
      reply.events += result.stats.events;
      if (!result.ok) {
        const { invariant, message, trace } = result.failure!;
        reply.failures.push({ seed, options, invariant, message, trace: trace.slice(-40) });
      }
    }
  }
  reply.ms = performance.now() - started;
  self.postMessage(reply);
};
