/**
 * A record of what clients did and saw, for the checkers next door.
 *
 * Every client operation on data is recorded as an invocation followed by
 * exactly one outcome:
 *   - ok(result)  it happened, and this is what it returned;
 *   - fail(error) it definitely did not happen (e.g. ESESSION: the write was
 *                 discarded, ENOENT, a timeout before the hold was granted);
 *   - unknown     it may or may not have happened (e.g. the connection was lost
 *                 mid-release); it stays open-ended: it may take effect at any
 *                 point after its invocation, or never.
 * An operation still pending when the history is checked counts as unknown.
 *
 * Holds are recorded separately, as the client observed them: the time by which
 * it had a grant, and the time at which it issued the release.
 *
 * Pure data: no clock (callers pass times, in nanoseconds, from whatever clock
 * they use, the same one for every client), no I/O. `toJSON()` gives a plain
 * object that `History.fromJSON` takes back, so a failing history can be
 * written to a file and checked again.
 */

/** A datum's value as the checker sees it: any JSON value (a number for a counter, a hex string for bytes…). */
export type Value = null | boolean | number | string | Value[] | { [key: string]: Value };

export type ClientId = string | number;

/** What a client asked for. */
export type Op =
  /** The value a client installed: accessReadWrite + change + releaseReadWrite. Result: none. */
  | { kind: "write"; key: string; value: Value }
  /** A look at the datum (accessRead, or the start of a write hold). Result: the value seen. */
  | { kind: "read"; key: string }
  /**
   * Read-modify-write under one write hold: saw a value and wrote `value`
   * (an increment). Result: the value seen. `expected` is the value seen, when
   * the client knows it at invocation: invoke once the hold is granted and the
   * new value known (the write takes effect when the release is applied, after
   * that), with expected = the value seen; it then constrains the operation
   * even if the release's outcome is unknown.
   */
  | { kind: "rmw"; key: string; expected?: Value; value: Value };

export type Outcome = "pending" | "ok" | "fail" | "unknown";

export interface OpRecord {
  id: number;
  client: ClientId;
  op: Op;
  invokeNs: number;
  outcome: Outcome;
  /** When the outcome was learned (absent while pending). */
  endNs?: number;
  /** ok only: what the operation returned (the value seen, for read and rmw). */
  result?: Value;
  /** fail only: why. */
  error?: string;
}

export type HoldMode = "read" | "write";

export type HoldEvent =
  /** The client had the hold by `timeNs`. */
  | { type: "granted"; client: ClientId; key: string; mode: HoldMode; holdId: number | string; timeNs: number }
  /** The client issued the release at `timeNs` (whatever the release's outcome). */
  | { type: "released"; client: ClientId; key: string; holdId: number | string; timeNs: number }
  /**
   * The hold ended without a release the client issued, at an unknown point
   * (session expired, connection lost, process gone). `timeNs` is when the
   * client learned it; the checker only counts on the grant time.
   */
  | { type: "lost"; client: ClientId; key: string; holdId: number | string; timeNs: number };

/** The JSON form of a History. */
export interface HistoryData {
  format: "pstore-history";
  version: 1;
  /** Initial values of keys recorded with `initial()`. */
  initial: Record<string, Value>;
  ops: OpRecord[];
  holds: HoldEvent[];
}

export type Time = number | bigint;

function ns(t: Time, what: string): number {
  const n = typeof t === "bigint" ? Number(t) : t;
  if (typeof n !== "number" || !Number.isFinite(n)) throw new TypeError(`${what}: time must be a finite number of nanoseconds, got ${String(t)}`);
  return n;
}

export class History {
  readonly ops: OpRecord[] = [];
  readonly holds: HoldEvent[] = [];
  readonly initialValues: Record<string, Value> = {};

  /** The value a key holds before any recorded operation (e.g. zeros after create). */
  initial(key: string, value: Value): void {
    this.initialValues[key] = value;
  }

  /** Record an invocation; returns the id to complete it with. */
  invoke(client: ClientId, op: Op, timeNs: Time): number {
    if (!op || (op.kind !== "write" && op.kind !== "read" && op.kind !== "rmw")) {
      throw new TypeError(`invoke: unknown operation ${JSON.stringify(op)}`);
    }
    if (typeof op.key !== "string") throw new TypeError(`invoke: operation key must be a string`);
    if ((op.kind === "write" || op.kind === "rmw") && op.value === undefined) {
      throw new TypeError(`invoke: a ${op.kind} needs the value it writes`);
    }
    const id = this.ops.length;
    this.ops.push({ id, client, op: { ...op }, invokeNs: ns(timeNs, "invoke"), outcome: "pending" });
    return id;
  }

  /** It happened; `result` is what it saw (read, rmw), omitted for a write. */
  ok(id: number, result: Value | undefined, timeNs: Time): void {
    const rec = this.open(id, "ok");
    const end = this.end(rec, timeNs, "ok");
    if (rec.op.kind === "read" && result === undefined) throw new TypeError(`ok(${id}): a read needs the value it saw`);
    if (rec.op.kind === "rmw" && result === undefined && rec.op.expected === undefined) {
      throw new TypeError(`ok(${id}): an rmw needs the value it saw (as result, or as expected at invoke)`);
    }
    rec.outcome = "ok";
    rec.endNs = end;
    if (result !== undefined) rec.result = result;
  }

  /** It definitely did not happen. */
  fail(id: number, error: string, timeNs: Time): void {
    const rec = this.open(id, "fail");
    rec.endNs = this.end(rec, timeNs, "fail");
    rec.outcome = "fail";
    rec.error = String(error);
  }

  /** It may or may not have happened; it stays open-ended for the checker. */
  unknown(id: number, timeNs: Time): void {
    const rec = this.open(id, "unknown");
    rec.endNs = this.end(rec, timeNs, "unknown");
    rec.outcome = "unknown";
  }

  holdGranted(client: ClientId, key: string, mode: HoldMode, holdId: number | string, timeNs: Time): void {
    if (mode !== "read" && mode !== "write") throw new TypeError(`holdGranted: mode must be "read" or "write"`);
    this.holds.push({ type: "granted", client, key, mode, holdId, timeNs: ns(timeNs, "holdGranted") });
  }

  holdReleased(client: ClientId, key: string, holdId: number | string, timeNs: Time): void {
    this.holds.push({ type: "released", client, key, holdId, timeNs: ns(timeNs, "holdReleased") });
  }

  holdLost(client: ClientId, key: string, holdId: number | string, timeNs: Time): void {
    this.holds.push({ type: "lost", client, key, holdId, timeNs: ns(timeNs, "holdLost") });
  }

  toJSON(): HistoryData {
    return {
      format: "pstore-history",
      version: 1,
      initial: { ...this.initialValues },
      ops: this.ops.map((r) => ({ ...r, op: { ...r.op } })),
      holds: this.holds.map((h) => ({ ...h })),
    };
  }

  static fromJSON(data: HistoryData | string): History {
    const d: HistoryData = typeof data === "string" ? JSON.parse(data) : data;
    if (!d || d.format !== "pstore-history" || d.version !== 1) throw new TypeError("fromJSON: not a pstore-history version 1");
    const h = new History();
    Object.assign(h.initialValues, d.initial ?? {});
    d.ops.forEach((r, i) => {
      if (r.id !== i) throw new TypeError(`fromJSON: operation ${i} has id ${r.id}`);
      h.ops.push({ ...r, op: { ...r.op } });
    });
    for (const e of d.holds) h.holds.push({ ...e });
    return h;
  }

  private open(id: number, what: string): OpRecord {
    const rec = this.ops[id];
    if (!rec) throw new RangeError(`${what}(${id}): no such operation`);
    if (rec.outcome !== "pending") throw new Error(`${what}(${id}): operation already completed (${rec.outcome})`);
    return rec;
  }

  private end(rec: OpRecord, timeNs: Time, what: string): number {
    const t = ns(timeNs, what);
    if (t < rec.invokeNs) throw new RangeError(`${what}(${rec.id}): ends at ${t} before its invocation at ${rec.invokeNs}`);
    return t;
  }
}

/** Accept a History or its JSON form. */
export function historyData(h: History | HistoryData): HistoryData {
  return h instanceof History ? { format: "pstore-history", version: 1, initial: h.initialValues, ops: h.ops, holds: h.holds } : h;
}

/** One line naming an operation, for explanations. */
export function describeOp(r: OpRecord): string {
  const o = r.op;
  const v = (x: Value | undefined) => (x === undefined ? "?" : JSON.stringify(x));
  let what: string;
  if (o.kind === "write") what = `write ${v(o.value)}`;
  else if (o.kind === "read") what = `read → ${r.outcome === "ok" ? v(r.result) : "?"}`;
  else {
    const seen = r.outcome === "ok" && r.result !== undefined ? r.result : o.expected;
    what = `rmw saw ${v(seen)} wrote ${v(o.value)}`;
  }
  const end = r.outcome === "ok" || r.outcome === "fail" ? String(r.endNs) : "∞";
  return `#${r.id} client ${r.client} ${o.key}: ${what} [${r.invokeNs}..${end}] ${r.outcome}`;
}
