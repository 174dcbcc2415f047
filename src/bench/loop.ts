/**
 * The closed loop every workload runs: each client issues its next operation
 * as soon as the previous one is acknowledged, for a number of operations
 * (shared by all clients, so `ops` is the total) or for a duration. A warm-up
 * of the same loop runs first and its samples are dropped.
 *
 * Times come from `performance.now()` (monotonic, sub-microsecond). The
 * latency of an operation is from just before it is issued to just after it
 * resolves; the run's `seconds` is from the first issue to the last
 * acknowledgement, so `ops / seconds` counts every operation it timed.
 */
import { LatencyRecorder } from "./histogram.ts";

/** How long or how many: exactly one of the two. */
export type Budget = { ops: number } | { durationMs: number };

export interface LoopOptions {
  clients: number;
  budget: Budget;
  /** Warm-up time before measuring; 0 for none. */
  warmupMs: number;
  /**
   * One operation of client `client`; `iteration` counts that client's
   * operations from 0 (warm-up included); `measuring` is false during the warm-up.
   */
  op: (client: number, iteration: number, measuring: boolean) => Promise<void>;
  signal?: AbortSignal;
  /** Called about every 100 ms with the measured phase's progress in [0, 1] and the operations done. */
  onProgress?: (phase: "warmup" | "measure", fraction: number, opsDone: number) => void;
  /** Called after every acknowledged operation, warm-up included, with its completion time (performance.now()). */
  onAck?: (client: number, atMs: number) => void;
}

export interface LoopResult {
  latency: LatencyRecorder;
  /** Measured operations (warm-up excluded). */
  ops: number;
  warmupOps: number;
  seconds: number;
}

const PROGRESS_PERIOD_MS = 100;

export async function runLoop(options: LoopOptions): Promise<LoopResult> {
  if (!Number.isInteger(options.clients) || options.clients < 1) throw new RangeError(`clients must be at least 1, got ${options.clients}`);
  const iterations = new Array<number>(options.clients).fill(0);
  let warmupOps = 0;
  if (options.warmupMs > 0) {
    const warmup = await _phase(options, iterations, { durationMs: options.warmupMs }, "warmup", null);
    warmupOps = warmup.ops;
  }
  const latency = new LatencyRecorder();
  const measured = await _phase(options, iterations, options.budget, "measure", latency);
  return { latency, ops: measured.ops, warmupOps, seconds: measured.seconds };
}

async function _phase(
  options: LoopOptions,
  iterations: number[],
  budget: Budget,
  phase: "warmup" | "measure",
  latency: LatencyRecorder | null,
): Promise<{ ops: number; seconds: number }> {
  const opsLimit = "ops" in budget ? budget.ops : Number.POSITIVE_INFINITY;
  const startMs = performance.now();
  const endMs = "durationMs" in budget ? startMs + budget.durationMs : Number.POSITIVE_INFINITY;
  let issued = 0;
  let done = 0;
  let lastAckMs = startMs;
  const progress = options.onProgress;
  const timer = progress
    ? setInterval(() => {
        const fraction = "ops" in budget ? done / budget.ops : (performance.now() - startMs) / budget.durationMs;
        progress(phase, Math.min(1, fraction), done);
      }, PROGRESS_PERIOD_MS)
    : null;
  // The first failure stops every client (at its next operation) and is the phase's error.
  let failure: { error: unknown } | null = null;
  const client = async (index: number) => {
    while (failure === null && issued < opsLimit && performance.now() < endMs) {
      options.signal?.throwIfAborted();
      issued++;
      const t0 = performance.now();
      await options.op(index, iterations[index]!++, latency !== null);
      const t1 = performance.now();
      latency?.add((t1 - t0) * 1000);
      done++;
      lastAckMs = t1;
      options.onAck?.(index, t1);
    }
  };
  await Promise.allSettled(
    Array.from({ length: options.clients }, (_, index) =>
      client(index).catch((error: unknown) => {
        failure ??= { error };
        throw error;
      }),
    ),
  );
  if (timer) clearInterval(timer);
  if (failure !== null) throw (failure as { error: unknown }).error;
  progress?.(phase, 1, done);
  return { ops: done, seconds: Math.max(lastAckMs - startMs, 1e-3) / 1000 };
}
