/**
 * The I/O shell of one storage server: it accepts connections, decodes
 * frames, feeds the pure replica, and carries out the actions it returns
 * (send replies, later log and forward). All state changes happen in core/.
 */
import { mkdirSync } from "node:fs";
import { consola, type ConsolaInstance } from "consola";
import { PAGE_SIZE, PROTOCOL_VERSION } from "../constants";
import { type Action, Replica, StoreState } from "../core";
import { Link, linkSocketHandlers } from "../net/link";
import { type Frame, type Message, type Query, WireError, decodeMessage, encodeMessage } from "../wire";
import type { RunningServer, ServerOptions } from "./options";

const TICK_MS = 50;

interface ClientTag {
  greeted: boolean;
  sessions: Set<number>;
}

export class Server {
  private readonly log: ConsolaInstance;
  private readonly replica: Replica;
  private readonly links = new Set<Link>();
  /** Which connection delivers the replies of each session. */
  private readonly sessionLinks = new Map<number, Link>();
  private listener: ReturnType<typeof Bun.listen<Link>> | null = null;
  private ticker: ReturnType<typeof setInterval> | null = null;
  readonly selfId: number;

  constructor(private readonly options: ServerOptions) {
    this.log = options.logger ?? consola.withTag("server");
    const self = `${options.listen.host}:${options.listen.port}`;
    const index = options.peers.indexOf(self);
    if (index < 0) throw new Error(`--listen ${self} is not in --peers ${options.peers.join(",")}`);
    this.selfId = index + 1;
    const state = new StoreState(options.segmentSize, PAGE_SIZE);
    const chain = options.peers.map((_, i) => i + 1);
    // Issue 3 turns this into a real chain; until then one server is the whole chain.
    this.replica = new Replica(this.selfId, state, { epoch: 1, chain: chain.length === 1 ? chain : [this.selfId] }, options.sessionTimeoutMs);
  }

  start(): RunningServer {
    mkdirSync(this.options.dataDir, { recursive: true });
    const server = this;
    this.listener = Bun.listen<Link>({
      hostname: this.options.listen.host,
      port: this.options.listen.port,
      socket: {
        ...linkSocketHandlers,
        open(socket) {
          const link = new Link(socket, {
            onFrame: (l, frame) => server.onFrame(l, frame),
            onClose: (l, reason) => server.onClose(l, reason),
          });
          link.tag = { greeted: false, sessions: new Set() } satisfies ClientTag;
          socket.data = link;
          server.links.add(link);
        },
      },
    });
    this.ticker = setInterval(() => this.perform(this.replica.onTick(Date.now())), TICK_MS);
    this.replica.onTick(Date.now());
    const address = `${this.options.listen.host}:${this.listener.port}`;
    this.log.info(`listening on ${address}, segment ${this.options.segmentSize} bytes, data in ${this.options.dataDir}`);
    return { address, stop: () => this.stop() };
  }

  async stop(): Promise<void> {
    if (this.ticker) clearInterval(this.ticker);
    this.ticker = null;
    for (const link of this.links) link.close("server stopping");
    this.listener?.stop(true);
    this.listener = null;
  }

  private onClose(link: Link, reason: string): void {
    this.links.delete(link);
    const tag = link.tag as ClientTag;
    for (const session of tag.sessions) {
      if (this.sessionLinks.get(session) === link) this.sessionLinks.delete(session);
    }
    this.log.debug(`connection closed: ${reason}`);
  }

  private onFrame(link: Link, frame: Frame): void {
    let message: Message;
    try {
      message = decodeMessage(frame.type, frame.body);
    } catch (error) {
      if (!(error instanceof WireError)) throw error;
      return this.refuse(link, "EPROTO", error.message);
    }
    const tag = link.tag as ClientTag;
    if (!tag.greeted) {
      if (message.type !== "hello") return this.refuse(link, "EPROTO", "the first message must be hello");
      if (message.body.version !== PROTOCOL_VERSION) {
        return this.refuse(link, "EPROTO", `protocol version ${message.body.version} is not supported (this server speaks ${PROTOCOL_VERSION})`);
      }
      tag.greeted = true;
      return link.send(encodeMessage({ type: "welcome", body: this.welcome() }));
    }
    switch (message.type) {
      case "request":
        this.bindSession(link, message.body.session);
        return this.perform(this.replica.onRequest(message.body));
      case "heartbeat":
        return this.replica.onHeartbeat(message.body.session);
      case "subscribe": {
        this.bindSession(link, message.body.session);
        const outputs = this.replica.storedReplies(message.body.session, message.body.waiting);
        return this.perform(outputs.map((output) => ({ kind: "reply", output })));
      }
      case "query":
        return link.send(encodeMessage({ type: "queryReply", body: { queryId: message.body.queryId, json: this.answer(message.body) } }));
      default:
        return this.refuse(link, "EPROTO", `a client does not send ${message.type} messages`);
    }
  }

  private bindSession(link: Link, session: number): void {
    if (this.sessionLinks.get(session) === link) return;
    this.sessionLinks.set(session, link);
    (link.tag as ClientTag).sessions.add(session);
  }

  private refuse(link: Link, code: string, message: string): void {
    this.log.warn(`refusing a connection: ${code} ${message}`);
    link.send(encodeMessage({ type: "error", body: { code, message } }));
    link.close(message);
  }

  private perform(actions: Action[]): void {
    for (const action of actions) {
      if (action.kind === "log") continue; // durability arrives with the write-ahead log
      const { output } = action;
      const link = this.sessionLinks.get(output.session);
      if (!link) continue; // the client reconnects and asks again (subscribe)
      const { reply } = output;
      const pages = reply.type === "granted" ? this.replica.state.pagesAfter(reply.offset, reply.size, reply.sendAfter) : [];
      link.send(encodeMessage({ type: "reply", body: { session: output.session, reqNo: output.reqNo, reply, pages } }));
    }
  }

  private welcome() {
    return {
      version: PROTOCOL_VERSION,
      serverId: this.selfId,
      segmentSize: this.options.segmentSize,
      pageSize: PAGE_SIZE,
      epoch: this.replica.config.epoch,
      chain: this.replica.config.chain.map((id) => this.options.peers[id - 1]!),
    };
  }

  private answer(query: Query): string {
    const state = this.replica.state;
    switch (query.kind) {
      case "list":
        return JSON.stringify(state.list());
      case "stat": {
        const datum = state.data.get(query.name);
        if (!datum) return JSON.stringify({ error: { code: "ENOENT", message: `no datum named "${query.name}"` } });
        return JSON.stringify(state.info(datum));
      }
      case "status":
        return JSON.stringify(this.status());
    }
  }

  private status() {
    const { chain, epoch } = this.replica.config;
    return {
      epoch,
      segmentSize: this.options.segmentSize,
      pageSize: PAGE_SIZE,
      chain: chain.map((id, index) => ({
        id,
        address: this.options.peers[id - 1],
        role: chain.length === 1 ? "single" : index === 0 ? "head" : index === chain.length - 1 ? "tail" : "middle",
        appliedSeq: id === this.selfId ? this.replica.state.appliedSeq : null,
        lag: 0,
        state: "serving",
        lastHeartbeatMsAgo: null,
      })),
    };
  }
}
