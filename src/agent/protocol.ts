/**
 * The agent's side of the little protocol between libpstore (c/pstore.c) and
 * `pstore agent`: frames of a u32 little-endian length and a body. A request
 * is an op byte and its fields; a reply is a code byte (0 = ok, else the index
 * of the error in ERROR_CODES plus one), a message, then the op's fields.
 * Strings are a u16 length and UTF-8 bytes. No page bytes travel here: they
 * are in the segment file both sides map. An access's reply ends with the
 * lending-table slot the use came from (0xffffffff: none) and its state word
 * (src/agent/lending.ts).
 */
import { ERROR_CODES, type ErrorCode, PStoreError } from "../errors.ts";

export const AGENT_PROTOCOL_VERSION = 2;

export const OP = { hello: 1, create: 2, access: 3, release: 4, delete: 5 } as const;
export const MODE = { read: 1, write: 2 } as const;

export type Request =
  | { op: "hello"; version: number; servers: string; secret: string; tlsCa: string }
  | { op: "create"; size: number; name: string }
  | { op: "access"; mode: "read" | "write"; name: string }
  | { op: "release"; mode: "read" | "write"; offset: number; pages: Uint32Array }
  | { op: "delete"; name: string };

const decoder = new TextDecoder("utf-8", { fatal: true });
const encoder = new TextEncoder();

class BodyReader {
  private at = 0;
  private readonly view: DataView;
  constructor(private readonly bytes: Uint8Array) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  private need(n: number): void {
    if (this.at + n > this.bytes.length) throw new PStoreError("EPROTO", "a truncated request from the program");
  }
  u8(): number {
    this.need(1);
    return this.view.getUint8(this.at++);
  }
  u32(): number {
    this.need(4);
    const value = this.view.getUint32(this.at, true);
    this.at += 4;
    return value;
  }
  u64(): number {
    this.need(8);
    const value = this.view.getBigUint64(this.at, true);
    this.at += 8;
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new PStoreError("EINVAL", `${value} is too large`);
    return Number(value);
  }
  str(): string {
    this.need(2);
    const length = this.view.getUint16(this.at, true);
    this.at += 2;
    this.need(length);
    const text = decoder.decode(this.bytes.subarray(this.at, this.at + length));
    this.at += length;
    return text;
  }
  pages(count: number): Uint32Array {
    this.need(count * 4);
    // Copied: the frame's buffer is reused, and its offset need not be 4-aligned.
    const pages = new Uint32Array(count);
    for (let i = 0; i < count; i++) pages[i] = this.view.getUint32(this.at + i * 4, true);
    this.at += count * 4;
    return pages;
  }
  end(): void {
    if (this.at !== this.bytes.length) throw new PStoreError("EPROTO", "trailing bytes in a request from the program");
  }
}

function mode(code: number): "read" | "write" {
  if (code === MODE.read) return "read";
  if (code === MODE.write) return "write";
  throw new PStoreError("EPROTO", `unknown hold mode ${code}`);
}

export function decodeRequest(body: Uint8Array): Request {
  const r = new BodyReader(body);
  const op = r.u8();
  let request: Request;
  switch (op) {
    case OP.hello:
      request = { op: "hello", version: r.u32(), servers: r.str(), secret: r.str(), tlsCa: r.str() };
      break;
    case OP.create:
      request = { op: "create", size: r.u64(), name: r.str() };
      break;
    case OP.access:
      request = { op: "access", mode: mode(r.u8()), name: r.str() };
      break;
    case OP.release: {
      const m = mode(r.u8());
      const offset = r.u64();
      request = { op: "release", mode: m, offset, pages: m === "write" ? r.pages(r.u32()) : new Uint32Array(0) };
      break;
    }
    case OP.delete:
      request = { op: "delete", name: r.str() };
      break;
    default:
      throw new PStoreError("EPROTO", `unknown request ${op}`);
  }
  r.end();
  return request;
}

export type ReplyField = { u64: number } | { u32: number } | { str: string };

/** The reply of every op that returns nothing, sent as it is. */
const OK_EMPTY = new Uint8Array([3, 0, 0, 0, 0, 0, 0]);
const MESSAGE_BYTES_MAX = 400;

/** A reply frame: ok, then the fields in the order the op defines; or an error and its message. One allocation. */
export function encodeReply(fields: ReplyField[], error?: { code: ErrorCode; message: string }): Uint8Array {
  if (!error && fields.length === 0) return OK_EMPTY;
  const message = error ? encoder.encode(error.message).subarray(0, MESSAGE_BYTES_MAX) : OK_EMPTY.subarray(0, 0);
  const texts: Uint8Array[] = [];
  let total = 4 + 1 + 2 + message.length;
  if (!error) {
    for (const field of fields) {
      if ("u64" in field) total += 8;
      else if ("u32" in field) total += 4;
      else {
        const text = encoder.encode(field.str);
        texts.push(text);
        total += 2 + text.length;
      }
    }
  }
  const frame = new Uint8Array(total);
  const view = new DataView(frame.buffer);
  view.setUint32(0, total - 4, true);
  view.setUint8(4, error ? ERROR_CODES.indexOf(error.code) + 1 : 0);
  view.setUint16(5, message.length, true);
  frame.set(message, 7);
  let at = 7 + message.length;
  if (error) return frame;
  let text = 0;
  for (const field of fields) {
    if ("u64" in field) {
      // Two halves: no BigInt on the hot path (values are at most 2^53).
      view.setUint32(at, field.u64 % 2 ** 32, true);
      view.setUint32(at + 4, Math.floor(field.u64 / 2 ** 32), true);
      at += 8;
    } else if ("u32" in field) {
      view.setUint32(at, field.u32, true);
      at += 4;
    } else {
      const bytes = texts[text++]!;
      view.setUint16(at, bytes.length, true);
      frame.set(bytes, at + 2);
      at += 2 + bytes.length;
    }
  }
  return frame;
}
