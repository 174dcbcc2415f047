/**
 * This server's outbound connections to its peers, one per peer, re-dialled
 * while down. Messages to a peer go over our connection to it; its messages
 * to us arrive on its connection to us (ordered per direction, as TCP is).
 * A message to a peer that is not connected is dropped: the chain protocol
 * resynchronises (sync requests, heartbeats) rather than trusting delivery.
 */
import { Link, linkSocketHandlers } from "../net/link";
import { Greeter } from "../net/greeter";
import { type clientTls, tlsErrorText } from "../net/tls";
import { WireError, decodeMessage, encodeMessage } from "../wire";
import { splitAddress } from "../net/address";

interface Outbound {
  id: number;
  address: string;
  link: Link | null;
  /** The peer welcomed us (after checking our proof, with a secret): messages may flow. */
  ready: boolean;
  connecting: boolean;
  lastAttemptMs: number;
}

export interface PeerLinkEvents {
  /** An established connection to the peer broke. */
  onLost(id: number): void;
  /** The peer refused us (e.g. EAUTH: a different secret). */
  onRefused(id: number, code: string, message: string): void;
}

export class PeerLinks {
  private readonly outbound = new Map<number, Outbound>();
  private stopped = false;

  constructor(
    private readonly selfId: number,
    addresses: string[],
    private readonly frameBytesMax: number,
    private readonly secret: string | undefined,
    private readonly tls: ReturnType<typeof clientTls>,
    private readonly events: PeerLinkEvents,
  ) {
    addresses.forEach((address, index) => {
      const id = index + 1;
      if (id !== selfId) this.outbound.set(id, { id, address, link: null, ready: false, connecting: false, lastAttemptMs: -Infinity });
    });
  }

  send(id: number, frame: Uint8Array): void {
    const peer = this.outbound.get(id);
    if (peer?.ready && peer.link && !peer.link.isClosed) peer.link.send(frame);
  }

  /** Bytes waiting in the outbound queues of the peer links. */
  pendingBytes(): number {
    let bytes = 0;
    for (const peer of this.outbound.values()) bytes += peer.link?.pendingBytes ?? 0;
    return bytes;
  }

  /** Re-dials peers that are not connected, at most once per `retryMs`. */
  maintain(nowMs: number, retryMs: number): void {
    for (const peer of this.outbound.values()) {
      if (this.stopped || peer.connecting || (peer.link && !peer.link.isClosed)) continue;
      if (nowMs - peer.lastAttemptMs < retryMs) continue;
      peer.lastAttemptMs = nowMs;
      void this.dial(peer);
    }
  }

  closeAll(): void {
    this.stopped = true;
    for (const peer of this.outbound.values()) peer.link?.close("server stopping");
  }

  private async dial(peer: Outbound): Promise<void> {
    peer.connecting = true;
    const { host, port } = splitAddress(peer.address);
    const events = this.events;
    const frameBytesMax = this.frameBytesMax;
    const greeter = new Greeter("server", this.selfId, this.secret);
    try {
      await Bun.connect<Link>({
        hostname: host,
        port,
        tls: this.tls,
        socket: {
          ...linkSocketHandlers,
          handshake(socket, success, error) {
            // A peer whose certificate does not check out is refused, like a wrong secret.
            if (!success) {
              events.onRefused(peer.id, "ETLS", `its certificate was refused: ${tlsErrorText(error)}`);
              socket.terminate();
            }
          },
          open(socket) {
            const link = new Link(
              socket,
              {
                // After the handshake, peers answer on their own connection to us.
                onFrame(_link, frame) {
                  if (peer.ready) return;
                  let step;
                  try {
                    step = greeter.step(decodeMessage(frame.type, frame.body));
                  } catch (error) {
                    if (!(error instanceof WireError)) throw error;
                    step = { kind: "refused" as const, code: "EPROTO", message: error.message };
                  }
                  if (step.kind === "send") link.send(encodeMessage(step.message));
                  else if (step.kind === "welcome") peer.ready = true;
                  else {
                    events.onRefused(peer.id, step.code, step.message);
                    link.close("refused");
                  }
                },
                onClose() {
                  if (peer.link === link) {
                    const wasReady = peer.ready;
                    peer.link = null;
                    peer.ready = false;
                    if (wasReady) events.onLost(peer.id);
                  }
                },
              },
              frameBytesMax,
            );
            socket.data = link;
            // A state transfer is one large frame: allow it to wait in the queue.
            link.setQueuedBytesMax(frameBytesMax * 2);
            peer.link = link;
            link.send(encodeMessage(greeter.hello()));
          },
          connectError() {},
        },
      });
    } catch {
      // Not up (yet): maintain() tries again.
    } finally {
      peer.connecting = false;
    }
  }
}
