/**
 * A TCP proxy that stands for one server-to-server link of the chaos
 * cluster: server i reaches server j through its own proxy, so the link
 * i→j can be cut without touching any other traffic.
 *
 * It tells peer connections from client connections by the hello frame (its
 * role byte): clients that were given this proxy's address (a server tells
 * clients its peers' addresses) always get through; only server links are
 * cut. A cut either drops the connections at once (the servers see them
 * close) or blackholes them (they stay open, bytes vanish, and the servers
 * must notice from missing heartbeats); a blackholed connection is closed
 * when the cut heals, since its byte stream lost pieces.
 */
import type { Socket, TCPSocketListener } from "bun";
import { FRAME_HEADER_BYTES, MAGIC, MessageType, concatBytes } from "../wire";

export type CutMode = "drop" | "blackhole";

/** Bytes of a hello frame up to and including its role byte: length, type, magic, version, role. */
const ROLE_AT = FRAME_HEADER_BYTES + 4 + 2;
const ROLE_SERVER = 2;

interface Side {
  socket: Socket<Side> | null;
  /** Bytes waiting for the socket to take them (Bun's write() keeps nothing). */
  queue: Uint8Array[];
  peer: Side | null;
  pair: Pair;
}

interface Pair {
  kind: "unknown" | "peer" | "client";
  /** Bytes from the connecting side before we know its kind. */
  early: Uint8Array[];
  earlyBytes: number;
  downstream: Side;
  upstream: Side;
  /** Bytes of this connection were thrown away: it must not carry anything after the cut. */
  damaged: boolean;
  closed: boolean;
}

export class LinkProxy {
  private listener: TCPSocketListener<Side> | null = null;
  private readonly pairs = new Set<Pair>();
  private cut: CutMode | null = null;
  /** Connections cut so far (dropped or blackholed), for the report. */
  cutConnections = 0;

  constructor(
    /** "host:port" of the server behind the proxy. */
    readonly target: string,
    readonly label: string,
  ) {}

  get address(): string {
    if (!this.listener) throw new Error(`proxy ${this.label} is not listening`);
    return `127.0.0.1:${this.listener.port}`;
  }

  get isCut(): boolean {
    return this.cut !== null;
  }

  listen(): void {
    const proxy = this;
    this.listener = Bun.listen<Side>({
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        open(socket) {
          const pair = proxy.newPair();
          pair.downstream.socket = socket;
          socket.data = pair.downstream;
          proxy.connectUpstream(pair);
        },
        data(socket, bytes) {
          proxy.fromDownstream(socket.data.pair, bytes);
        },
        drain(socket) {
          flush(socket.data);
        },
        end(socket) {
          proxy.close(socket.data.pair);
        },
        close(socket) {
          proxy.close(socket.data.pair);
        },
        error(socket) {
          proxy.close(socket.data.pair);
        },
      },
    });
  }

  /** Cuts the server traffic of this link until heal(). */
  startCut(mode: CutMode): void {
    this.cut = mode;
    for (const pair of this.pairs) {
      if (pair.kind !== "peer") continue;
      this.cutConnections++;
      if (mode === "drop") this.close(pair);
      else pair.damaged = true;
    }
  }

  heal(): void {
    this.cut = null;
    for (const pair of [...this.pairs]) if (pair.damaged) this.close(pair);
  }

  stop(): void {
    for (const pair of [...this.pairs]) this.close(pair);
    this.listener?.stop(true);
    this.listener = null;
  }

  private newPair(): Pair {
    const pair = { kind: "unknown", early: [], earlyBytes: 0, damaged: false, closed: false } as unknown as Pair;
    pair.downstream = { socket: null, queue: [], peer: null, pair };
    pair.upstream = { socket: null, queue: [], peer: null, pair };
    pair.downstream.peer = pair.upstream;
    pair.upstream.peer = pair.downstream;
    this.pairs.add(pair);
    return pair;
  }

  private connectUpstream(pair: Pair): void {
    const proxy = this;
    const colon = this.target.lastIndexOf(":");
    Bun.connect<Side>({
      hostname: this.target.slice(0, colon),
      port: Number(this.target.slice(colon + 1)),
      socket: {
        open(socket) {
          if (pair.closed) return void socket.terminate();
          pair.upstream.socket = socket;
          socket.data = pair.upstream;
          flush(pair.upstream);
        },
        data(socket, bytes) {
          if (pair.damaged || pair.closed) return;
          send(socket.data.peer!, bytes);
        },
        drain(socket) {
          flush(socket.data);
        },
        end() {
          proxy.close(pair);
        },
        close() {
          proxy.close(pair);
        },
        error() {
          proxy.close(pair);
        },
        connectError() {
          proxy.close(pair);
        },
      },
    }).catch(() => this.close(pair));
  }

  private fromDownstream(pair: Pair, bytes: Uint8Array): void {
    if (pair.closed) return;
    if (pair.kind === "unknown") {
      pair.early.push(bytes.slice());
      pair.earlyBytes += bytes.length;
      if (pair.earlyBytes <= ROLE_AT) return;
      const head = concatBytes(pair.early);
      pair.early = [];
      pair.kind = isServerHello(head) ? "peer" : "client";
      if (pair.kind === "peer" && this.cut) {
        this.cutConnections++;
        if (this.cut === "drop") return this.close(pair);
        pair.damaged = true;
      }
      bytes = head;
    }
    if (pair.damaged) return;
    send(pair.upstream, bytes);
  }

  private close(pair: Pair): void {
    if (pair.closed) return;
    pair.closed = true;
    this.pairs.delete(pair);
    pair.downstream.socket?.terminate();
    pair.upstream.socket?.terminate();
  }
}

function isServerHello(head: Uint8Array): boolean {
  if (head[4] !== MessageType.hello) return false;
  const magic = new DataView(head.buffer, head.byteOffset, head.byteLength).getUint32(FRAME_HEADER_BYTES, true);
  return magic === MAGIC && head[ROLE_AT] === ROLE_SERVER;
}

function send(side: Side, bytes: Uint8Array): void {
  side.queue.push(side.queue.length === 0 && side.socket ? bytes : bytes.slice());
  if (side.queue.length === 1) flush(side);
}

function flush(side: Side): void {
  const socket = side.socket;
  if (!socket) return;
  while (side.queue.length > 0) {
    const head = side.queue[0]!;
    const written = socket.write(head);
    if (written < 0) return;
    if (written < head.length) {
      // Bun reuses the chunk it handed us: keep a copy of what is still to send.
      side.queue[0] = head.slice(written);
      return;
    }
    side.queue.shift();
  }
}

