/**
 * Hold safety (DESIGN §7, invariant 3): on every key, a write hold never
 * overlapped another hold in real time.
 *
 * Only what clients observed counts. A hold is the interval [g, r]: the client
 * had the grant by g, and it issued the release at r (whatever the release's
 * outcome: the client stopped using the datum at r, and the server let go of
 * the hold no earlier). The server's own hold covers at least [g, r], so two
 * holds certainly overlapped when g1 < r2 and g2 < r1; that is a violation when
 * either is a write hold. A hold that ended without a release the client issued
 * (lost, or still open when the history ends) is only certain at its grant:
 * [g, g].
 */
import { type ClientId, type History, type HistoryData, historyData, type HoldMode } from "./history";

export interface HoldInterval {
  client: ClientId;
  key: string;
  mode: HoldMode;
  holdId: number | string;
  grantedNs: number;
  /** When the client issued the release; absent if the hold was lost or never released. */
  releasedNs?: number;
  /** How it ended. */
  end: "released" | "lost" | "open";
}

export type HoldsResult =
  | { ok: true; holds: number; keys: number }
  | {
      ok: false;
      key: string;
      /** The first conflicting pair found (a granted before b). */
      a: HoldInterval;
      b: HoldInterval;
      /** All conflicting pairs found (up to 100). */
      violations: Array<[HoldInterval, HoldInterval]>;
      explanation: string;
    }
  | { ok: false; key: string; malformed: string; explanation: string };

function certainEnd(h: HoldInterval): number {
  return h.releasedNs ?? h.grantedNs;
}

export function describeHold(h: HoldInterval): string {
  const end = h.end === "released" ? `released at ${h.releasedNs}` : h.end === "lost" ? "lost (end unknown)" : "never released";
  return `${h.mode} hold ${String(h.holdId)} of client ${h.client} on ${JSON.stringify(h.key)}: granted by ${h.grantedNs}, ${end}`;
}

/** The holds as intervals, per key, from the history's hold events. */
export function holdIntervals(h: History | HistoryData): { intervals: Map<string, HoldInterval[]>; malformed?: { key: string; problem: string } } {
  const data = historyData(h);
  const intervals = new Map<string, HoldInterval[]>();
  const open = new Map<string, HoldInterval>();
  const id = (client: ClientId, key: string, holdId: number | string) => JSON.stringify([client, key, holdId]);
  for (const e of data.holds) {
    const k = id(e.client, e.key, e.holdId);
    if (e.type === "granted") {
      if (open.has(k)) return { intervals, malformed: { key: e.key, problem: `hold ${String(e.holdId)} granted twice to client ${e.client} without a release in between` } };
      const iv: HoldInterval = { client: e.client, key: e.key, mode: e.mode, holdId: e.holdId, grantedNs: e.timeNs, end: "open" };
      open.set(k, iv);
      let list = intervals.get(e.key);
      if (!list) intervals.set(e.key, (list = []));
      list.push(iv);
    } else {
      const iv = open.get(k);
      if (!iv) return { intervals, malformed: { key: e.key, problem: `hold ${String(e.holdId)} of client ${e.client} ${e.type} without a grant` } };
      open.delete(k);
      if (e.type === "released") {
        if (e.timeNs < iv.grantedNs) {
          return { intervals, malformed: { key: e.key, problem: `hold ${String(e.holdId)} of client ${e.client} released at ${e.timeNs}, before its grant at ${iv.grantedNs}` } };
        }
        iv.releasedNs = e.timeNs;
        iv.end = "released";
      } else iv.end = "lost";
    }
  }
  return { intervals };
}

export function checkHolds(h: History | HistoryData): HoldsResult {
  const { intervals, malformed } = holdIntervals(h);
  if (malformed) {
    return { ok: false, key: malformed.key, malformed: malformed.problem, explanation: `malformed hold events on ${JSON.stringify(malformed.key)}: ${malformed.problem}` };
  }
  let total = 0;
  for (const [key, list] of intervals) {
    total += list.length;
    const sorted = [...list].sort((x, y) => x.grantedNs - y.grantedNs);
    const violations: Array<[HoldInterval, HoldInterval]> = [];
    // Sweep in grant order, keeping the holds that may still overlap later ones.
    let active: HoldInterval[] = [];
    for (const b of sorted) {
      active = active.filter((a) => certainEnd(a) > b.grantedNs);
      for (const a of active) {
        if (a.mode === "read" && b.mode === "read") continue;
        // a.grantedNs <= b.grantedNs < certainEnd(a) here; the other half:
        if (a.grantedNs < certainEnd(b) && violations.length < 100) violations.push([a, b]);
      }
      active.push(b);
    }
    if (violations.length) {
      const [a, b] = violations[0] as [HoldInterval, HoldInterval];
      return {
        ok: false,
        key,
        a,
        b,
        violations,
        explanation:
          `two holds on ${JSON.stringify(key)} overlapped with a writer among them (${violations.length}${violations.length === 100 ? "+" : ""} such pairs):\n` +
          `  ${describeHold(a)}\n  ${describeHold(b)}`,
      };
    }
  }
  return { ok: true, holds: total, keys: intervals.size };
}
