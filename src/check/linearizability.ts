/**
 * Linearizability of the data values, per datum.
 *
 * Each key is an independent register (P-compositionality: a history is
 * linearizable iff its restriction to every key is), checked with the
 * Wing–Gong algorithm as improved by Lowe and used by Porcupine: walk the
 * history's call/return entries in time order, linearize a pending call when
 * the model accepts it, backtrack when a return is reached whose call was not
 * linearized, and never explore the same (set of linearized operations, model
 * state) twice.
 *
 * The register model: write v sets v; read sees the current value; rmw (saw s,
 * wrote v) is possible only where the value is s, and sets v.
 *
 * Outcomes: a failed operation did not happen and is left out; an operation
 * with an unknown outcome (or still pending) may take effect at any point
 * after its invocation, or never (it has no return entry and is not required
 * for the search to finish); an unknown read told nothing and is left out.
 *
 * The memo key is exact and small: the linearized completed operations are
 * stored as "all of the first P in call order" plus the few after P, and the
 * linearized unknown operations as a bitset, with the model state.
 *
 * Two sound reductions on top (checked against a brute-force search in the
 * tests): a pending read the model accepts is linearized at once, with no
 * alternative tried; and a node is abandoned as soon as a pending completed
 * read or rmw needs a value that differs from the current one and that no
 * pending operation writes any more.
 */
import { LINEARIZABILITY_STEPS_MAX } from "../constants";
import { describeOp, type History, type HistoryData, historyData, type OpRecord, type Value } from "./history";

export interface LinearizabilityOptions {
  /** Search budget per key, in model steps; beyond it the answer is "unknown". Default 10,000,000. */
  maxSteps?: number;
  /** Initial value of a key whose initial value is given neither in `initialByKey` nor in the history. Default null. */
  initial?: Value;
  /** Initial values per key; they win over the history's `initial()` records. */
  initialByKey?: Record<string, Value>;
  /** Check only these keys. */
  keys?: string[];
}

export type LinearizabilityResult =
  | { ok: true; keys: number; ops: number; steps: number }
  | {
      ok: false;
      key: string;
      explanation: string;
      /** A linearizable prefix (the longest the search reached) after which `stuck` cannot be placed, as operation ids in order. */
      prefix: number[];
      /** The register's value after that prefix. */
      state: Value;
      /** Operations that could not be placed there: the one whose return was reached first, then the other candidates. */
      stuck: number[];
    }
  | { ok: "unknown"; key: string; reason: string; steps: number };

/** JSON with object keys sorted, so equal values have equal text. */
export function canonical(v: Value): string {
  if (v === null || typeof v !== "object") return JSON.stringify(v) ?? "undefined";
  if (Array.isArray(v)) return `[${v.map(canonical).join(",")}]`;
  const keys = Object.keys(v).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, Value>)[k] as Value)}`).join(",")}}`;
}

const WRITE = 0;
const READ = 1;
const RMW = 2;

/** What the register must hold for the operation to take effect: the value a read or rmw saw. */
function seenValue(r: OpRecord): Value | undefined {
  if (r.op.kind === "read") return r.outcome === "ok" ? r.result : undefined;
  if (r.op.kind === "rmw") return r.outcome === "ok" && r.result !== undefined ? r.result : r.op.expected;
  return undefined;
}

function relevant(r: OpRecord): boolean {
  if (r.outcome === "fail") return false;
  if (r.op.kind === "read") return r.outcome === "ok";
  return true;
}

function completed(r: OpRecord): boolean {
  return r.outcome === "ok";
}

export function checkLinearizability(h: History | HistoryData, opts: LinearizabilityOptions = {}): LinearizabilityResult {
  const data = historyData(h);
  const byKey = new Map<string, OpRecord[]>();
  const only = opts.keys ? new Set(opts.keys) : undefined;
  for (const r of data.ops) {
    if (only && !only.has(r.op.key)) continue;
    let list = byKey.get(r.op.key);
    if (!list) byKey.set(r.op.key, (list = []));
    list.push(r);
  }
  const maxSteps = opts.maxSteps ?? LINEARIZABILITY_STEPS_MAX;
  let steps = 0;
  let ops = 0;
  let unknown: LinearizabilityResult | undefined;
  for (const [key, all] of byKey) {
    const initial = opts.initialByKey?.[key] ?? data.initial[key] ?? opts.initial ?? null;
    const res = checkKey(key, all, initial, maxSteps);
    if (res.ok === false) return res;
    if (res.ok === "unknown") {
      unknown ??= res;
      continue;
    }
    steps += res.steps;
    ops += res.ops;
  }
  return unknown ?? { ok: true, keys: byKey.size, ops, steps };
}

type KeyResult = Exclude<LinearizabilityResult, { ok: true }> | { ok: true; ops: number; steps: number };

function checkKey(key: string, all: OpRecord[], initial: Value, maxSteps: number): KeyResult {
  // Values → small integers.
  const ids = new Map<string, number>();
  const values: Value[] = [];
  const intern = (v: Value): number => {
    const c = canonical(v);
    let id = ids.get(c);
    if (id === undefined) {
      id = values.length;
      ids.set(c, id);
      values.push(v);
    }
    return id;
  };
  const initId = intern(initial);

  const recs = all.filter(relevant).sort((a, b) => a.invokeNs - b.invokeNs || a.id - b.id);
  const n = recs.length;

  // A read of a value nothing could have written needs no search.
  const written = new Set<number>([initId]);
  for (const r of recs) if (r.op.kind !== "read") written.add(intern(r.op.value));
  for (const r of recs) {
    const seen = seenValue(r);
    if (r.outcome !== "ok" || seen === undefined || written.has(intern(seen))) continue;
    const failedWriters = all.filter((w) => w.outcome === "fail" && w.op.kind !== "read" && canonical(w.op.value) === canonical(seen));
    const why = failedWriters.length
      ? ` (only ${failedWriters.map((w) => `#${w.id}`).join(", ")} wrote it, and ${failedWriters.length > 1 ? "they" : "it"} failed)`
      : "";
    return {
      ok: false,
      key,
      prefix: [],
      state: initial,
      stuck: [r.id],
      explanation: `key ${JSON.stringify(key)} is not linearizable: no operation wrote ${JSON.stringify(seen)}${why}, and it is not the initial value ${JSON.stringify(initial)}, yet\n    ${describeOp(r)}`,
    };
  }

  // Operations: kind, the value they need (-1: any), the value they leave.
  const kind = new Uint8Array(n);
  const need = new Int32Array(n);
  const put = new Int32Array(n);
  // Completed operations are ranked 0..C-1 in call order, unknown ones 0..U-1.
  const isDone = new Uint8Array(n);
  const rank = new Int32Array(n);
  let C = 0;
  let U = 0;
  for (let i = 0; i < n; i++) {
    const r = recs[i] as OpRecord;
    kind[i] = r.op.kind === "write" ? WRITE : r.op.kind === "read" ? READ : RMW;
    const seen = seenValue(r);
    need[i] = seen === undefined ? -1 : intern(seen);
    put[i] = r.op.kind === "read" ? -1 : intern(r.op.value);
    if (completed(r)) {
      isDone[i] = 1;
      rank[i] = C++;
    } else rank[i] = U++;
  }

  // Entries: calls and returns in time order, calls first at equal times (so
  // touching operations count as concurrent). Node 0 is the head sentinel.
  type Ev = { t: number; ret: boolean; op: number };
  const evs: Ev[] = [];
  for (let i = 0; i < n; i++) {
    const r = recs[i] as OpRecord;
    evs.push({ t: r.invokeNs, ret: false, op: i });
    if (isDone[i]) evs.push({ t: r.endNs as number, ret: true, op: i });
  }
  evs.sort((a, b) => a.t - b.t || Number(a.ret) - Number(b.ret) || a.op - b.op);
  const E = evs.length;
  const entOp = new Int32Array(E + 1);
  const entRet = new Uint8Array(E + 1);
  const match = new Int32Array(E + 1).fill(-1);
  const next = new Int32Array(E + 1);
  const prev = new Int32Array(E + 1);
  const callOf = new Int32Array(n);
  for (let e = 1; e <= E; e++) {
    const ev = evs[e - 1] as Ev;
    entOp[e] = ev.op;
    entRet[e] = ev.ret ? 1 : 0;
    if (!ev.ret) callOf[ev.op] = e;
    else match[callOf[ev.op] as number] = e;
  }
  for (let e = 0; e <= E; e++) {
    next[e] = e < E ? e + 1 : -1;
    prev[e] = e - 1;
  }
  const lift = (e: number) => {
    next[prev[e] as number] = next[e] as number;
    if (next[e] !== -1) prev[next[e] as number] = prev[e] as number;
    const m = match[e] as number;
    if (m !== -1) {
      next[prev[m] as number] = next[m] as number;
      if (next[m] !== -1) prev[next[m] as number] = prev[m] as number;
    }
  };
  const unlift = (e: number) => {
    const m = match[e] as number;
    if (m !== -1) {
      next[prev[m] as number] = m;
      if (next[m] !== -1) prev[next[m] as number] = m;
    }
    next[prev[e] as number] = e;
    if (next[e] !== -1) prev[next[e] as number] = e;
  };

  // The linearized set, and its exact, compact memo key.
  const linC = new Uint8Array(C);
  const linU = new Uint32Array((U + 31) >>> 5); // a bitset: there may be many
  const inU = (r: number) => ((linU[r >>> 5] as number) >>> (r & 31)) & 1;
  let pc = 0; // all completed operations of rank < pc are linearized
  let countC = 0;
  let countU = 0;
  const seenKeys = new Set<string>();
  // Pruning: a node is dead when a pending completed operation needs a value u
  // other than the current one, and no pending operation writes u any more.
  // `bad` counts such values u (plus, harmlessly, the current one).
  const V = values.length;
  const needers = new Int32Array(V); // pending completed operations needing u
  const writers = new Int32Array(V); // pending operations writing u
  for (let i = 0; i < n; i++) {
    if (isDone[i] && need[i]! >= 0) needers[need[i]!]!++;
    if (put[i]! >= 0) writers[put[i]!]!++;
  }
  const isBad = (u: number) => needers[u]! > 0 && writers[u] === 0;
  let bad = 0;
  for (let u = 0; u < V; u++) if (isBad(u)) bad++;
  const doomed = (state: number) => bad > (isBad(state) ? 1 : 0);
  const memoKey = (state: number): string => {
    let s = `${state}:${pc}:`;
    for (let r = pc + 1, left = countC - pc; left > 0; r++) {
      if (linC[r]) {
        s += `${r},`;
        left--;
      }
    }
    if (countU > 0) {
      s += "/";
      for (let i = 0; i < linU.length; i++) if (linU[i]) s += `${i}.${linU[i]},`;
    }
    return s;
  };
  const mark = (op: number, on: boolean) => {
    const nd = isDone[op] ? (need[op] as number) : -1;
    const p = put[op] as number;
    if (nd >= 0 && isBad(nd)) bad--;
    if (p >= 0 && p !== nd && isBad(p)) bad--;
    const delta = on ? -1 : 1;
    if (nd >= 0) needers[nd]! += delta;
    if (p >= 0) writers[p]! += delta;
    if (nd >= 0 && isBad(nd)) bad++;
    if (p >= 0 && p !== nd && isBad(p)) bad++;
    const r = rank[op] as number;
    if (isDone[op]) {
      linC[r] = on ? 1 : 0;
      if (on) {
        countC++;
        if (r === pc) while (pc < C && linC[pc]) pc++;
      } else {
        countC--;
        if (r < pc) pc = r;
      }
    } else {
      if (on) linU[r >>> 5] = (linU[r >>> 5] as number) | (1 << (r & 31));
      else linU[r >>> 5] = (linU[r >>> 5] as number) & ~(1 << (r & 31));
      countU += on ? 1 : -1;
    }
  };

  // The search. Each node is (linearized set, state); its children are the
  // pending calls the model accepts, tried in call order. One reduction: a
  // pending operation that never changes the state (a read; an rmw that wrote
  // what it saw) and that the model accepts here may as well be linearized at
  // once: every other pending operation returns after its call, so any
  // linearization placing it later can place it here instead. Such a "forced"
  // child is its node's only child.
  const stack: number[] = []; // call entries linearized, in order
  const forced: boolean[] = [];
  const stateBefore: number[] = [];
  let state = initId;
  let steps = 0;
  let best: { prefix: number[]; state: number; block: number; candidates: number[]; unwritable: boolean } | undefined;
  const linearized = (i: number) => (isDone[i] ? linC[rank[i] as number] : inU(rank[i] as number)) === 1;
  /** A child `op` leading to state `a` is doomed: remember it if it goes further than anything so far. */
  const noteDoomed = (op: number, a: number) => {
    if (best && stack.length + 1 <= best.prefix.length) return;
    let block = -1;
    for (let i = 0; i < n && block === -1; i++) {
      const u = need[i] as number;
      if (isDone[i] && !linearized(i) && u >= 0 && u !== a && isBad(u)) block = i;
    }
    if (block === -1) return;
    best = { prefix: [...stack.map((e) => entOp[e] as number), op], state: a, block, candidates: [], unwritable: true };
  };
  let entry = next[0] as number;
  let fresh = true; // at a node's first visit
  let dead = false; // pop back to the last node with children left
  const push = (e: number, after: number, isForced: boolean) => {
    stack.push(e);
    forced.push(isForced);
    stateBefore.push(state);
    state = after;
    lift(e);
    entry = next[0] as number;
    fresh = true;
  };
  // Operations that leave the state unchanged wherever they can take effect:
  // reads, and rmw that saw and wrote the same value.
  const pure = new Uint8Array(n);
  for (let i = 0; i < n; i++) pure[i] = kind[i] === READ || (kind[i] === RMW && need[i] !== -1 && need[i] === put[i]) ? 1 : 0;
  const accepts = (op: number) => {
    const nd = need[op] as number;
    return nd === -1 || nd === state;
  };
  const after = (op: number) => (kind[op] === READ ? state : (put[op] as number));
  while (countC < C) {
    if (steps > maxSteps) {
      return {
        ok: "unknown",
        key,
        steps,
        reason: `key ${JSON.stringify(key)}: search stopped after ${maxSteps} steps (maxSteps) with ${countC} of ${C} completed operations placed; ${n} operations on this key`,
      };
    }
    if (dead) {
      dead = false;
      let resumed = false;
      while (stack.length > 0) {
        const top = stack.pop() as number;
        const wasForced = forced.pop() as boolean;
        state = stateBefore.pop() as number;
        mark(entOp[top] as number, false);
        unlift(top);
        if (!wasForced) {
          entry = next[top] as number; // the parent's next child
          resumed = true;
          break;
        }
      }
      if (!resumed) break; // every node is dead: not linearizable
      fresh = false;
      continue;
    }
    if (fresh) {
      fresh = false;
      let stutter = -1;
      for (let e = next[0] as number; e !== -1 && !entRet[e]; e = next[e] as number) {
        steps++;
        const op = entOp[e] as number;
        if (pure[op] && accepts(op)) {
          stutter = e;
          break;
        }
      }
      if (stutter !== -1) {
        const op = entOp[stutter] as number;
        mark(op, true);
        if (doomed(state)) {
          noteDoomed(op, state);
          mark(op, false);
          dead = true;
          continue;
        }
        const mk = memoKey(state);
        if (seenKeys.has(mk)) {
          mark(op, false);
          dead = true;
        } else {
          seenKeys.add(mk);
          push(stutter, state, true);
        }
        continue;
      }
    }
    steps++;
    if (entry === -1) break; // cannot happen while a return entry remains
    const op = entOp[entry] as number;
    if (!entRet[entry]) {
      if (accepts(op)) {
        const a = after(op);
        mark(op, true);
        if (doomed(a)) {
          noteDoomed(op, a);
          mark(op, false);
          entry = next[entry] as number;
          continue;
        }
        const mk = memoKey(a);
        if (!seenKeys.has(mk)) {
          seenKeys.add(mk);
          push(entry, a, false);
          continue;
        }
        mark(op, false);
      }
      entry = next[entry] as number;
    } else {
      // The return of an operation not linearized: this node is dead.
      if (!best || stack.length > best.prefix.length) {
        const candidates: number[] = [];
        for (let e = next[0] as number; e !== entry && e !== -1; e = next[e] as number) candidates.push(entOp[e] as number);
        best = { prefix: stack.map((e) => entOp[e] as number), state, block: op, candidates, unwritable: false };
      }
      dead = true;
    }
  }
  if (countC === C) return { ok: true, ops: n, steps };

  // Not linearizable: explain with the longest prefix found.
  // (Some dead end is always recorded before the search gives up; the fallback is for safety.)
  const b = best ?? { prefix: [], state: initId, block: 0, candidates: [], unwritable: false };
  const rec = (i: number) => recs[i] as OpRecord;
  const shown = 6;
  const tail = b.prefix.slice(-shown).map((i) => `    ${describeOp(rec(i))}`);
  const more = b.prefix.length > shown ? [`    … and ${b.prefix.length - shown} earlier operations`] : [];
  const others = b.candidates.filter((i) => i !== b.block);
  const lines = [
    `key ${JSON.stringify(key)} is not linearizable (${n} operations).`,
    `  Linearizable prefix reached: ${b.prefix.length} operation${b.prefix.length === 1 ? "" : "s"}${b.prefix.length ? ", ending with:" : ""}`,
    ...more,
    ...tail,
    `  after which the register holds ${JSON.stringify(values[b.state])}.`,
    b.unwritable
      ? `  This operation can no longer be placed: it saw ${JSON.stringify(values[need[b.block] as number])}, and no operation left can write that:`
      : `  This operation returned before it could be placed:`,
    `    ${describeOp(rec(b.block))}`,
  ];
  if (others.length) {
    lines.push(`  Other operations that could come next, none leading to a linearization:`);
    for (const i of others.slice(0, 8)) lines.push(`    ${describeOp(rec(i))}`);
    if (others.length > 8) lines.push(`    … and ${others.length - 8} more`);
  }
  return {
    ok: false,
    key,
    prefix: b.prefix.map((i) => rec(i).id),
    state: values[b.state] as Value,
    stuck: [rec(b.block).id, ...others.map((i) => rec(i).id)],
    explanation: lines.join("\n"),
  };
}
