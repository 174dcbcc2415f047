/**
 * The Bun host of a server node (node.ts): it listens for connections, dials
 * peers, carries bytes between sockets and the node, ticks it, and gives it
 * its disk (the log, checkpoints, configuration and votes, via DiskQueue).
 * Everything the server decides happens in the node and in core/.
 */
import { present } from "../assert";
import type { TCPSocketListener } from "bun";
import { consola, type ConsolaInstance } from "consola";
import {
  CHECKPOINT_WAITS_MAX,
  HOLD_FOR_FORWARD_BYTES_MIN,
  HOLD_FOR_FORWARD_MS_MAX,
  LARGE_FRAME_BYTES_MIN,
  LARGE_FRAME_COLLECT_EVERY_BYTES,
  LARGE_FRAME_GC_INTERVAL_MS,
  LARGE_FRAME_IDLE_MS,
  LARGE_FRAME_KEPT_BYTES_MAX,
  TICK_MS_MAX,
  CHECKPOINT_MB_DEFAULT,
  INBOUND_BUFFERED_BYTES_MAX,
  PAGE_SIZE,
} from "../constants";
import { Replica, lastSeqOf } from "../core";
import { formatBytes } from "../core/names";
import { Durability, NODE_IO, isNoSpace } from "../store";
import { makeNonce } from "../net/auth";
import { splitAddress } from "../net/address";
import { Link, batchSends, linkSocketHandlers } from "../net/link";
import { clientTls, serverTls, tlsErrorText } from "../net/tls";
import { largeBuffer, largeBufferCounts, releaseKeptLargeBuffer } from "../memory";
import { encodeMessage } from "../wire";
import { Admission } from "./admission";
import { DiskQueue, durableStore } from "./diskqueue";
import { type ConnId, type NodeDisk, type NodeHost, peerFrameBytesMax } from "./host";
import { ServerNode } from "./node";
import { PassProfile } from "./pass_profile";
import type { RunningServer, ServerOptions } from "./options";

export class Server implements NodeHost {
  readonly log: ConsolaInstance;
  readonly node: ServerNode;
  readonly disk: NodeDisk;
  private readonly peerAddresses: string[];
  private readonly links = new Map<ConnId, Link>();
  private nextConn = 1;
  private listener: TCPSocketListener<Link> | null = null;
  private ticker: ReturnType<typeof setInterval> | null = null;
  private readonly admission = new Admission();
  private readonly durability: Durability;
  private checkpointTimer: ReturnType<typeof setTimeout> | null = null;
  private collectTimer: ReturnType<typeof setTimeout> | null = null;
  private idleReleaseTimer: ReturnType<typeof setTimeout> | null = null;
  /** Bytes of large frames arrived since the last collection (largeFrameArrived). */
  private largeBytesSinceCollect = 0;
  /** When frameBuffer last collected garbage before making a buffer. */
  private frameGcAtMs = -Infinity;
  private readonly diskQueue: DiskQueue;
  /** Our connections to peers (dialled): the forwards go out on them. */
  private readonly dialledLinks = new Set<Link>();
  /** Disk work and collections held back while a large forward leaves (afterForwardsLeave), in order. */
  private held: (() => void)[] = [];
  private heldTimer: ReturnType<typeof setTimeout> | null = null;
  private heldSinceMs = 0;
  /** Stamps for bench/pass_profile.ts, when asked for (null: none). */
  private readonly profile: PassProfile | null;
  readonly selfId: number;

  constructor(private readonly options: ServerOptions) {
    this.log = options.logger ?? consola.withTag("server");
    const self = `${options.listen.host}:${options.listen.port}`;
    const index = options.peers.indexOf(self);
    if (index < 0) throw new Error(`--listen ${self} is not in --peers ${options.peers.join(",")}`);
    this.selfId = index + 1;
    this.peerAddresses = [...options.peers];
    this.profile = options.passProfileDir ? new PassProfile(options.passProfileDir, this.selfId) : null;
    // Bind first: a port in use must not leave a data dir (LOCK, a fresh log) behind.
    this.listener = this.listen();
    try {
      const { durability, recovered } = Durability.open(NODE_IO, options.dataDir, {
        segmentSize: options.segmentSize,
        fsync: options.fsync,
        checkpointBytes: options.checkpointBytes ?? CHECKPOINT_MB_DEFAULT * 1024 * 1024,
        rejoin: options.rejoin,
        server: { id: this.selfId, peers: this.peerAddresses },
      });
      this.durability = durability;
      const diskQueue = new DiskQueue(durableStore(durability), options.dataDir, this.log);
      this.diskQueue = diskQueue;
      const awaitSync = options.fsync === "always";
      this.disk = {
        write: (items, written, unsynced) => {
          const afterWrite = () => {
            this.profile?.written(lastSeqOf(items));
            written();
            if (durability.checkpointDue) this.scheduleCheckpoint();
          };
          // With --fsync always the forwards wait for our write: nothing to hold it for.
          if (awaitSync) diskQueue.push(items, afterWrite, unsynced);
          else this.afterForwardsLeave(() => diskQueue.push(items, afterWrite, unsynced));
        },
        get waiting() {
          return diskQueue.waiting;
        },
        spaceShort: (bytes) => durability.spaceShort(bytes),
      };
      for (const note of recovered.notes) {
        if (note.startsWith("--rejoin")) this.log.warn(note);
        else this.log.info(note);
      }
      const replica = new Replica(
        {
          selfId: this.selfId,
          peers: options.peers.map((_, i) => i + 1),
          sessionTimeoutMsDefault: options.sessionTimeoutMs,
          heartbeatMs: options.heartbeatMs,
          suspectMs: options.suspectMs,
          quorum: options.quorum ?? "none",
          forceBoot: options.forceBoot ?? false,
          awaitSync,
        },
        recovered.state,
        recovered.lastEpoch,
        recovered.config ?? undefined,
        recovered.vote ?? undefined,
        recovered.epochs,
        recovered.bootPeers,
      );
      this.node = new ServerNode(
        replica,
        {
          selfId: this.selfId,
          addresses: this.peerAddresses,
          segmentSize: options.segmentSize,
          pageSize: PAGE_SIZE,
          sessionTimeoutMs: options.sessionTimeoutMs,
          heartbeatMs: options.heartbeatMs,
          suspectMs: options.suspectMs,
          secret: options.secret,
          inboundBufferedBytesMax: options.inboundBufferedBytesMax ?? INBOUND_BUFFERED_BYTES_MAX,
          peerFrameBytesMax: this.peerFrameBytesMax(),
        },
        this,
        this.profile ?? undefined,
      );
      // A log past its limit at start (many restarts, each opening a segment) is checkpointed now, not after more writes.
      if (durability.checkpointDue) this.scheduleCheckpoint();
    } catch (error) {
      this.listener.stop(true);
      throw error;
    }
  }

  get replica(): Replica {
    return this.node.replica;
  }

  private listen(): TCPSocketListener<Link> {
    const server = this;
    return Bun.listen<Link>({
      hostname: this.options.listen.host,
      port: this.options.listen.port,
      tls: serverTls(this.options.tls, splitAddress(this.peerAddresses[this.selfId - 1]!).host),
      socket: {
        ...linkSocketHandlers,
        open(socket) {
          const link = server.addLink(socket);
          const id = link.tag as ConnId;
          const admitted = server.admission.accept(link, socket.remoteAddress);
          if ("refused" in admitted) {
            server.log.debug(`refusing a connection: ${admitted.refused.code} ${admitted.refused.message}`);
            link.send(encodeMessage({ type: "error", body: admitted.refused }));
            return link.close(admitted.refused.message);
          }
          server.node.onAccepted(id);
          if (admitted.evict) {
            const evicted = admitted.evict as Link;
            evicted.send(encodeMessage({ type: "error", body: Admission.evicted }));
            evicted.close(Admission.evicted.message);
          }
        },
      },
    });
  }

  /** A Link for a socket, its bytes and its close going to the node under a fresh connection id. */
  private addLink(socket: import("bun").Socket<Link>): Link {
    const id = this.nextConn++;
    const link = new Link(socket, {
      onBytes: (_link, chunk) => {
        this.profile?.bytes(id);
        this.node.onBytes(id, chunk);
      },
      onClose: (closed, reason) => {
        this.links.delete(id);
        this.dialledLinks.delete(closed);
        this.admission.release(closed);
        this.node.onClosed(id);
        this.log.debug(`connection closed: ${reason}`);
      },
    });
    link.tag = id;
    socket.data = link;
    this.links.set(id, link);
    return link;
  }

  start(): RunningServer {
    const tickMs = Math.min(TICK_MS_MAX, this.options.heartbeatMs);
    this.ticker = setInterval(() => this.node.tick(), tickMs);
    this.node.tick();
    const address = `${this.options.listen.host}:${present(this.listener, "listening").port}`;
    // Listening on port 0 (tests): clients must be told the port we got.
    this.peerAddresses[this.selfId - 1] = address;
    this.log.info(`server ${this.selfId} listening on ${address}, segment ${formatBytes(this.options.segmentSize)}, data in ${this.options.dataDir}`);
    return { address, stop: () => this.stop() };
  }

  async stop(): Promise<void> {
    if (this.ticker) clearInterval(this.ticker);
    this.ticker = null;
    if (this.checkpointTimer) clearTimeout(this.checkpointTimer);
    this.checkpointTimer = null;
    if (this.collectTimer) clearTimeout(this.collectTimer);
    this.collectTimer = null;
    if (this.idleReleaseTimer) clearTimeout(this.idleReleaseTimer);
    this.idleReleaseTimer = null;
    this.diskQueue.stop();
    this.node.stop();
    this.runHeld();
    this.listener?.stop(true);
    this.listener = null;
    this.diskQueue.stop();
    this.profile?.save();
    if (this.diskQueue.waiting) {
      // Never forwarded nor acknowledged: no client was told they happened.
      this.log.warn(`stopping with ${this.diskQueue.waitingCount} actions not written (the disk is full); none was acknowledged`);
    }
    try {
      this.durability.close();
    } catch (error) {
      if (!isNoSpace(error)) throw error;
      this.log.warn(`the log could not be synced at stop (the disk is full): ${(error as Error).message}`);
    }
  }

  // ---- NodeHost ------------------------------------------------------------------------

  nowMs(): number {
    return performance.now();
  }

  send(conn: ConnId, bytes: Uint8Array): void {
    this.links.get(conn)?.send(bytes);
  }

  close(conn: ConnId, reason: string): void {
    this.links.get(conn)?.close(reason);
  }

  defer(fn: () => void): void {
    // After this callback. (setImmediate, after every socket callback of the turn, let several
    // clients' updates share one write; measured against this in session 7 it gained nothing
    // beyond the noise: docs/benchmarks.md.)
    queueMicrotask(fn);
  }

  batch(fn: () => void): void {
    batchSends(fn);
  }

  pendingBytes(conn: ConnId): number {
    return this.links.get(conn)?.pendingBytes ?? 0;
  }

  nonce(): Uint8Array {
    return makeNonce();
  }

  admit(conn: ConnId, role: "client" | "server") {
    const link = this.links.get(conn);
    if (!link) return null;
    if (role === "server") {
      this.admission.admitPeer(link);
      return null;
    }
    return this.admission.admitClient(link);
  }

  /**
   * A large frame leaves its buffers (the frame, the log record, the forward) to the garbage
   * collector, which runs by the JavaScript heap's size and does not see them: the server's
   * RSS then held several copies of a 64 MiB update for seconds. Collect once it is handled.
   */
  largeFrame(): void {
    this.scheduleIdleRelease();
    if (this.collectTimer !== null) return;
    this.collectTimer = setTimeout(() => {
      this.afterForwardsLeave(() => {
        this.collectTimer = null;
        Bun.gc(true);
      });
    }, 0);
  }

  /**
   * Runs `fn` (this server's disk work, a collection) once the large forward its peer links
   * are sending has left, or at once when none is. Each blocks the event loop, and the rest
   * of a forward waits meanwhile in our queue for the socket to drain: a 64 MiB forward took
   * 64-72 ms to cross a hop whose sender wrote its log and collected garbage in the middle,
   * ~22 ms when nothing holds it (docs/benchmarks.md, session 16). The forwards of --fsync
   * off and batch leave before our write in any case (--fsync always's wait for it and never
   * come here). Not on the tail, whose replies wait for its write (its forwards go to a
   * joiner). Held work runs in order, before a checkpoint and at stop.
   */
  private afterForwardsLeave(fn: () => void): void {
    const hold = this.held.length > 0 || (!this.node.replica.isTail && this.forwardBytesQueued() >= HOLD_FOR_FORWARD_BYTES_MIN);
    if (!hold) return fn();
    if (this.held.length === 0) this.heldSinceMs = performance.now();
    this.held.push(fn);
    this.heldTimer ??= setTimeout(() => this.checkHeld(), 1);
  }

  private checkHeld(): void {
    this.heldTimer = null;
    if (this.held.length === 0) return;
    const waited = performance.now() - this.heldSinceMs;
    if (this.forwardBytesQueued() > 0 && waited < HOLD_FOR_FORWARD_MS_MAX) {
      this.heldTimer = setTimeout(() => this.checkHeld(), 1);
      return;
    }
    this.runHeld();
  }

  /** Runs what afterForwardsLeave held back, in order. */
  private runHeld(): void {
    if (this.heldTimer !== null) clearTimeout(this.heldTimer);
    this.heldTimer = null;
    while (this.held.length > 0) this.held.shift()!();
  }

  /** Bytes waiting in the queues of our links to peers. */
  private forwardBytesQueued(): number {
    return pendingBytesOf(this.dialledLinks);
  }

  /**
   * The large-frame buffer kept for the next one (frameBuffer) goes back to the system once no
   * large frame came for LARGE_FRAME_IDLE_MS: a stream of large releases reuses it, pages in,
   * and an idle server does not hold 64 MiB for a frame that may never come. A buffer still
   * in use then (its update not yet acknowledged downstream) goes at a later check.
   */
  private scheduleIdleRelease(): void {
    if (this.idleReleaseTimer !== null) clearTimeout(this.idleReleaseTimer);
    this.idleReleaseTimer = setTimeout(() => {
      this.idleReleaseTimer = null;
      Bun.gc(true); // the last frame's buffer, garbage by now, is collected (and unmapped)
      releaseKeptLargeBuffer();
      if (largeBufferCounts().inUse > 0) this.scheduleIdleRelease();
    }, LARGE_FRAME_IDLE_MS);
    this.idleReleaseTimer.unref();
  }

  /**
   * The socket hands each chunk (up to 512 KiB) in a buffer of its own, copied into the large
   * frame's and garbage at once; the collector, run by the JavaScript heap's size, did not see
   * them, and a 64 MiB frame's chunks all stayed in the RSS (kept by the allocator). Collected
   * every few MiB, their memory is what the next chunks reuse (and no fresh pages to fault in).
   */
  largeFrameArrived(bytes: number): void {
    this.largeBytesSinceCollect += bytes;
    if (this.largeBytesSinceCollect < LARGE_FRAME_COLLECT_EVERY_BYTES) return;
    this.largeBytesSinceCollect = 0;
    Bun.gc(false);
  }

  /**
   * A large frame's buffer is a mapping apart from the allocator (c/pstore_large.h): kept by
   * the allocator (src/cli/self.ts), each collected 64 MiB frame stayed in the RSS, two or
   * three beyond the data. The last large frame's buffer is garbage by now (applied, logged,
   * forwarded) but the collector, which runs by the JavaScript heap's size, does not see it:
   * collected first, it is the one kept for this frame, its pages in (a fault costs ~11 µs
   * on our VM).
   */
  frameBuffer(bytes: number): Uint8Array | null {
    if (bytes < LARGE_FRAME_BYTES_MIN) return new Uint8Array(bytes);
    // Not when the kept buffer will do, nor more often than every LARGE_FRAME_GC_INTERVAL_MS:
    // a client announcing large frames one after another must not keep the server collecting.
    const now = performance.now();
    if (largeBufferCounts().keptBytes < bytes && now - this.frameGcAtMs >= LARGE_FRAME_GC_INTERVAL_MS) {
      this.frameGcAtMs = now;
      Bun.gc(true);
    }
    // No mapping (address space or overcommit limits): the frame keeps its chunks instead,
    // charged as they come, rather than a buffer of the announced length failing at once.
    return largeBuffer(bytes, LARGE_FRAME_KEPT_BYTES_MAX);
  }

  dial(peer: number): void {
    void this.connect(peer);
  }

  private async connect(peer: number): Promise<void> {
    const { host, port } = splitAddress(present(this.peerAddresses[peer - 1], `peer ${peer} is in --peers`));
    const server = this;
    let opened = false;
    try {
      await Bun.connect<Link>({
        hostname: host,
        port,
        tls: clientTls(this.options.tls?.ca),
        socket: {
          ...linkSocketHandlers,
          handshake(socket, success, error) {
            // A peer whose certificate does not check out is refused, like a wrong secret.
            if (!success) {
              server.node.onPeerRefused(peer, "ETLS", `its certificate was refused: ${tlsErrorText(error)}`);
              socket.terminate();
            }
          },
          open(socket) {
            opened = true;
            const link = server.addLink(socket);
            // A state transfer is one large frame: allow it to wait in the queue.
            link.setQueuedBytesMax(server.peerFrameBytesMax() * 2);
            server.dialledLinks.add(link);
            server.node.onDialled(peer, link.tag as ConnId);
          },
          connectError() {},
        },
      });
    } catch (error) {
      // Not up (yet): the node dials again at a later tick. A name that does not resolve is
      // no such passing state: said once, or the server waited for that peer without a word.
      if ((error as { syscall?: string }).syscall === "getaddrinfo") {
        this.node.onPeerUnreachable(peer, `cannot be dialled: ${host} does not resolve (${(error as Error).message}); check --peers`);
      }
    } finally {
      if (!opened) this.node.onDialFailed(peer);
    }
  }

  /**
   * An automatic checkpoint copies the whole state, which blocks this server a
   * while: it runs after the replies and forwards of this batch, once they have
   * left (a large forward drains over many turns), so the chain goes on meanwhile.
   * It also waits for the log's spare segment, usually being prepared since the
   * segment it replaced filled (the log and a checkpoint both grow to 64 MiB): begun
   * without it, the checkpoint's segment was a new file, zero-filled in line (--fsync
   * always) or sparse, whose first writes the next directory sync flushed (10–32 ms).
   */
  private scheduleCheckpoint(): void {
    if (this.checkpointTimer !== null) return;
    let waits = 0;
    const attempt = () => {
      if ((this.outboundBytes() > 0 || this.durability.sparePending) && waits++ < CHECKPOINT_WAITS_MAX) {
        this.checkpointTimer = setTimeout(attempt, 1);
        return;
      }
      // The log must hold every update the state has applied: flush what is queued first.
      this.node.flush();
      this.runHeld();
      this.checkpointTimer = null;
      if (this.diskQueue.waiting) return; // the disk is full: no checkpoint now
      const replica = this.node.replica;
      this.durability.checkpointInBackground(replica.state, replica.lastEpoch, replica.config.epoch)?.then(
        (info) => info && this.log.info(`checkpoint at seq ${info.seq} (${info.bytes} bytes): the log had grown past its limit`),
        (error) => this.log.warn(`checkpoint failed (the log keeps everything; retried later): ${(error as Error).message}`),
      );
    };
    this.checkpointTimer = setTimeout(attempt, 0);
  }

  /** Bytes waiting in this server's outbound queues. */
  private outboundBytes(): number {
    return pendingBytesOf(this.links.values());
  }

  private peerFrameBytesMax(): number {
    return peerFrameBytesMax(this.options.segmentSize);
  }
}

/** Bytes waiting in the queues of `links`. */
function pendingBytesOf(links: Iterable<Link>): number {
  let bytes = 0;
  for (const link of links) bytes += link.pendingBytes;
  return bytes;
}
