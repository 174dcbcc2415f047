/**
 * A minimal Redis client (RESP2) over Bun sockets, for bench/compare.ts.
 *
 * Why not ioredis (on npm): it runs on node:net, which in Bun has a slower
 * tail than Bun.connect (../shared/BUN.md), and pstore's own client uses
 * Bun.connect: both sides of the comparison get the same transport. The
 * benchmark needs a handful of commands issued one at a time, which is all
 * this does: commands go out in order, replies are matched in order.
 *
 * Sending follows BUN.md: `socket.write` may take only part of a buffer, so
 * an outbound queue of (buffer, offset) is written only when empty and
 * flushed from `drain`. Receiving appends chunks to a growing buffer and
 * parses whole replies from it; a reply cut across chunks waits for the rest.
 */
import type { Socket } from "bun";

export type RespValue = string | number | Uint8Array | null | RespValue[];

/** An error reply (`-ERR ...`) from the server. */
export class RespError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RespError";
  }
}

interface _Pending {
  resolve: (value: RespValue) => void;
  reject: (error: Error) => void;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const CRLF = encoder.encode("\r\n");
/** Arguments this long or longer are queued as they are, not copied into the command's header buffer. */
const INLINE_ARG_BYTES_MAX = 16 * 1024;

export class RespClient {
  private socket!: Socket<undefined>;
  private readonly pending: _Pending[] = [];
  private readonly outbound: { bytes: Uint8Array; offset: number }[] = [];
  private inbound = new Uint8Array(64 * 1024);
  private inStart = 0;
  private inEnd = 0;
  private closedError: Error | null = null;

  private constructor(readonly address: string) {}

  static async connect(host: string, port: number): Promise<RespClient> {
    const client = new RespClient(`${host}:${port}`);
    client.socket = await Bun.connect({
      hostname: host,
      port,
      socket: {
        data: (_, chunk) => client.onData(chunk),
        drain: () => client.flush(),
        close: () => client.fail(new Error(`redis ${client.address}: connection closed`)),
        error: (_, error) => client.fail(error),
      },
    });
    return client;
  }

  /** Sends one command (`"SET", "k", value`) and resolves with its reply; an error reply rejects with RespError. */
  command(...args: (string | number | Uint8Array)[]): Promise<RespValue> {
    if (this.closedError) return Promise.reject(this.closedError);
    const promise = new Promise<RespValue>((resolve, reject) => this.pending.push({ resolve, reject }));
    this.enqueue(encodeCommand(args));
    return promise;
  }

  /** `command` for a reply that is a bulk string, decoded as UTF-8 (null stays null). */
  async text(...args: (string | number | Uint8Array)[]): Promise<string | null> {
    const reply = await this.command(...args);
    if (reply === null || typeof reply === "string") return reply;
    if (reply instanceof Uint8Array) return decoder.decode(reply);
    return String(reply);
  }

  close(): void {
    this.fail(new Error(`redis ${this.address}: closed`));
    this.socket.end();
  }

  private enqueue(buffers: Uint8Array[]): void {
    const wasEmpty = this.outbound.length === 0;
    for (const bytes of buffers) this.outbound.push({ bytes, offset: 0 });
    if (wasEmpty) this.flush();
  }

  private flush(): void {
    while (this.outbound.length > 0) {
      const head = this.outbound[0]!;
      const written = this.socket.write(head.bytes.subarray(head.offset));
      if (written < 0) return this.fail(new Error(`redis ${this.address}: write after close`));
      head.offset += written;
      if (head.offset < head.bytes.length) return; // the rest goes from drain
      this.outbound.shift();
    }
  }

  private onData(chunk: Uint8Array): void {
    this.append(chunk);
    for (;;) {
      const parsed = parseReply(this.inbound, this.inStart, this.inEnd);
      if (parsed === null) break;
      this.inStart = parsed.end;
      const waiter = this.pending.shift();
      if (!waiter) return this.fail(new Error(`redis ${this.address}: a reply nobody asked for`));
      if (parsed.value instanceof RespError) waiter.reject(parsed.value);
      else waiter.resolve(parsed.value);
    }
    if (this.inStart === this.inEnd) this.inStart = this.inEnd = 0;
  }

  /** Appends to the inbound buffer, compacting or doubling it: linear in the bytes received. */
  private append(chunk: Uint8Array): void {
    if (this.inEnd + chunk.length > this.inbound.length) {
      const live = this.inEnd - this.inStart;
      if (live + chunk.length <= this.inbound.length) {
        this.inbound.copyWithin(0, this.inStart, this.inEnd);
      } else {
        const bigger = new Uint8Array((live + chunk.length) * 2);
        bigger.set(this.inbound.subarray(this.inStart, this.inEnd));
        this.inbound = bigger;
      }
      this.inStart = 0;
      this.inEnd = live;
    }
    this.inbound.set(chunk, this.inEnd);
    this.inEnd += chunk.length;
  }

  private fail(error: Error): void {
    if (this.closedError) return;
    this.closedError = error;
    for (const waiter of this.pending.splice(0)) waiter.reject(error);
  }
}

/** The RESP array of bulk strings for one command; big arguments are referenced, not copied. */
export function encodeCommand(args: (string | number | Uint8Array)[]): Uint8Array[] {
  const parts: Uint8Array[] = [];
  let small: Uint8Array[] = [encoder.encode(`*${args.length}\r\n`)];
  const flushSmall = () => {
    if (small.length === 0) return;
    const total = small.reduce((sum, piece) => sum + piece.length, 0);
    const merged = new Uint8Array(total);
    let at = 0;
    for (const piece of small) {
      merged.set(piece, at);
      at += piece.length;
    }
    parts.push(merged);
    small = [];
  };
  for (const arg of args) {
    const bytes = arg instanceof Uint8Array ? arg : encoder.encode(String(arg));
    small.push(encoder.encode(`$${bytes.length}\r\n`));
    if (bytes.length >= INLINE_ARG_BYTES_MAX) {
      flushSmall();
      parts.push(bytes);
    } else {
      small.push(bytes);
    }
    small.push(CRLF);
  }
  flushSmall();
  return parts;
}

/** Parses one whole reply from `buf[start, end)`; null when it is not all there yet. */
export function parseReply(buf: Uint8Array, start: number, end: number): { value: RespValue | RespError; end: number } | null {
  if (start >= end) return null;
  const lineEnd = _findCrlf(buf, start + 1, end);
  if (lineEnd === -1) return null;
  const line = decoder.decode(buf.subarray(start + 1, lineEnd));
  const next = lineEnd + 2;
  switch (buf[start]) {
    case 0x2b: // '+'
      return { value: line, end: next };
    case 0x2d: // '-'
      return { value: new RespError(line), end: next };
    case 0x3a: // ':'
      return { value: Number(line), end: next };
    case 0x24: {
      // '$'
      const length = Number(line);
      if (length === -1) return { value: null, end: next };
      if (next + length + 2 > end) return null;
      return { value: buf.slice(next, next + length), end: next + length + 2 };
    }
    case 0x2a: {
      // '*'
      const count = Number(line);
      if (count === -1) return { value: null, end: next };
      const items: RespValue[] = [];
      let at = next;
      for (let i = 0; i < count; i++) {
        const item = parseReply(buf, at, end);
        if (item === null) return null;
        if (item.value instanceof RespError) throw item.value;
        items.push(item.value);
        at = item.end;
      }
      return { value: items, end: at };
    }
    default:
      throw new Error(`not a RESP reply: byte 0x${buf[start]!.toString(16)}`);
  }
}

function _findCrlf(buf: Uint8Array, from: number, end: number): number {
  for (let i = from; i + 1 < end; i++) if (buf[i] === 0x0d && buf[i + 1] === 0x0a) return i;
  return -1;
}
