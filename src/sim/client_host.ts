/**
 * The ClientHost of one simulated client process: the real ClusterLink and
 * ClientStore run over it. Connections are the simulated network's (frames
 * encoded and decoded by the real codec, in simulation.ts), timers and clock
 * the virtual ones. A crashed process runs nothing more; a paused one runs
 * nothing until it resumes, and what arrives meanwhile waits in its inbox.
 */
import { PStoreError } from "../errors";
import { type ClientHost, type ConnectionEvents, ConnectionRefused, type ServerConnection, type TimerHandle } from "../client/host";
import type { Message, Welcome } from "../wire";
import type { ClientConn } from "./network";

/** What a client process asks of the simulation. */
export interface ClientNet {
  readonly nowMs: number;
  /** Opens a connection and sends the hello; the welcome or a close follows (connectionEvent). */
  dial(client: SimClientHost, serverId: number): ClientConn;
  send(client: SimClientHost, conn: ClientConn, message: Message): void;
  close(client: SimClientHost, conn: ClientConn): void;
  newSessionId(): number;
}

interface Timer {
  atMs: number;
  order: number;
  everyMs: number;
  fn: () => void;
  cancelled: boolean;
}

class SimConnection implements ServerConnection {
  welcome!: Welcome;
  /** Until the welcome: how the dial ends. */
  handshake: { resolve(c: ServerConnection): void; reject(e: Error): void; timer: TimerHandle } | null = null;

  constructor(
    readonly address: string,
    readonly conn: ClientConn,
    readonly events: ConnectionEvents,
    private readonly host: SimClientHost,
  ) {}

  get isOpen(): boolean {
    // Until the close reaches the client (as a socket learns of a reset), it is open to it.
    return this.host.owns(this);
  }

  send(message: Message): void {
    this.host.sendOn(this.conn, message);
  }

  setActive(): void {}

  close(): void {
    this.host.closeConn(this);
  }
}

export class SimClientHost implements ClientHost {
  alive = true;
  paused = false;
  /** Deliveries held back while the process is paused. */
  readonly inbox: (() => void)[] = [];
  private readonly timers: Timer[] = [];
  private nextOrder = 0;
  private readonly conns = new Map<number, SimConnection>();

  constructor(
    readonly slot: number,
    readonly incarnation: number,
    private readonly net: ClientNet,
  ) {}

  get name(): string {
    return `${this.slot}.${this.incarnation}`;
  }

  // ---- ClientHost ----

  nowMs(): number {
    return this.net.nowMs;
  }

  after(ms: number, fn: () => void): TimerHandle {
    return this.addTimer(ms, 0, fn);
  }

  every(ms: number, fn: () => void): TimerHandle {
    return this.addTimer(ms, ms, fn);
  }

  dial(address: string, events: ConnectionEvents, timeoutMs: number): Promise<ServerConnection> {
    if (!this.alive) return new Promise(() => {}); // a dead process waits for nothing
    const conn = this.net.dial(this, Number(address));
    const connection = new SimConnection(address, conn, events, this);
    this.conns.set(conn.id, connection);
    return new Promise((resolve, reject) => {
      const timer = this.after(timeoutMs, () => {
        if (!connection.handshake) return;
        connection.handshake = null;
        this.closeConn(connection);
        reject(new PStoreError("EUNAVAILABLE", `no answer from ${address} within ${timeoutMs} ms`));
      });
      connection.handshake = { resolve, reject, timer };
    });
  }

  newSessionId(): number {
    return this.net.newSessionId();
  }

  // ---- from the simulation ----

  /** A message from a server on `conn` (the process runs: not paused, alive). */
  deliver(conn: ClientConn, message: Message): void {
    const connection = this.conns.get(conn.id);
    if (!connection) return;
    const handshake = connection.handshake;
    if (handshake) {
      if (message.type !== "welcome") throw new Error(`sim: ${message.type} before the welcome on connection ${conn.id}`);
      connection.handshake = null;
      handshake.timer.cancel();
      connection.welcome = message.body;
      handshake.resolve(connection);
      return;
    }
    connection.events.onMessage(message);
  }

  /** `conn` closed under us (a reset, a refused dial, a server that died). */
  closed(conn: ClientConn): void {
    const connection = this.conns.get(conn.id);
    if (!connection) return;
    this.conns.delete(conn.id);
    const handshake = connection.handshake;
    if (handshake) {
      connection.handshake = null;
      handshake.timer.cancel();
      handshake.reject(conn.refused ? new ConnectionRefused(connection.address) : new PStoreError("EUNAVAILABLE", `${connection.address}: connection closed`));
      return;
    }
    connection.events.onClose("connection closed");
  }

  /** When the next timer is due (Infinity when none, or the process does not run). */
  nextWakeMs(): number {
    if (!this.alive || this.paused) return Infinity;
    let at = Infinity;
    for (const timer of this.timers) if (!timer.cancelled && timer.atMs < at) at = timer.atMs;
    return at;
  }

  /** Runs the timers that are due, in order. */
  runTimers(): void {
    for (;;) {
      if (!this.alive || this.paused) return;
      const now = this.net.nowMs;
      let next: Timer | null = null;
      for (const timer of this.timers) {
        if (timer.cancelled || timer.atMs > now) continue;
        if (!next || timer.atMs < next.atMs || (timer.atMs === next.atMs && timer.order < next.order)) next = timer;
      }
      if (!next) return;
      if (next.everyMs > 0) {
        next.atMs = Math.max(now, next.atMs + next.everyMs);
        next.order = this.nextOrder++;
      } else this.removeTimer(next);
      next.fn();
    }
  }

  /** The process died: no timer runs, every connection breaks. */
  kill(): void {
    this.alive = false;
    for (const timer of this.timers) timer.cancelled = true;
    this.timers.length = 0;
    for (const connection of [...this.conns.values()]) this.closeConn(connection);
    this.inbox.length = 0;
  }

  // ---- connections ----

  owns(connection: SimConnection): boolean {
    return this.conns.get(connection.conn.id) === connection;
  }

  sendOn(conn: ClientConn, message: Message): void {
    if (this.alive) this.net.send(this, conn, message);
  }

  closeConn(connection: SimConnection): void {
    this.conns.delete(connection.conn.id);
    this.net.close(this, connection.conn);
  }

  private addTimer(ms: number, everyMs: number, fn: () => void): TimerHandle {
    const timer: Timer = { atMs: this.net.nowMs + Math.max(0, ms), order: this.nextOrder++, everyMs, fn, cancelled: false };
    if (this.alive) this.timers.push(timer);
    return {
      cancel: () => {
        timer.cancelled = true;
        this.removeTimer(timer);
      },
    };
  }

  private removeTimer(timer: Timer): void {
    const at = this.timers.indexOf(timer);
    if (at >= 0) this.timers.splice(at, 1);
  }
}
