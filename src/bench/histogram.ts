/**
 * Latency samples and their percentiles. Every sample is kept (8 bytes each:
 * a million operations cost 8 MB), so the percentiles are exact — no
 * bucketing error — computed by the nearest-rank method on the sorted
 * samples: p(q) is the smallest sample with at least q·n samples at or below it.
 */
import { BENCH_SAMPLES_MAX } from "../constants.ts";

export interface LatencySummary {
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
}

/** The buffer starts at this many samples and doubles as needed, up to BENCH_SAMPLES_MAX. */
const SAMPLES_INITIAL = 4096;
export class LatencyRecorder {
  private samples = new Float64Array(SAMPLES_INITIAL);
  private length = 0;
  private sorted = true;

  get count(): number {
    return this.length;
  }

  /** Records one latency, in microseconds. */
  add(latencyUs: number): void {
    if (!(latencyUs >= 0)) throw new RangeError(`a latency is a non-negative number of µs, got ${latencyUs}`);
    if (this.length === this.samples.length) this.grow();
    this.samples[this.length++] = latencyUs;
    this.sorted = false;
  }

  /** Adds every sample of `other` (samples recorded by several clients). */
  merge(other: LatencyRecorder): void {
    for (let i = 0; i < other.length; i++) this.add(other.samples[i]!);
  }

  /** The q-quantile (0 < q ≤ 1) by nearest rank; 0 when there is no sample. */
  percentile(q: number): number {
    if (!(q > 0 && q <= 1)) throw new RangeError(`a quantile is in (0, 1], got ${q}`);
    if (this.length === 0) return 0;
    this.sort();
    const rank = Math.ceil(q * this.length);
    return this.samples[Math.min(this.length, Math.max(1, rank)) - 1]!;
  }

  summary(): LatencySummary {
    let total = 0;
    for (let i = 0; i < this.length; i++) total += this.samples[i]!;
    return {
      p50: round1(this.percentile(0.5)),
      p90: round1(this.percentile(0.9)),
      p99: round1(this.percentile(0.99)),
      max: round1(this.length === 0 ? 0 : this.percentile(1)),
      mean: round1(this.length === 0 ? 0 : total / this.length),
    };
  }

  private sort(): void {
    if (this.sorted) return;
    this.samples.subarray(0, this.length).sort();
    this.sorted = true;
  }

  private grow(): void {
    if (this.samples.length >= BENCH_SAMPLES_MAX) {
      throw new RangeError(`more than ${BENCH_SAMPLES_MAX} latency samples: use a shorter --duration or fewer --ops`);
    }
    const bigger = new Float64Array(Math.min(BENCH_SAMPLES_MAX, this.samples.length * 2));
    bigger.set(this.samples);
    this.samples = bigger;
  }
}

/** Median of plain numbers (the compare script's rounds); NaN for none. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

export function round1(value: number): number {
  return Math.round(value * 10) / 10;
}
