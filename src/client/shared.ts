/**
 * Sessions of one process share one connection to each server. Each store's
 * ClusterLink dials as before and gets a view of the process's connection to
 * that address (opened by the first dial, closed when the last view closes),
 * so the releases of eight stores in one process go to the head in one write
 * and the tail answers them in one: a system call and a wake-up per batch at
 * every hop instead of one per session (issue 13, item 3).
 *
 * The server already keeps several sessions per connection (node.ts binds each
 * session to the connection it last spoke on). What comes back is routed:
 * replies and recalls to the view that last spoke for their session (to every
 * view when none has yet), query replies to the view that asked (query ids are
 * renumbered per connection, each link counts its own), and config, error and
 * the close to every view.
 */
import type { ConfigMessage, Message, Welcome } from "../wire";
import type { ConnectionEvents, ServerConnection } from "./host";

type Dial = (address: string, events: ConnectionEvents, timeoutMs: number) => Promise<ServerConnection>;

export class ConnectionPool {
  private readonly shared = new Map<string, SharedConnection>();
  /** Dials under way: a second dial to the same address waits for the first. */
  private readonly dialling = new Map<string, Promise<SharedConnection>>();

  constructor(private readonly dialOne: Dial) {}

  /** A view of the process's connection to `address`, dialled now if there is none open. */
  async dial(address: string, events: ConnectionEvents, timeoutMs: number): Promise<ServerConnection> {
    let connection = this.shared.get(address);
    if (!connection?.isOpen) connection = await this.open(address, timeoutMs);
    return connection.view(events);
  }

  /** Open connections (for tests). */
  get connections(): number {
    let open = 0;
    for (const connection of this.shared.values()) if (connection.isOpen) open++;
    return open;
  }

  private open(address: string, timeoutMs: number): Promise<SharedConnection> {
    const pending = this.dialling.get(address);
    if (pending) return pending;
    const dialled = (async () => {
      const connection = new SharedConnection(address, () => {
        if (this.shared.get(address) === connection) this.shared.delete(address);
      });
      connection.attach(await this.dialOne(address, connection.events, timeoutMs));
      this.shared.set(address, connection);
      return connection;
    })().finally(() => this.dialling.delete(address));
    this.dialling.set(address, dialled);
    return dialled;
  }
}

class SharedConnection {
  private connection: ServerConnection | null = null;
  private readonly views = new Set<View>();
  /** Which view last spoke for a session: its replies and recalls go there. */
  private readonly sessionViews = new Map<number, View>();
  /** Query ids on this connection → the view that asked and its own id. */
  private readonly queries = new Map<number, { view: View; queryId: number }>();
  private nextQueryId = 1;
  private closed = false;
  /** The latest config since the welcome (a view dialled later sees its chain). */
  private config: ConfigMessage | null = null;

  readonly events: ConnectionEvents = {
    onMessage: (message) => this.route(message),
    onClose: (reason) => {
      this.closed = true;
      this.forget();
      for (const view of [...this.views]) view.closedUnder(reason);
      this.views.clear();
    },
  };

  constructor(
    readonly address: string,
    private readonly forget: () => void,
  ) {}

  attach(connection: ServerConnection): void {
    this.connection = connection;
  }

  /** The handshake's welcome, with the chain of every config since (configs only follow it). */
  get welcome(): Welcome {
    const welcome = this.underlying.welcome;
    return this.config ? { ...welcome, epoch: this.config.epoch, chain: this.config.chain } : welcome;
  }

  get isOpen(): boolean {
    return !this.closed && this.connection !== null && this.connection.isOpen;
  }

  get underlying(): ServerConnection {
    if (this.connection === null) throw new Error("a shared connection is viewed only once dialled");
    return this.connection;
  }

  view(events: ConnectionEvents): View {
    const view = new View(this, events);
    this.views.add(view);
    return view;
  }

  send(view: View, message: Message): void {
    if (message.type === "query") {
      const queryId = this.nextQueryId++;
      this.queries.set(queryId, { view, queryId: message.body.queryId });
      return this.underlying.send({ type: "query", body: { ...message.body, queryId } });
    }
    if ("session" in message.body) this.sessionViews.set(message.body.session, view);
    this.underlying.send(message);
  }

  /** A view closed: the connection closes with its last view. */
  release(view: View): void {
    this.views.delete(view);
    for (const [session, owner] of this.sessionViews) if (owner === view) this.sessionViews.delete(session);
    for (const [queryId, asked] of this.queries) if (asked.view === view) this.queries.delete(queryId);
    if (this.views.size > 0) return this.updateActivity();
    this.closed = true;
    this.forget();
    this.connection?.close();
  }

  updateActivity(): void {
    let active = false;
    for (const view of this.views) active ||= view.active;
    this.connection?.setActive(active);
  }

  private route(message: Message): void {
    switch (message.type) {
      case "reply":
      case "recall": {
        // A store that closed its view and took a new one of this connection has sent nothing
        // on it yet, but the server sends here all the same: then every view hears it, and
        // each store keeps what is for its session (cluster.ts checks every reply and recall).
        const owner = this.sessionViews.get(message.body.session);
        if (owner) return owner.deliver(message);
        break;
      }
      case "queryReply": {
        const asked = this.queries.get(message.body.queryId);
        if (!asked) return;
        this.queries.delete(message.body.queryId);
        return asked.view.deliver({ type: "queryReply", body: { ...message.body, queryId: asked.queryId } });
      }
      case "config":
        // It may come in the welcome's chunk, before the dial's caller has the connection.
        this.config = message.body;
        break;
    }
    for (const view of [...this.views]) view.deliver(message);
  }
}

/** One ClusterLink's handle on a shared connection. */
class View implements ServerConnection {
  active = false;
  private open = true;

  constructor(
    private readonly shared: SharedConnection,
    private readonly events: ConnectionEvents,
  ) {}

  get address(): string {
    return this.shared.address;
  }

  get welcome(): Welcome {
    return this.shared.welcome;
  }

  get isOpen(): boolean {
    return this.open && this.shared.isOpen;
  }

  get receivingFrame(): boolean {
    return this.shared.underlying.receivingFrame;
  }

  send(message: Message): void {
    if (this.isOpen) this.shared.send(this, message);
  }

  setActive(active: boolean): void {
    if (!this.open || this.active === active) return;
    this.active = active;
    this.shared.updateActivity();
  }

  close(): void {
    if (!this.open) return;
    this.open = false;
    this.shared.release(this);
  }

  deliver(message: Message): void {
    if (this.open) this.events.onMessage(message);
  }

  closedUnder(reason: string): void {
    if (!this.open) return;
    this.open = false;
    this.events.onClose(reason);
  }
}
