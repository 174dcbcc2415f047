/**
 * Where a pass through the chain spends its time (bench/pass_profile.ts reads it). With
 * PSTORE_PASS_PROFILE=<dir> in its environment a server stamps, on the machine's clock,
 * each request and update it handles — bytes in, decoded, forward out, written, reply out —
 * and writes them to <dir>/<id>.jsonl when it stops. Without it nothing is recorded.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { PASS_PROFILE_STAMPS_MAX } from "../constants";
import type { Message, PeerMessage, ReplyMessage } from "../wire";
import type { ConnId, NodeObserver } from "./host";

/** µs on a clock every process of the machine shares (the wall clock, with performance.now's resolution). */
function nowUs(): number {
  return (performance.timeOrigin + performance.now()) * 1000;
}

export class PassProfile implements NodeObserver {
  private readonly stamps: (string | number)[][] = [];
  private readonly bytesAt = new Map<ConnId, number>();

  constructor(
    private readonly dir: string,
    private readonly selfId: number,
  ) {}

  /** A chunk of bytes arrived on `conn` (before its frames are decoded). */
  bytes(conn: ConnId): void {
    this.bytesAt.set(conn, nowUs());
  }

  received(conn: ConnId, message: Message | PeerMessage): void {
    const at = this.bytesAt.get(conn) ?? 0;
    if (message.type === "request") this.add(["request", message.body.session, message.body.reqNo, at, nowUs()]);
    else if (message.type === "forward") for (const update of message.updates) this.add(["forward-in", update.seq, at, nowUs()]);
  }

  sentPeer(_conn: ConnId, _to: number, message: PeerMessage): void {
    if (message.type !== "forward") return;
    for (const update of message.updates) this.add(["forward-out", update.seq, update.session, update.reqNo, nowUs(), update.op.type]);
  }

  sentReply(_conn: ConnId, body: ReplyMessage): void {
    this.add(["reply", body.session, body.reqNo, nowUs()]);
  }

  /** The log records through `seq` are written (and synced, if the server syncs). */
  written(seq: number): void {
    if (seq > 0) this.add(["written", seq, nowUs()]);
  }

  save(): void {
    const lines = this.stamps.map((stamp) => JSON.stringify(stamp));
    writeFileSync(join(this.dir, `${this.selfId}.jsonl`), `${lines.join("\n")}\n`);
  }

  private add(stamp: (string | number)[]): void {
    // Past the bound, later stamps are dropped (the profile reads the first minute).
    if (this.stamps.length < PASS_PROFILE_STAMPS_MAX) this.stamps.push(stamp);
  }
}
