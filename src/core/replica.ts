/**
 * One server's replica logic: it sequences client requests (as head), applies
 * updates to the state machine, expires silent sessions, and says which
 * replies to deliver (as tail). It performs no I/O: each method returns the
 * actions for the server (or the simulator) to carry out, in order:
 * an update is logged before any reply that depends on it is sent.
 */
import type { Request } from "../wire/messages";
import { SessionMonitor } from "./sessions";
import { type Output, StoreState, type Update } from "./state";

export type Action =
  /** Append to the write-ahead log (issue 4 makes it durable). */
  | { kind: "log"; update: Update }
  /** Deliver a reply to the client of `output.session` (only the tail does). */
  | { kind: "reply"; output: Output };

export interface ChainConfig {
  epoch: number;
  /** Server ids in chain order, head first. */
  chain: number[];
}

export class Replica {
  readonly monitor = new SessionMonitor();
  private lastSeq: number;

  constructor(
    readonly selfId: number,
    readonly state: StoreState,
    public config: ChainConfig,
    /** Given to sessions that do not ask for a timeout of their own. */
    readonly sessionTimeoutMsDefault: number,
  ) {
    this.lastSeq = state.appliedSeq;
  }

  get isHead(): boolean {
    return this.config.chain[0] === this.selfId;
  }

  get isTail(): boolean {
    return this.config.chain[this.config.chain.length - 1] === this.selfId;
  }

  /** A client request arriving at the head. */
  onRequest(request: Request): Action[] {
    this.monitor.heard(request.session);
    const session = this.state.sessions.get(request.session);
    if (request.op.type !== "open_session") {
      if (!session) {
        // Only the head sequences, and it has the newest state: an unknown session is gone.
        const reply = { type: "error" as const, code: "ESESSION", message: "the session expired or is unknown: its holds were released; reconnect" };
        return [{ kind: "reply", output: { session: request.session, reqNo: request.reqNo, reply } }];
      }
      const stored: Output[] = [];
      if (this.state.isDuplicate(session, request.reqNo, stored)) {
        return this.isTail ? stored.map((output) => ({ kind: "reply", output })) : [];
      }
    }
    let op = request.op;
    if (op.type === "open_session" && op.timeoutMs === 0) op = { ...op, timeoutMs: this.sessionTimeoutMsDefault };
    return this.sequence({
      seq: 0,
      epoch: this.config.epoch,
      session: request.session,
      reqNo: request.reqNo,
      doneBelow: request.doneBelow,
      op,
    });
  }

  onHeartbeat(session: number): void {
    this.monitor.heard(session);
  }

  /** Time passes: the head expires sessions that stopped heart-beating. */
  onTick(nowMs: number): Action[] {
    this.monitor.nowMs = nowMs;
    if (!this.isHead) return [];
    const actions: Action[] = [];
    for (const session of this.monitor.expired(this.state.sessions)) {
      actions.push(
        ...this.sequence({ seq: 0, epoch: this.config.epoch, session: 0, reqNo: 0, doneBelow: 0, op: { type: "expire_session", session } }),
      );
    }
    return actions;
  }

  /** Replies already produced for requests a (re)connecting client still waits on. */
  storedReplies(sessionId: number, waiting: number[]): Output[] {
    const session = this.state.sessions.get(sessionId);
    if (!session) return [];
    const outputs: Output[] = [];
    for (const reqNo of waiting) {
      const reply = session.replies.get(reqNo);
      if (reply) outputs.push({ session: sessionId, reqNo, reply });
    }
    return outputs;
  }

  private sequence(update: Update): Action[] {
    update.seq = ++this.lastSeq;
    const outputs = this.state.apply(update);
    const actions: Action[] = [{ kind: "log", update }];
    if (this.isTail) for (const output of outputs) actions.push({ kind: "reply", output });
    return actions;
  }
}
