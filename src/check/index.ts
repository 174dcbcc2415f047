/**
 * History checking (DESIGN §7, §10): record what clients did (history.ts),
 * then check that the data values are linearizable per datum
 * (linearizability.ts), that holds never overlapped unsafely (holds.ts), and,
 * for the increment tests, that a counter counts exactly (checkCounter here).
 * Used by the simulator and by the real-process tests.
 */
import { describeOp, type History, type HistoryData, historyData, type OpRecord, type Value } from "./history";
import { checkHolds, type HoldsResult } from "./holds";
import { checkLinearizability, type LinearizabilityOptions, type LinearizabilityResult } from "./linearizability";

export * from "./history";
export * from "./holds";
export * from "./linearizability";

export interface HistoryCheck {
  /** true when both checks pass; "unknown" when holds pass and the linearizability search ran out of steps. */
  ok: boolean | "unknown";
  linearizability: LinearizabilityResult;
  holds: HoldsResult;
  /** Both explanations, or "" when ok. */
  explanation: string;
}

/** Linearizability of the values and safety of the holds, together. */
export function checkHistory(h: History | HistoryData, opts: LinearizabilityOptions = {}): HistoryCheck {
  const linearizability = checkLinearizability(h, opts);
  const holds = checkHolds(h);
  const ok = holds.ok === false || linearizability.ok === false ? false : linearizability.ok;
  const parts: string[] = [];
  if (linearizability.ok === false) parts.push(linearizability.explanation);
  if (linearizability.ok === "unknown") parts.push(linearizability.reason);
  if (holds.ok === false) parts.push(holds.explanation);
  return { ok, linearizability, holds, explanation: parts.join("\n") };
}

export type CounterResult =
  | {
      ok: true;
      /** Increments acknowledged (ok). */
      acknowledged: number;
      /** Increments with an unknown outcome (or still pending). */
      unknown: number;
      /** How many of the unknown ones took effect: final − initial − acknowledged. */
      unknownApplied: number;
    }
  | { ok: false; explanation: string; /** The operations at fault, if any. */ ops: number[] };

/**
 * A counter incremented only by rmw operations (saw s, wrote s + 1) ends at
 * `finalValue`: it must equal initial + acknowledged increments + some subset
 * of the unknown ones; acknowledged increments saw distinct values (two that
 * saw the same value are a lost update), each within [initial, final).
 * Failed increments did not happen and are ignored; so are reads.
 */
export function checkCounter(h: History | HistoryData, key: string, finalValue: number, opts: { initial?: number } = {}): CounterResult {
  const data = historyData(h);
  const given = opts.initial ?? data.initial[key] ?? 0;
  if (typeof given !== "number") return { ok: false, explanation: `counter ${JSON.stringify(key)}: initial value ${JSON.stringify(given)} is not a number`, ops: [] };
  const initial = given;
  const fail = (explanation: string, ops: OpRecord[] = []) => ({ ok: false as const, explanation: `counter ${JSON.stringify(key)}: ${explanation}`, ops: ops.map((r) => r.id) });
  const acked: OpRecord[] = [];
  let unknown = 0;
  for (const r of data.ops) {
    if (r.op.key !== key || r.outcome === "fail" || r.op.kind === "read") continue;
    if (r.op.kind === "write") return fail(`${describeOp(r)}: a plain write on a counter checked as increments only`, [r]);
    if (r.outcome !== "ok") {
      unknown++;
      continue;
    }
    const seen = seenBy(r);
    if (typeof seen !== "number" || r.op.value !== seen + 1) return fail(`${describeOp(r)} is not an increment (wrote saw + 1)`, [r]);
    acked.push(r);
  }
  const bySeen = new Map<number, OpRecord>();
  for (const r of acked) {
    const seen = seenBy(r) as number;
    const other = bySeen.get(seen);
    if (other) {
      return fail(`lost update: two acknowledged increments both saw ${seen}:\n  ${describeOp(other)}\n  ${describeOp(r)}`, [other, r]);
    }
    bySeen.set(seen, r);
  }
  const extra = finalValue - initial - acked.length;
  if (extra < 0) {
    return fail(`final value ${finalValue} is below initial ${initial} + ${acked.length} acknowledged increments = ${initial + acked.length}: ${-extra} acknowledged increment(s) lost`);
  }
  if (extra > unknown) {
    return fail(
      `final value ${finalValue} exceeds initial ${initial} + ${acked.length} acknowledged + ${unknown} unknown increments = ${initial + acked.length + unknown}: ${extra - unknown} increment(s) applied that nobody made, or applied twice`,
    );
  }
  for (const r of acked) {
    const seen = seenBy(r) as number;
    if (seen < initial || seen >= finalValue) {
      return fail(`${describeOp(r)} saw ${seen}, outside [${initial}, ${finalValue}): the counter went from ${initial} to ${finalValue} by increments`, [r]);
    }
  }
  return { ok: true, acknowledged: acked.length, unknown, unknownApplied: extra };
}

/** The value an increment saw: its result, or what it declared at invocation. */
function seenBy(r: OpRecord): Value | undefined {
  if (r.result !== undefined) return r.result;
  return r.op.kind === "rmw" ? r.op.expected : undefined;
}
