/**
 * A framed, ordered byte stream over a Bun socket, for both client and server.
 * Bun's socket.write() sends what it can and keeps nothing (../shared/BUN.md),
 * so every link keeps its own outbound queue, flushed from `drain`.
 */
import type { Socket } from "bun";
import { COALESCE_BYTES_MAX, FRAME_BYTES_MAX, LINK_QUEUED_BYTES_MAX } from "../constants";
import { type Frame, type FrameBudget, FrameDecoder, WireError, concatBytes, encodeMessage } from "../wire";

export interface LinkHandlers {
  onFrame(link: Link, frame: Frame): void;
  onClose(link: Link, reason: string): void;
}

/** A link whose owner decodes the bytes itself (a server node has its own frame decoders). */
export interface ByteLinkHandlers {
  onBytes(link: Link, chunk: Uint8Array): void;
  onClose(link: Link, reason: string): void;
}

/** While a batch runs, sends are queued and each link writes once at its end. */
let batching: Set<Link> | null = null;

/** Runs `fn` with sends batched: every link it sends on writes its frames in one go afterwards. */
export function batchSends(fn: () => void): void {
  if (batching !== null) return fn();
  const links = new Set<Link>();
  batching = links;
  try {
    fn();
  } finally {
    batching = null;
    for (const link of links) link.flush();
  }
}

export class Link {
  private readonly decoder: FrameDecoder;
  private readonly queue: Uint8Array[] = [];
  private queuedBytes = 0;
  private closed = false;
  private queuedBytesMax = LINK_QUEUED_BYTES_MAX;
  /** Sends wait for the end of the turn's microtasks and leave in one write (client links). */
  flushAfterTurn = false;
  /** Free for the owner: e.g. the session or peer this link serves. */
  tag: unknown = undefined;
  /** performance.now() when bytes last arrived (or the link opened): silent links are closed. */
  lastReceivedMs = performance.now();

  constructor(
    readonly socket: Socket<Link>,
    private readonly handlers: LinkHandlers | ByteLinkHandlers,
    frameBytesMax = FRAME_BYTES_MAX,
  ) {
    this.decoder = new FrameDecoder(frameBytesMax);
  }

  setFrameBytesMax(bytes: number): void {
    this.decoder.frameBytesMax = bytes;
  }

  /** Charges this link's incomplete incoming frames to `budget` (null: no limit but frameBytesMax). */
  setFrameBudget(budget: FrameBudget | null): void {
    this.decoder.budget = budget;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Bytes waiting for the kernel to take them (backpressure signal). */
  get pendingBytes(): number {
    return this.queuedBytes;
  }

  send(frame: Uint8Array): void {
    if (this.closed) return;
    if (this.queue.length === 0 && batching === null && !this.flushAfterTurn) {
      const written = this.socket.write(frame);
      if (written === frame.length) return;
      if (written < 0) return this.fail("socket closed while writing");
      this.queue.push(frame.subarray(written));
      this.queuedBytes += frame.length - written;
      return;
    }
    this.queue.push(frame);
    this.queuedBytes += frame.length;
    // The first frame queued: the batch, or else the turn's end (flushAfterTurn), writes it.
    if (this.queue.length === 1) {
      if (batching !== null) batching.add(this);
      else queueMicrotask(() => this.flush());
    }
    if (this.queuedBytes > this.queuedBytesMax) {
      // The peer does not read: drop it rather than grow without bound. It reconnects.
      this.lost(`the peer is not reading: ${this.queuedBytes} bytes waiting (limit ${this.queuedBytesMax})`);
    }
  }

  /** Backpressure limit: more than this waiting to be sent closes the link. */
  setQueuedBytesMax(bytes: number): void {
    this.queuedBytesMax = bytes;
  }

  /** Called from the socket's drain handler, and after a batch of sends. */
  flush(): void {
    while (this.queue.length > 0 && !this.closed) {
      const head = this.coalesceHead();
      const written = this.socket.write(head);
      if (written < 0) return this.fail("socket closed while writing");
      this.queuedBytes -= Math.max(written, 0);
      if (written < head.length) {
        this.queue[0] = head.subarray(written);
        return;
      }
      this.queue.shift();
    }
  }

  /** Joins small queued frames into one buffer: one system call instead of many. */
  private coalesceHead(): Uint8Array {
    let count = 0;
    let bytes = 0;
    while (count < this.queue.length && bytes + this.queue[count]!.length <= COALESCE_BYTES_MAX) bytes += this.queue[count++]!.length;
    if (count <= 1) return this.queue[0]!;
    const joined = concatBytes(this.queue.slice(0, count));
    this.queue.splice(0, count, joined);
    return joined;
  }

  /** Called from the socket's data handler. A malformed stream closes the link. */
  receive(chunk: Uint8Array): void {
    if (this.closed) return;
    this.lastReceivedMs = performance.now();
    if ("onBytes" in this.handlers) return this.handlers.onBytes(this, chunk);
    const handlers = this.handlers;
    try {
      this.decoder.push(chunk, (frame) => {
        if (!this.closed) handlers.onFrame(this, frame);
      });
    } catch (error) {
      if (!(error instanceof WireError)) throw error;
      // Tell the peer why before closing: a clear error, never a silent drop.
      this.send(encodeMessage({ type: "error", body: { code: error.code, message: error.message } }));
      this.close(`protocol error: ${error.message}`);
    }
  }

  /** Sends what is queued if the kernel takes it now, then closes. */
  close(reason = "closed"): void {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    this.decoder.discard();
    this.socket.end();
    this.handlers.onClose(this, reason);
  }

  /** The peer went away (end/close/error from the socket). */
  lost(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.decoder.discard();
    this.socket.terminate();
    this.handlers.onClose(this, reason);
  }

  private fail(reason: string): void {
    this.lost(reason);
  }
}

/** Socket handlers that route Bun's callbacks to the Link stored in socket.data. */
export const linkSocketHandlers = {
  data(socket: Socket<Link>, chunk: Uint8Array) {
    socket.data.receive(chunk);
  },
  drain(socket: Socket<Link>) {
    socket.data.flush();
  },
  end(socket: Socket<Link>) {
    socket.data?.lost("the peer closed the connection");
  },
  close(socket: Socket<Link>) {
    socket.data?.lost("the connection closed");
  },
  error(socket: Socket<Link>, error: Error) {
    socket.data?.lost(`connection error: ${error.message}`);
  },
};
