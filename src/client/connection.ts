/**
 * One client connection to one server over a Bun socket: the bytes go to and
 * from a ConnectionEnd (handshake, frames, messages), the same the simulator
 * runs. It knows nothing about holds or memory; the ClusterLink drives it.
 */
import { PStoreError } from "../errors";
import { splitAddress } from "../net/address";
import { Link, linkSocketHandlers } from "../net/link";
import { clientTls, tlsErrorText } from "../net/tls";
import type { Message, Welcome } from "../wire";
import { ConnectionEnd } from "./conn_end";
import { type ConnectionEvents, ConnectionRefused, type ServerConnection } from "./host";

export class Connection implements ServerConnection {
  private link: Link | null = null;
  welcome!: Welcome;

  private constructor(
    readonly address: string,
    private readonly end: ConnectionEnd,
  ) {}

  /** Connects and completes the handshake (conn_end.ts), or throws EUNAVAILABLE/EPROTO/EAUTH. */
  static async open(address: string, events: ConnectionEvents, timeoutMs: number, secret?: string, tlsCa?: string): Promise<Connection> {
    const end = new ConnectionEnd(address, events, { secret });
    const connection = new Connection(address, end);
    const { host, port } = parseAddress(address);
    /** The first bytes the server sent: a TLS record there means a TLS server spoken to in plain TCP. */
    let firstBytes: Uint8Array | null = null;
    const timer = setTimeout(() => end.fail(new PStoreError("EUNAVAILABLE", `no answer from ${address} within ${timeoutMs} ms`), "handshake timed out"), timeoutMs);
    try {
      await Bun.connect<Link>({
        hostname: host,
        port,
        tls: clientTls(tlsCa),
        socket: {
          ...linkSocketHandlers,
          data(socket, chunk) {
            firstBytes ??= chunk.slice(0, 3);
            linkSocketHandlers.data(socket, chunk);
          },
          handshake(socket, success, error) {
            if (success) return;
            end.fail(new PStoreError("EAUTH", `${address}: the server's TLS certificate was refused: ${tlsErrorText(error)}`), "TLS refused");
            socket.terminate();
          },
          open(socket) {
            const link = new Link(socket, {
              onBytes: (_l, chunk) => end.receive(chunk),
              onClose(_l, reason) {
                // Closed before the handshake ended: a TLS server spoken to in plain TCP answers with a TLS record.
                const hint = !tlsCa && _looksLikeTls(firstBytes) ? " (the server speaks TLS: set PSTORE_TLS_CA or --tls-ca)" : "";
                end.closed(reason, new PStoreError("EUNAVAILABLE", `${address}: ${reason}${hint}`));
              },
            });
            // The stores sharing this connection (shared.ts) release in the same turn: one write for all.
            link.flushAfterTurn = true;
            socket.data = link;
            connection.link = link;
            end.attach({ send: (bytes) => link.send(bytes), close: (reason) => link.close(reason) });
          },
          connectError(_socket, error) {
            end.fail(_connectFailure(address, error), "not connected");
          },
        },
      });
      connection.welcome = await end.welcomed;
    } catch (error) {
      connection.link?.lost("handshake failed");
      throw error instanceof PStoreError ? error : _connectFailure(address, error as Error);
    } finally {
      clearTimeout(timer);
    }
    return connection;
  }

  get isOpen(): boolean {
    return this.link !== null && !this.link.isClosed;
  }

  get receivingFrame(): boolean {
    return this.end.receivingFrame;
  }

  send(message: Message): void {
    this.end.send(message);
  }

  sendFrame(frame: Uint8Array): void {
    this.link?.send(frame);
  }

  /** Keeps the process alive while work is in flight, lets it exit when idle. */
  setActive(active: boolean): void {
    if (!this.link || this.link.isClosed) return;
    if (active) this.link.socket.ref();
    else this.link.socket.unref();
  }

  close(): void {
    this.link?.close("client closed");
  }
}

export function parseAddress(address: string): { host: string; port: number } {
  try {
    const parsed = splitAddress(address);
    if (parsed.port === 0) throw new Error("port 0");
    return parsed;
  } catch {
    throw new PStoreError("EINVAL", `"${address}" is not host:port`);
  }
}

/** A TLS record header: content type 20-23 (alert, handshake, …), then version 3.x. */
function _looksLikeTls(bytes: Uint8Array | null): boolean {
  return bytes !== null && bytes.length >= 2 && bytes[0]! >= 0x14 && bytes[0]! <= 0x17 && bytes[1] === 0x03;
}

function _connectFailure(address: string, error: Error): PStoreError {
  if ((error as { code?: unknown }).code === "ECONNREFUSED") return new ConnectionRefused(address);
  return new PStoreError("EUNAVAILABLE", `cannot connect to ${address}: ${error.message}`);
}
