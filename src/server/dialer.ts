/**
 * This server's outbound connections to its peers, one per peer, re-dialled
 * while down: the hello (and proof, with a secret), then peer messages once
 * the peer welcomed us. Messages to a peer go over our connection to it; its
 * messages to us arrive on its connection to us (ordered per direction, as
 * TCP is). A message to a peer that is not connected is dropped: the chain
 * protocol resynchronises (sync requests, heartbeats) rather than trusting
 * delivery. Transport-free: the host opens the connections.
 */
import { formatBytes } from "../core/names";
import { Greeter } from "../net/greeter";
import type { Message, Welcome } from "../wire";
import type { ConnId, NodeHost } from "./host";

interface Outbound {
  id: number;
  conn: ConnId | null;
  greeter: Greeter | null;
  /** The peer welcomed us (after checking our proof, with a secret): messages may flow. */
  ready: boolean;
  connecting: boolean;
  lastAttemptMs: number;
}

export interface DialerEvents {
  /** An established connection to the peer broke. */
  onLost(id: number): void;
  /** The peer welcomed us: messages to it flow again. */
  onReady(id: number): void;
  /** The peer refused us (e.g. EAUTH: a different secret), or we refused it (another segment): `why`, a sentence. */
  onRefused(id: number, why: string): void;
}

export class PeerDialer {
  private readonly outbound = new Map<number, Outbound>();
  private readonly byConn = new Map<ConnId, Outbound>();
  private stopped = false;

  constructor(
    private readonly selfId: number,
    peerIds: number[],
    private readonly secret: string | undefined,
    /** Ours: a peer with another segment or page size would apply the same log to another state. */
    private readonly shape: { segmentSize: number; pageSize: number },
    private readonly host: NodeHost,
    private readonly events: DialerEvents,
  ) {
    for (const id of peerIds) {
      if (id !== selfId) this.outbound.set(id, { id, conn: null, greeter: null, ready: false, connecting: false, lastAttemptMs: -Infinity });
    }
  }

  /** Our connection to `id` if it is ready for peer messages. */
  readyConn(id: number): ConnId | null {
    const peer = this.outbound.get(id);
    return peer?.ready ? peer.conn : null;
  }

  owns(conn: ConnId): boolean {
    return this.byConn.has(conn);
  }

  /** Dials peers that are not connected, at most once per `retryMs`. */
  maintain(nowMs: number, retryMs: number): void {
    for (const peer of this.outbound.values()) {
      if (this.stopped || peer.connecting || peer.conn !== null) continue;
      if (nowMs - peer.lastAttemptMs < retryMs) continue;
      peer.lastAttemptMs = nowMs;
      peer.connecting = true;
      this.host.dial(peer.id);
    }
  }

  /** The host opened our connection to `id`: the hello to send on it (null: not wanted, closed). */
  onDialled(id: number, conn: ConnId): Message | null {
    const peer = this.outbound.get(id);
    if (peer) peer.connecting = false;
    if (!peer || this.stopped || peer.conn !== null) {
      this.host.close(conn, "not wanted");
      return null;
    }
    peer.conn = conn;
    peer.ready = false;
    peer.greeter = new Greeter("server", this.selfId, this.secret, this.host.nonce());
    this.byConn.set(conn, peer);
    return peer.greeter.hello();
  }

  onDialFailed(id: number): void {
    const peer = this.outbound.get(id);
    if (peer) peer.connecting = false;
  }

  /** A message from the peer on our connection: only the handshake comes this way. */
  onMessage(conn: ConnId, message: Message): Message | null {
    const peer = this.byConn.get(conn);
    if (!peer || peer.ready || !peer.greeter) return null;
    const step = peer.greeter.step(message);
    if (step.kind === "send") return step.message;
    if (step.kind === "welcome") {
      const mismatch = this.mismatch(peer.id, step.welcome);
      if (mismatch === null) {
        peer.ready = true;
        peer.greeter = null;
        this.events.onReady(peer.id);
        return null;
      }
      this.events.onRefused(peer.id, `${mismatch}; not connecting`);
    } else {
      this.events.onRefused(peer.id, `refused us: ${step.code} ${step.message}`);
    }
    this.host.close(conn, "refused");
    return null;
  }

  /**
   * Why a peer that welcomed us must not join our chain, or null. Another segment or page size
   * would apply the same updates to another state; another number means our --peers and its differ
   * (each server's number is its place in the list), and the chain's configurations would name
   * other servers on each side.
   */
  private mismatch(id: number, welcome: Welcome): string | null {
    if (welcome.serverId !== id) {
      return `says it is server ${welcome.serverId}: every server needs the same --peers, in the same order`;
    }
    const { segmentSize, pageSize } = welcome;
    if (segmentSize === this.shape.segmentSize && pageSize === this.shape.pageSize) return null;
    const theirs = `segment of ${formatBytes(segmentSize)} (pages of ${pageSize} bytes)`;
    const ours = `${formatBytes(this.shape.segmentSize)} (pages of ${this.shape.pageSize} bytes)`;
    return `has a ${theirs}, this server ${ours}: every server of a cluster needs the same --segment-size`;
  }

  /** The connection closed (either end). */
  onClosed(conn: ConnId): void {
    const peer = this.byConn.get(conn);
    if (!peer) return;
    this.byConn.delete(conn);
    if (peer.conn !== conn) return;
    const wasReady = peer.ready;
    peer.conn = null;
    peer.ready = false;
    peer.greeter = null;
    if (wasReady) this.events.onLost(peer.id);
  }

  closeAll(): void {
    this.stopped = true;
    for (const peer of this.outbound.values()) if (peer.conn !== null) this.host.close(peer.conn, "server stopping");
  }

  /** The peer whose connection `conn` is (ours to it). */
  peerOf(conn: ConnId): number | null {
    return this.byConn.get(conn)?.id ?? null;
  }
}
