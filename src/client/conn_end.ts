/**
 * The client's end of one server connection, above its transport: the bytes
 * that arrive (cut anywhere) become frames, the frames messages; the first
 * messages are the handshake (hello, the secret's challenge, the welcome and
 * its protocol version), the rest go to the ConnectionEvents. Bun's sockets
 * (connection.ts) and the simulator's network (src/sim/client_host.ts) both
 * run it: the transport only moves bytes, reports closes and times the
 * handshake out.
 */
import { FRAME_BYTES_MAX, PROTOCOL_VERSION } from "../constants";
import { PStoreError } from "../errors";
import { Greeter } from "../net/greeter";
import { type Frame, FrameDecoder, type Message, type Welcome, WireError, decodeMessage, encodeMessage, encodeMessageParts } from "../wire";
import { type ConnectionEvents, remoteError } from "./host";

/** What carries the bytes: a socket, or a simulated connection. */
export interface EndTransport {
  send(bytes: Uint8Array): void;
  /** Closes the connection (what is queued may still leave). */
  close(reason: string): void;
}

export interface EndOptions {
  secret?: string;
  /** The handshake's nonce (a simulated host draws it from its seed; default: random). */
  nonce?: Uint8Array;
  /** Sees every message decoded here, the handshake's included (the simulator's traces and checks). */
  observe?: (message: Message) => void;
}

export class ConnectionEnd {
  private readonly decoder = new FrameDecoder(FRAME_BYTES_MAX);
  private readonly greeter: Greeter;
  private transport: EndTransport | null = null;
  private settle!: { resolve(welcome: Welcome): void; reject(error: Error): void };
  /** The handshake's outcome: the welcome, or why the connection is refused. */
  readonly welcomed: Promise<Welcome>;
  private greeted = false;
  private ended = false;

  constructor(
    readonly address: string,
    private readonly events: ConnectionEvents,
    private readonly options: EndOptions = {},
  ) {
    this.greeter = new Greeter("client", 0, options.secret, options.nonce);
    this.welcomed = new Promise<Welcome>((resolve, reject) => (this.settle = { resolve, reject }));
    // The dial may fail before anyone awaits the handshake: keep its rejection handled.
    this.welcomed.catch(() => {});
  }

  /** The connection is open: say hello. */
  attach(transport: EndTransport): void {
    this.transport = transport;
    transport.send(encodeMessage(this.greeter.hello()));
  }

  get isGreeted(): boolean {
    return this.greeted;
  }

  send(message: Message): void {
    if (this.ended || !this.transport) return;
    for (const part of encodeMessageParts(message)) this.transport.send(part);
  }

  /** Part of a frame has arrived, the rest is on its way (a large grant takes seconds). */
  get receivingFrame(): boolean {
    return !this.decoder.idle;
  }

  /** Bytes from the server, in whatever pieces the transport delivers them. */
  receive(chunk: Uint8Array): void {
    if (this.ended) return;
    try {
      this.decoder.push(chunk, (frame) => {
        if (!this.ended) this.onFrame(frame);
      });
    } catch (error) {
      if (!(error instanceof WireError)) throw error;
      // Tell the server why before closing: a clear error, never a silent drop.
      this.transport?.send(encodeMessage({ type: "error", body: { code: error.code, message: error.message } }));
      this.end(`protocol error: ${error.message}`, new PStoreError("EPROTO", `${this.address}: ${error.message}`));
    }
  }

  /** The connection closed under us; before the welcome, `error` says why the dial failed (default EUNAVAILABLE). */
  closed(reason: string, error?: PStoreError): void {
    if (this.ended) return;
    this.ended = true;
    this.decoder.discard();
    if (!this.greeted) this.settle.reject(error ?? new PStoreError("EUNAVAILABLE", `${this.address}: ${reason}`));
    else this.events.onClose(reason);
  }

  /** The dial failed outside the protocol (timed out, not connected, a TLS refusal): the connection is closed. */
  fail(error: PStoreError, reason: string): void {
    if (this.ended) return;
    this.end(reason, error);
  }

  private onFrame(frame: Frame): void {
    let message: Message;
    try {
      message = decodeMessage(frame.type, frame.body);
    } catch (error) {
      if (!(error instanceof WireError)) throw error;
      return this.end(`bad frame from ${this.address}: ${error.message}`, new PStoreError("EPROTO", `bad frame from ${this.address}: ${error.message}`));
    }
    this.options.observe?.(message);
    if (this.greeted) return this.events.onMessage(message);
    const step = this.greeter.step(message);
    if (step.kind === "send") return this.transport?.send(encodeMessage(step.message));
    if (step.kind === "refused") return this.end("handshake refused", remoteError(step.code, `${this.address}: ${step.message}`));
    if (step.welcome.version !== PROTOCOL_VERSION) {
      return this.end("protocol version", new PStoreError("EPROTO", `${this.address} speaks protocol ${step.welcome.version}, this client ${PROTOCOL_VERSION}`));
    }
    this.greeted = true;
    this.settle.resolve(step.welcome);
  }

  /** Ends the connection from our side: the handshake fails with `error` if it is still open, else the events hear of the close. */
  private end(reason: string, error: PStoreError): void {
    this.closed(reason, error);
    this.transport?.close(reason);
  }
}
