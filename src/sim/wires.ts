/**
 * The simulation's connections: what server nodes and clients send goes
 * into pipes as bytes (network.ts) and comes out as events at the other end;
 * dials, accepts, closes and breaks, and the faults that fall on connections
 * (a cut in the middle of a handshake). The checks' view of what crosses
 * (the history a snapshot brings, the bytes a grant must leave a client
 * with) is noted here from the nodes' observer hooks.
 */
import { type Message, type PeerMessage, type Recall, type Reply, type ReplyMessage, concatBytes } from "../wire";
import type { ConnId } from "../server/host";
import type { SimClient } from "./client";
import { type ServerMachine, type World, datumHash } from "./machine";
import type { Network, PeerLink, Pipe, SimConn } from "./network";
import type { Rng } from "./prng";
import type { SimStats } from "./simulation";
import type { Trace } from "./trace";

export type WireEvent =
  /** The dial of `link` completes (or fails) at its dialler. */
  | { type: "dialled"; server: ServerMachine; incarnation: number; link: PeerLink }
  /** The server takes a new connection. */
  | { type: "accept"; conn: SimConn }
  /** `chunks` arrive in one read (several only on a connection that merges what it carries). */
  | { type: "bytes"; conn: SimConn; pipe: Pipe; toAcceptor: boolean; chunks: Uint8Array[] }
  /** One end learns that its connection closed. */
  | { type: "closed"; conn: SimConn; atAcceptor: boolean }
  /** A fault: the connection breaks within its first round trip, in its handshake (a client's: if not welcomed yet). */
  | { type: "handshake-cut"; conn: SimConn };

/** What the connections need of the simulation. */
export interface WireContext {
  readonly nowMs: number;
  readonly faultsOn: boolean;
  /** Peer connections stall up to this long, rarely (0: never). */
  readonly stallMsMax: number;
  readonly tracer: Trace;
  readonly stats: SimStats;
  push(atMs: number, event: WireEvent): void;
  server(id: number): ServerMachine;
  /** Runs `handle` for the client incarnation that owns `conn`, now or when it resumes from a pause. */
  clientEvent(conn: SimConn, handle: (client: SimClient) => void): void;
  sawConfig(server: ServerMachine, epoch: number, chain: number[]): void;
  /** A head sent a recall to the client of its session. */
  sentRecall(recall: Recall): void;
  /** A server sent a client the reply to request `reqNo` of `session` (as tail, it acknowledges what it applied). */
  replied(server: ServerMachine, session: number, reqNo: number, reply: Reply): void;
  /** The disk of `server` completes some work at `atMs` (its oldest sync, a background write). */
  diskAt(server: ServerMachine, atMs: number, run: () => void): void;
  fail(invariant: string, message: string): never;
  /** A violation seen in code that cannot throw to the step (a promise's continuation). */
  report(invariant: string, message: string): void;
}

export class Wires {
  /** Every open connection, by id. */
  private readonly conns = new Map<ConnId, SimConn>();
  /** The client connections of each server. */
  private readonly clientConns = new Map<number, Set<SimConn>>();

  constructor(
    private readonly ctx: WireContext,
    readonly net: Network,
    private readonly netRng: Rng,
    private readonly faultRng: Rng,
  ) {}

  /** The server a connection event runs on, if any (held while it is paused). */
  target(event: WireEvent): ServerMachine | null {
    switch (event.type) {
      case "dialled":
        return event.server;
      case "accept":
        return this.ctx.server(event.conn.serverId);
      case "bytes":
        return event.toAcceptor ? this.ctx.server(event.conn.serverId) : this.diallerServer(event.conn);
      case "closed":
        return event.atAcceptor ? this.ctx.server(event.conn.serverId) : this.diallerServer(event.conn);
      case "handshake-cut":
        return null;
    }
  }

  handle(event: WireEvent): void {
    switch (event.type) {
      case "dialled":
        return this.onDialled(event.server, event.incarnation, event.link);
      case "accept":
        return this.onAccept(event.conn);
      case "bytes":
        if (event.pipe.waiting === event) event.pipe.waiting = null;
        return this.onBytes(event.conn, event.pipe, event.toAcceptor, event.chunks.length === 1 ? event.chunks[0]! : concatBytes(event.chunks));
      case "closed":
        return this.onClosedEnd(event.conn, event.atAcceptor);
      case "handshake-cut":
        if (event.conn.diallerClosed || event.conn.acceptorClosed || event.conn.welcomed) return;
        this.ctx.stats.cuts++;
        if (event.conn.dialler.kind === "client") this.ctx.stats.clientHandshakeCuts++;
        return this.breakConn(event.conn, "cut in the middle of its handshake");
    }
  }

  /** The client connections of server `id` (open at its end). */
  clientConnsOf(id: number): SimConn[] {
    return [...(this.clientConns.get(id) ?? [])];
  }

  private diallerServer(conn: SimConn): ServerMachine | null {
    return conn.dialler.kind === "server" ? this.ctx.server(conn.dialler.id) : null;
  }

  /** The World the server machines live in (machine.ts). */
  world(): World {
    const ctx = this.ctx;
    return {
      get nowMs() {
        return ctx.nowMs;
      },
      send: (from, id, bytes) => this.sendBytes(this.conns.get(id), from.id === this.conns.get(id)?.serverId, bytes),
      close: (from, id, reason) => this.closeEnd(from, id, reason),
      dial: (from, peer) => {
        // As a TCP connect: a round trip later it is open, or refused.
        const rtt = 2 * (0.2 + this.netRng.next() * 2);
        this.ctx.push(this.ctx.nowMs + rtt, { type: "dialled", server: from, incarnation: from.incarnation, link: this.net.link(from.id, peer) });
      },
      trace: (what, detail) => this.ctx.tracer.add(this.ctx.nowMs, what, detail),
      diskLater: (from, afterMs, run) => this.ctx.diskAt(from, this.ctx.nowMs + afterMs, run),
      fail: (invariant, message) => this.ctx.fail(invariant, message),
      report: (invariant, message) => this.ctx.report(invariant, message),
      checkpointStarted: () => {
        this.ctx.stats.checkpoints++;
      },
      joinerHeld: () => {
        this.ctx.stats.joinerHolds++;
      },
      diskWriteRefused: () => {
        this.ctx.stats.diskWritesRefused++;
      },
      sawConfig: (server, epoch, chain) => this.ctx.sawConfig(server, epoch, chain),
      snapshotHistory: (id, seq) => this.conns.get(id)?.snapshots.get(seq),
      sentPeer: (from, id, message) => {
        if (message.type !== "snapshot") return;
        this.ctx.stats.snapshots++;
        this.conns.get(id)?.snapshots.set(message.seq, from.history.prefix(message.seq));
      },
      sentReply: (from, id, body) => {
        this.ctx.replied(from, body.session, body.reqNo, body.reply);
        this.noteGrant(from, id, body);
      },
      sentRecall: (recall) => this.ctx.sentRecall(recall),
      received: (to, id, message) => this.traceReceived(to, id, message),
    };
  }

  /** The dial of `link` completes: a connection both ends know, or a refusal. */
  private onDialled(from: ServerMachine, incarnation: number, link: PeerLink): void {
    if (!from.up || from.incarnation !== incarnation) return;
    const to = this.ctx.server(link.to);
    if (!to.up || this.ctx.nowMs < link.blockedUntilMs || link.conn) return from.run((node) => node.onDialFailed(link.to));
    const conn = this.net.newPeerConn({ id: from.id, incarnation }, { id: to.id, incarnation: to.incarnation });
    this.conns.set(conn.id, conn);
    link.conn = conn;
    link.blackHole = false;
    this.ctx.push(this.ctx.nowMs, { type: "accept", conn });
    this.maybeCutHandshake(conn);
    from.run((node) => node.onDialled(link.to, conn.id));
  }

  private onAccept(conn: SimConn): void {
    const server = this.ctx.server(conn.serverId);
    if (!server.up || server.incarnation !== conn.serverIncarnation || conn.acceptorClosed) return;
    conn.accepted = true;
    server.run((node) => node.onAccepted(conn.id));
  }

  /** `bytes` leave one end of `conn` (toward the acceptor when `toAcceptor`), in the chunks the connection cuts them into. */
  private sendBytes(conn: SimConn | undefined, fromAcceptor: boolean, bytes: Uint8Array): void {
    if (!conn) return;
    if (fromAcceptor ? conn.acceptorClosed : conn.diallerClosed) return;
    const pipe = fromAcceptor ? conn.down : conn.up;
    if (pipe.broken) return;
    const stallMsMax = conn.dialler.kind === "server" ? this.ctx.stallMsMax : 0;
    const chunks = conn.chunks(bytes, this.netRng);
    // The first piece arrives in the read of what is still on its way (the end of one frame, the start of the next).
    if (conn.coalesces && pipe.waiting && chunks.length > 0) pipe.waiting.chunks.push(chunks.shift()!);
    for (const chunk of chunks) {
      const event = { type: "bytes" as const, conn, pipe, toAcceptor: !fromAcceptor, chunks: [chunk] };
      pipe.waiting = event;
      this.ctx.push(pipe.arrival(this.ctx.nowMs, this.netRng, stallMsMax), event);
    }
  }

  private onBytes(conn: SimConn, pipe: Pipe, toAcceptor: boolean, chunk: Uint8Array): void {
    if (pipe.broken) return;
    if (toAcceptor) {
      const server = this.ctx.server(conn.serverId);
      if (!server.up || server.incarnation !== conn.serverIncarnation || conn.acceptorClosed || !conn.accepted) return;
      return server.run((node) => node.onBytes(conn.id, chunk), conn.id);
    }
    if (conn.diallerClosed) return;
    const dialler = conn.dialler;
    if (dialler.kind === "server") {
      const server = this.ctx.server(dialler.id);
      if (!server.up || server.incarnation !== dialler.incarnation) return;
      return server.run((node) => node.onBytes(conn.id, chunk), conn.id);
    }
    // The client's end of the connection (its frame decoder, handshake and codec: src/client's ConnectionEnd).
    this.ctx.clientEvent(conn, (client) => {
      if (!conn.diallerClosed) client.host.receive(conn, chunk);
    });
  }

  /** A node closes its end of a connection: it knows at once; the other end once what was sent before arrives. */
  private closeEnd(from: ServerMachine, id: ConnId, reason: string): void {
    const conn = this.conns.get(id);
    if (!conn) return;
    const atAcceptor = from.id === conn.serverId;
    if (atAcceptor ? conn.acceptorClosed : conn.diallerClosed) return;
    this.ctx.tracer.add(this.ctx.nowMs, `server ${from.id}: closes connection ${id} (${reason})`);
    this.markClosed(conn, atAcceptor);
    if (from.up) from.node.onClosed(id);
    const pipe = atAcceptor ? conn.down : conn.up;
    this.ctx.push(pipe.arrival(this.ctx.nowMs, this.netRng, 0), { type: "closed", conn, atAcceptor: !atAcceptor });
  }

  markClosed(conn: SimConn, atAcceptor: boolean): void {
    if (atAcceptor) conn.acceptorClosed = true;
    else conn.diallerClosed = true;
    if (conn.dialler.kind === "server") {
      const link = this.net.link(conn.dialler.id, conn.serverId);
      if (link.conn === conn) link.conn = null;
    } else {
      this.clientConns.get(conn.serverId)?.delete(conn);
    }
    if (conn.acceptorClosed && conn.diallerClosed) this.conns.delete(conn.id);
  }

  /** One end learns its connection closed (the other end closed it, or it broke). */
  private onClosedEnd(conn: SimConn, atAcceptor: boolean): void {
    if (atAcceptor ? conn.acceptorClosed : conn.diallerClosed) return;
    if (atAcceptor) {
      this.markClosed(conn, true);
      const server = this.ctx.server(conn.serverId);
      if (server.up && server.incarnation === conn.serverIncarnation) server.run((node) => node.onClosed(conn.id));
      return;
    }
    const dialler = conn.dialler;
    if (dialler.kind === "server") {
      this.markClosed(conn, false);
      const server = this.ctx.server(dialler.id);
      if (!server.up || server.incarnation !== dialler.incarnation) return;
      this.ctx.tracer.add(this.ctx.nowMs, `server ${server.id}: connection to ${conn.serverId} lost`);
      return server.run((node) => node.onClosed(conn.id));
    }
    this.ctx.clientEvent(conn, (client) => {
      if (conn.diallerClosed) return;
      this.markClosed(conn, false);
      this.ctx.tracer.add(this.ctx.nowMs, `client ${client.name}: connection to server ${conn.serverId} closed`);
      client.host.closed(conn);
    });
  }

  /** A connection breaks under both ends (a reset): what it carried is lost, both ends hear of it. */
  breakConn(conn: SimConn, why: string, notifyDialler = true): void {
    conn.up.broken = true;
    conn.down.broken = true;
    this.ctx.tracer.add(this.ctx.nowMs, `connection ${conn.id} (${describeDialler(conn)}→${conn.serverId}) broken (${why})`);
    if (!conn.acceptorClosed) this.ctx.push(this.ctx.nowMs + this.netRng.next() * 3, { type: "closed", conn, atAcceptor: true });
    if (!conn.diallerClosed && notifyDialler) this.ctx.push(this.ctx.nowMs + this.netRng.next() * 5, { type: "closed", conn, atAcceptor: false });
  }

  /** Sometimes (while faults run) a new connection breaks before its welcome can have come back. */
  private maybeCutHandshake(conn: SimConn): void {
    if (!this.ctx.faultsOn || !this.faultRng.chance(0.03)) return;
    this.ctx.push(this.ctx.nowMs + this.faultRng.next() * 2 * conn.up.latencyMs, { type: "handshake-cut", conn });
  }

  /** For a grant leaving `from`: the hash of the datum the client must end up with (checked by the client). */
  private noteGrant(from: ServerMachine, id: ConnId, body: ReplyMessage): void {
    const { reply } = body;
    if (reply.type !== "granted") return;
    this.conns.get(id)?.expectedHashes.push(datumHash(from.state, reply.offset, reply.size));
  }

  private traceReceived(to: ServerMachine, id: ConnId, message: Message | PeerMessage): void {
    if (message.type === "heartbeat") return;
    const conn = this.conns.get(id);
    if (!conn) return;
    const label = to.id === conn.serverId ? `${describeDialler(conn)}→${to.id}` : `${conn.serverId}→${to.id}`;
    this.ctx.tracer.add(this.ctx.nowMs, label, message);
  }


  /** A client dials `serverId`: the connection is accepted, or refused (the client hears of it one round trip later). */
  dialClient(slot: number, incarnation: number, serverId: number): SimConn {
    const server = this.ctx.server(serverId);
    const conn = this.net.newClientConn(slot, incarnation, serverId, server.incarnation);
    this.ctx.tracer.add(this.ctx.nowMs, `client ${slot}.${incarnation} dials server ${serverId}${server.up ? "" : " (down: refused)"}`);
    if (!server.up) {
      conn.acceptorClosed = true;
      conn.refused = true;
      this.ctx.push(this.ctx.nowMs + 2 * conn.up.latencyMs, { type: "closed", conn, atAcceptor: false });
      return conn;
    }
    this.conns.set(conn.id, conn);
    if (conn.chunkBytesMax === 1) this.ctx.stats.clientConnsByteByByte++;
    let set = this.clientConns.get(serverId);
    if (!set) this.clientConns.set(serverId, (set = new Set()));
    set.add(conn);
    this.ctx.push(conn.up.arrival(this.ctx.nowMs, this.netRng, 0), { type: "accept", conn });
    this.maybeCutHandshake(conn);
    return conn;
  }

  sendClient(conn: SimConn, bytes: Uint8Array): void {
    this.sendBytes(conn, false, bytes);
  }

  closeClient(conn: SimConn): void {
    if (conn.diallerClosed) return;
    this.markClosed(conn, false);
    if (conn.acceptorClosed) return;
    this.ctx.push(conn.up.arrival(this.ctx.nowMs, this.netRng, 0), { type: "closed", conn, atAcceptor: true });
  }

  /** A message the client `name` decoded on `conn`: traced; for a grant, the hash noted when it left the tail. */
  clientReceived(name: string, conn: SimConn, message: Message): number | undefined {
    this.ctx.tracer.add(this.ctx.nowMs, `${conn.serverId}→client ${name}`, message);
    return message.type === "reply" && message.body.reply.type === "granted" ? conn.expectedHashes.shift() : undefined;
  }

  /** A server crashed: its connections break (`flush`: its kernel still sends what it had sent; `silent`: its peers are not told). */
  crashed(server: ServerMachine, flush: boolean, silent: boolean): void {
    for (const link of this.net.linksFrom(server.id)) {
      const conn = link.conn;
      link.blackHole = false;
      if (!conn) continue;
      // A killed process's kernel may still send what it had sent (then the close); a lost machine does not.
      if (!flush) conn.up.broken = true;
      conn.down.broken = true;
      this.markClosed(conn, false);
      if (flush) this.ctx.push(conn.up.arrival(this.ctx.nowMs, this.netRng, 0), { type: "closed", conn, atAcceptor: true });
      else this.breakConn(conn, "its dialler crashed", false);
    }
    for (const link of this.net.linksTo(server.id)) {
      const conn = link.conn;
      if (!conn) continue;
      if (silent) {
        conn.up.broken = true;
        conn.down.broken = true;
        link.blackHole = true; // the dialler still thinks it is connected
      } else this.breakPeerLink(link);
    }
    for (const conn of this.clientConnsOf(server.id)) this.breakConn(conn, "server crashed");
  }

  /** A server restarted: connections that were silently dead (their peer crashed without a reset) break now. */
  restarted(server: ServerMachine): void {
    for (const link of this.net.linksTo(server.id)) {
      if (link.blackHole) this.breakPeerLink(link);
    }
  }

  /** The dialler's connection breaks: what it carried is lost, and both ends hear of it. */
  breakPeerLink(link: PeerLink): void {
    const conn = link.conn;
    link.blackHole = false;
    if (conn) this.breakConn(conn, "cut");
  }
}

function describeDialler(conn: SimConn): string {
  const d = conn.dialler;
  return d.kind === "server" ? String(d.id) : `client ${d.slot}.${d.incarnation}`;
}
