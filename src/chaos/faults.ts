/**
 * The fault schedule of a chaos run, planned in advance from the seed: at
 * which moment which server is killed, paused or cut off from which other,
 * and when it comes back. Planning on a model of the cluster (who is down,
 * which links are cut) keeps the rules whatever the timing:
 *   - never more than N−1 servers down (killed or paused) at once, unless
 *     whole-cluster kills are allowed (then all N, restarted together);
 *   - unless splits are allowed, cuts never split the servers in two: the
 *     graph of servers and uncut links stays connected, for all servers and
 *     for those up (in the default availability mode, a split lets both
 *     sides serve: the README's documented risk, not a bug to find here).
 *     A server back from a kill or a pause may or may not be in the chain for
 *     REJOIN_MS: the links must connect the chain either way (a chain of two
 *     split by one cut, while the third was rejoining through both, served on
 *     both sides: seeds 513014, 513015 and 513019).
 * The same seed and options give the same schedule.
 */
import type { CutMode } from "./proxy";
import type { Random } from "./random";

export type FaultKind = "kill" | "pause" | "cut" | "oneway" | "total";

/** A fault starts, or ends; `id` pairs a fault with its recovery. */
export type FaultEvent = { at: number; id: number } & (
  | { kind: "kill"; server: number }
  | { kind: "restart"; server: number }
  | { kind: "pause"; server: number }
  | { kind: "resume"; server: number }
  | { kind: "cut"; a: number; b: number; mode: CutMode }
  | { kind: "heal"; a: number; b: number }
  /** Server a's connections to b only: a's messages no longer reach b, b's still reach a. */
  | { kind: "oneway"; a: number; b: number; mode: CutMode }
  | { kind: "heal-oneway"; a: number; b: number }
  | { kind: "total" }
  | { kind: "restart-all" }
);

export interface ScheduleOptions {
  servers: number;
  durationMs: number;
  allowTotal: boolean;
  allowSplit: boolean;
  /** Relative frequency of each kind of fault (0: never). */
  weights: Record<FaultKind, number>;
  /** Time between two faults: uniform in [min, max] ms. */
  gapMs: [number, number];
}

export const DEFAULT_WEIGHTS: Record<FaultKind, number> = { kill: 3, pause: 2, cut: 3, oneway: 2, total: 1 };

/** How long each fault lasts, in ms: uniform in [min, max]. */
const DURATION_MS: Record<FaultKind, [number, number]> = {
  kill: [300, 5000],
  pause: [200, 3000],
  cut: [500, 6000],
  oneway: [500, 6000],
  total: [200, 2000],
};

/** How long a restarted or resumed server may take to be in the chain again. */
export const REJOIN_MS = 5000;

interface Model {
  killed: boolean[];
  paused: boolean[];
  cut: boolean[][];
  /**
   * oneWay[a][b]: a's messages to b are cut. Counted as a cut of the link: alone it splits
   * nothing, but with other cuts it can leave a server hearing none of its chain (seed 23006,
   * 5 servers: 3→4 one way and 4↔5 cut; tail 4 heard neither 3 nor 5 and served alone).
   */
  oneWay: boolean[][];
  /** When each server, back from a kill or a pause, is in the chain again. */
  rejoinedAt: number[];
}

export function planFaults(random: Random, options: ScheduleOptions): FaultEvent[] {
  const n = options.servers;
  const model: Model = {
    killed: new Array(n).fill(false),
    paused: new Array(n).fill(false),
    cut: Array.from({ length: n }, () => new Array(n).fill(false)),
    oneWay: Array.from({ length: n }, () => new Array(n).fill(false)),
    rejoinedAt: new Array(n).fill(0),
  };
  const events: FaultEvent[] = [];
  /** Recoveries not yet in `events`. */
  const pending: FaultEvent[] = [];
  const applyUntil = (t: number) => {
    pending.sort((x, y) => x.at - y.at);
    while (pending.length > 0 && pending[0]!.at <= t) {
      const event = pending.shift()!;
      apply(model, event);
      events.push(event);
    }
  };
  let t = 0;
  let faultId = 0;
  for (;;) {
    t += random.range(options.gapMs[0], options.gapMs[1]);
    if (t >= options.durationMs) break;
    applyUntil(t);
    // Every candidate fault, with its recovery; kept if the rules hold from now until every recovery planned so far.
    const candidates: Record<FaultKind, FaultEvent[][]> = { kill: [], pause: [], cut: [], oneway: [], total: [] };
    const durations = Object.fromEntries((Object.keys(DURATION_MS) as FaultKind[]).map((kind) => [kind, t + random.range(...DURATION_MS[kind])])) as Record<FaultKind, number>;
    const cutMode: CutMode = random.chance(0.5) ? "drop" : "blackhole";
    for (let i = 0; i < n; i++) {
      if (!isDown(model, i)) {
        candidates.kill.push([{ at: t, id: 0, kind: "kill", server: i }, { at: durations.kill, id: 0, kind: "restart", server: i }]);
        candidates.pause.push([{ at: t, id: 0, kind: "pause", server: i }, { at: durations.pause, id: 0, kind: "resume", server: i }]);
      }
      for (let j = i + 1; j < n; j++) {
        if (!model.cut[i]![j]) candidates.cut.push([{ at: t, id: 0, kind: "cut", a: i, b: j, mode: cutMode }, { at: durations.cut, id: 0, kind: "heal", a: i, b: j }]);
      }
      for (let j = 0; j < n; j++) {
        if (j !== i && !model.oneWay[i]![j]) candidates.oneway.push([{ at: t, id: 0, kind: "oneway", a: i, b: j, mode: cutMode }, { at: durations.oneway, id: 0, kind: "heal-oneway", a: i, b: j }]);
      }
    }
    candidates.total.push([{ at: t, id: 0, kind: "total" }, { at: durations.total, id: 0, kind: "restart-all" }]);
    const allowed = (Object.keys(candidates) as FaultKind[])
      .filter((kind) => options.weights[kind] > 0 && (kind !== "total" || options.allowTotal))
      .map((kind) => [kind, candidates[kind].filter((fault) => safe(model, pending, fault, options))] as const)
      .filter(([, list]) => list.length > 0);
    if (allowed.length === 0) continue;
    const kind = random.weighted(Object.fromEntries(allowed.map(([k]) => [k, options.weights[k]])) as Record<FaultKind, number>);
    const [start, recovery] = random.pick(allowed.find(([k]) => k === kind)![1]);
    start!.id = recovery!.id = ++faultId;
    apply(model, start!);
    events.push(start!);
    pending.push(recovery!);
  }
  // The end: every fault is repaired (the run then waits for convergence).
  applyUntil(Number.POSITIVE_INFINITY);
  return events;
}

/** Whether the rules hold after `fault` (a start and its recovery), at every step of the recoveries already planned. */
function safe(model: Model, pending: FaultEvent[], fault: FaultEvent[], options: ScheduleOptions): boolean {
  const copy: Model = { killed: [...model.killed], paused: [...model.paused], cut: model.cut.map((row) => [...row]), oneWay: model.oneWay.map((row) => [...row]), rejoinedAt: [...model.rejoinedAt] };
  const [start, recovery] = fault;
  const later = [...pending, recovery!].sort((x, y) => x.at - y.at);
  apply(copy, start!);
  if (!rulesHold(copy, options, start!.kind === "total", start!.at)) return false;
  for (const event of later) {
    apply(copy, event);
    if (!rulesHold(copy, options, copy.killed.every(Boolean), event.at)) return false;
  }
  return true;
}

/**
 * At `now`: some server is up (unless all were killed together), and unless splits are allowed,
 * the uncut links connect all servers, and the servers of every chain there may be: those up
 * that are surely in it, with any of those still rejoining (each may be in already, or not).
 * Checking at each event is enough: as servers finish rejoining, these sets only become fewer.
 */
function rulesHold(model: Model, options: ScheduleOptions, total: boolean, now: number): boolean {
  const up = upServers(model);
  if (up.length === 0 && !total) return false;
  if (options.allowSplit) return true;
  if (!connected(model, model.killed.map((_, i) => i))) return false;
  return possibleChains(up, model.rejoinedAt, now).every((members) => connected(model, members));
}

/** The up servers surely in the chain, with each subset of those still rejoining at `now`. */
function possibleChains(up: number[], rejoinedAt: number[], now: number): number[][] {
  const settled = up.filter((i) => rejoinedAt[i]! <= now);
  const rejoining = up.filter((i) => rejoinedAt[i]! > now);
  const chains: number[][] = [];
  for (let mask = 0; mask < 1 << rejoining.length; mask++) chains.push([...settled, ...rejoining.filter((_, k) => (mask >> k) & 1)]);
  return chains;
}

function apply(model: Model, event: FaultEvent): void {
  switch (event.kind) {
    case "kill":
      model.killed[event.server] = true;
      model.paused[event.server] = false;
      break;
    case "restart":
      model.killed[event.server] = false;
      model.rejoinedAt[event.server] = event.at + REJOIN_MS;
      break;
    case "pause":
      model.paused[event.server] = true;
      break;
    case "resume":
      model.paused[event.server] = false;
      model.rejoinedAt[event.server] = event.at + REJOIN_MS;
      break;
    case "cut":
    case "heal":
      model.cut[event.a]![event.b] = model.cut[event.b]![event.a] = event.kind === "cut";
      break;
    case "oneway":
    case "heal-oneway":
      model.oneWay[event.a]![event.b] = event.kind === "oneway";
      break;
    case "total":
      model.killed.fill(true);
      model.paused.fill(false);
      break;
    case "restart-all":
      model.killed.fill(false);
      break;
  }
}

const isDown = (model: Model, i: number) => model.killed[i]! || model.paused[i]!;

function upServers(model: Model): number[] {
  return model.killed.flatMap((_, i) => (isDown(model, i) ? [] : [i]));
}

/** Whether the servers in `nodes` are connected by uncut links. */
function connected(model: Model, nodes: number[]): boolean {
  if (nodes.length <= 1) return true;
  const seen = new Set([nodes[0]!]);
  const queue = [nodes[0]!];
  while (queue.length > 0) {
    const i = queue.pop()!;
    for (const j of nodes) {
      if (!seen.has(j) && !model.cut[i]![j] && !model.oneWay[i]![j] && !model.oneWay[j]![i]) {
        seen.add(j);
        queue.push(j);
      }
    }
  }
  return seen.size === nodes.length;
}

export function describeEvent(event: FaultEvent): string {
  const s = (i: number) => `server ${i + 1}`;
  switch (event.kind) {
    case "kill":
      return `kill -9 ${s(event.server)}`;
    case "restart":
      return `restart ${s(event.server)}`;
    case "pause":
      return `pause ${s(event.server)} (SIGSTOP)`;
    case "resume":
      return `resume ${s(event.server)} (SIGCONT)`;
    case "cut":
      return `cut the link ${event.a + 1}↔${event.b + 1} (${event.mode})`;
    case "heal":
      return `heal the link ${event.a + 1}↔${event.b + 1}`;
    case "oneway":
      return `cut the link ${event.a + 1}→${event.b + 1} one way (${event.mode}): ${event.a + 1}'s messages to ${event.b + 1} are lost, ${event.b + 1}'s reach ${event.a + 1}`;
    case "heal-oneway":
      return `heal the link ${event.a + 1}→${event.b + 1}`;
    case "total":
      return "kill -9 every server";
    case "restart-all":
      return "restart every server";
  }
}
