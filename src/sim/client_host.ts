/**
 * The ClientHost of one simulated client process: the real ClusterLink and
 * ClientStore run over it. Connections are the simulated network's bytes
 * (wires.ts), with the real ConnectionEnd at the client's end of each (frame
 * decoding, the handshake, the codec); timers and clock are the virtual ones. A crashed process runs nothing more; a paused one runs
 * nothing until it resumes, and what arrives meanwhile waits in its inbox.
 */
import { PStoreError } from "../errors";
import { ConnectionEnd } from "../client/conn_end";
import { type ClientHost, type ConnectionEvents, ConnectionRefused, type ServerConnection, type TimerHandle } from "../client/host";
import { ConnectionPool } from "../client/shared";
import type { Message, Welcome } from "../wire";
import type { SimConn } from "./network";

/** What a client process asks of the simulation. */
export interface ClientNet {
  readonly nowMs: number;
  /** The secret the servers ask for (none: no challenge). */
  readonly secret: string | undefined;
  /** Opens a connection to a server (refused if it is down); bytes and closes come back through receive/closed. */
  dial(client: SimClientHost, serverId: number): SimConn;
  send(conn: SimConn, bytes: Uint8Array): void;
  close(conn: SimConn): void;
  /** A fresh handshake nonce, from the seed. */
  nonce(): Uint8Array;
  /** A message the client decoded on `conn` (traces, the checks' bookkeeping). */
  received(client: SimClientHost, conn: SimConn, message: Message): void;
  /** A message the client is about to send (the checks). */
  sending(client: SimClientHost, message: Message): void;
  newSessionId(): number;
}

interface Timer {
  atMs: number;
  order: number;
  everyMs: number;
  fn: () => void;
  cancelled: boolean;
}

/** One connection as the client code sees it: the real ConnectionEnd over a simulated connection. */
class SimConnection implements ServerConnection {
  welcome!: Welcome;

  constructor(
    readonly address: string,
    readonly conn: SimConn,
    readonly end: ConnectionEnd,
    private readonly host: SimClientHost,
  ) {}

  get receivingFrame(): boolean {
    return this.end.receivingFrame;
  }

  get isOpen(): boolean {
    // Until the close reaches the client (as a socket learns of a reset), it is open to it.
    return this.host.owns(this);
  }

  send(message: Message): void {
    if (!this.host.alive) return;
    this.host.sending(message);
    this.end.send(message);
  }

  setActive(): void {}

  close(): void {
    this.host.closeConn(this, "client closed");
  }
}

export class SimClientHost implements ClientHost {
  alive = true;
  paused = false;
  /** What arrived (bytes, closes) while the process was paused: handled when it resumes. */
  readonly inbox: (() => void)[] = [];
  private readonly timers: Timer[] = [];
  private nextOrder = 0;
  private readonly conns = new Map<number, SimConnection>();
  /** The real client code's connection sharing (src/client/shared.ts), over this process's connections. */
  private readonly pool = new ConnectionPool((address, events, timeoutMs) => this.dialOne(address, events, timeoutMs));

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
    return this.pool.dial(address, events, timeoutMs);
  }

  /** One connection to a server, as a Bun socket would be; the pool shares it as production does. */
  private dialOne(address: string, events: ConnectionEvents, timeoutMs: number): Promise<ServerConnection> {
    if (!this.alive) return new Promise(() => {}); // a dead process waits for nothing
    const conn = this.net.dial(this, Number(address));
    const end = new ConnectionEnd(address, events, { secret: this.net.secret, nonce: this.net.nonce(), observe: (message) => this.net.received(this, conn, message) });
    const connection = new SimConnection(address, conn, end, this);
    this.conns.set(conn.id, connection);
    if (!conn.refused) end.attach({ send: (bytes) => this.net.send(conn, bytes), close: () => this.closeConn(connection, "closed by the client") });
    const timer = this.after(timeoutMs, () => end.fail(new PStoreError("EUNAVAILABLE", `no answer from ${address} within ${timeoutMs} ms`), "handshake timed out"));
    return end.welcomed.then(
      (welcome) => {
        timer.cancel();
        connection.welcome = welcome;
        conn.welcomed = true;
        return connection;
      },
      (error: unknown) => {
        timer.cancel();
        this.closeConn(connection, "handshake failed");
        throw error;
      },
    );
  }

  newSessionId(): number {
    return this.net.newSessionId();
  }

  // ---- from the simulation ----

  /** Bytes from a server on `conn` (the process runs: not paused, alive). */
  receive(conn: SimConn, chunk: Uint8Array): void {
    this.conns.get(conn.id)?.end.receive(chunk);
  }

  /** `conn` closed under us (a reset, a refused dial, a server that died). */
  closed(conn: SimConn): void {
    const connection = this.conns.get(conn.id);
    if (!connection) return;
    this.conns.delete(conn.id);
    connection.end.closed("connection closed", conn.refused ? new ConnectionRefused(connection.address) : undefined);
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
    for (const connection of [...this.conns.values()]) this.closeConn(connection, "process died");
    this.inbox.length = 0;
  }

  // ---- connections ----

  /** A message on its way out of this process (the checks see it). */
  sending(message: Message): void {
    this.net.sending(this, message);
  }

  owns(connection: SimConnection): boolean {
    return this.conns.get(connection.conn.id) === connection;
  }

  /** Our side closes `connection`: the code above hears nothing more of it (as a closed socket). */
  closeConn(connection: SimConnection, reason: string): void {
    if (this.conns.get(connection.conn.id) !== connection) return;
    this.conns.delete(connection.conn.id);
    connection.end.closed(reason);
    this.net.close(connection.conn);
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
