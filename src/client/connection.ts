/**
 * One client connection to one server: handshake, then request/reply frames.
 * It knows nothing about holds or memory; the Store drives it.
 */
import { FRAME_BYTES_MAX, PROTOCOL_VERSION } from "../constants";
import { PStoreError } from "../errors";
import { splitAddress } from "../net/address";
import { Link, linkSocketHandlers } from "../net/link";
import { Greeter } from "../net/greeter";
import { clientTls, tlsErrorText } from "../net/tls";
import { type Message, type Welcome, WireError, decodeMessage, encodeMessage, encodeMessageParts } from "../wire";
import { type ConnectionEvents, ConnectionRefused, type ServerConnection, remoteError } from "./host";

export class Connection implements ServerConnection {
  private link: Link | null = null;
  welcome!: Welcome;

  private constructor(readonly address: string) {}

  /** Connects and completes the handshake, or throws EUNAVAILABLE/EPROTO/EAUTH. */
  static async open(address: string, events: ConnectionEvents, timeoutMs: number, secret?: string, tlsCa?: string): Promise<Connection> {
    const connection = new Connection(address);
    const greeter = new Greeter("client", 0, secret);
    const { host, port } = parseAddress(address);
    let settle!: { resolve: (w: Welcome) => void; reject: (e: Error) => void };
    const welcomed = new Promise<Welcome>((resolve, reject) => (settle = { resolve, reject }));
    // Bun.connect may throw before `welcomed` is awaited: keep its rejection handled.
    welcomed.catch(() => {});
    let greeted = false;
    /** The first bytes the server sent: a TLS record there means a TLS server spoken to in plain TCP. */
    let firstBytes: Uint8Array | null = null;
    const timer = setTimeout(() => {
      settle.reject(new PStoreError("EUNAVAILABLE", `no answer from ${address} within ${timeoutMs} ms`));
      connection.link?.lost("handshake timed out");
    }, timeoutMs);
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
            settle.reject(new PStoreError("EAUTH", `${address}: the server's TLS certificate was refused (${tlsErrorText(error)}); check --tls-ca`));
            socket.terminate();
          },
          open(socket) {
            const link = new Link(
              socket,
              {
                onFrame(_l, frame) {
                  let message: Message;
                  try {
                    message = decodeMessage(frame.type, frame.body);
                  } catch (error) {
                    if (!(error instanceof WireError)) throw error;
                    link.lost(`bad frame from ${address}: ${error.message}`);
                    return;
                  }
                  if (!greeted) {
                    const step = greeter.step(message);
                    if (step.kind === "send") link.send(encodeMessage(step.message));
                    else if (step.kind === "welcome") {
                      greeted = true;
                      settle.resolve(step.welcome);
                    } else {
                      settle.reject(remoteError(step.code, `${address}: ${step.message}`));
                      link.close("handshake refused");
                    }
                    return;
                  }
                  events.onMessage(message);
                },
                onClose(_l, reason) {
                  // Closed before the handshake ended: a TLS server spoken to in plain TCP answers with a TLS record.
                  const hint = !tlsCa && _looksLikeTls(firstBytes) ? " (the server speaks TLS: set PSTORE_TLS_CA or --tls-ca)" : "";
                  if (!greeted) settle.reject(new PStoreError("EUNAVAILABLE", `${address}: ${reason}${hint}`));
                  else events.onClose(reason);
                },
              },
              FRAME_BYTES_MAX,
            );
            socket.data = link;
            connection.link = link;
            link.send(encodeMessage(greeter.hello()));
          },
          connectError(_socket, error) {
            settle.reject(_connectFailure(address, error));
          },
        },
      });
      connection.welcome = await welcomed;
    } catch (error) {
      connection.link?.lost("handshake failed");
      throw error instanceof PStoreError ? error : _connectFailure(address, error as Error);
    } finally {
      clearTimeout(timer);
    }
    if (connection.welcome.version !== PROTOCOL_VERSION) {
      connection.close();
      throw new PStoreError("EPROTO", `${address} speaks protocol ${connection.welcome.version}, this client ${PROTOCOL_VERSION}`);
    }
    return connection;
  }

  get isOpen(): boolean {
    return this.link !== null && !this.link.isClosed;
  }

  send(message: Message): void {
    for (const part of encodeMessageParts(message)) this.link?.send(part);
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
