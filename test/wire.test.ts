/**
 * The wire as a peer meets it: exact bytes for the messages that matter,
 * every message and every op/reply surviving a round trip, frames cut at any
 * point of a TCP stream, and bad input refused with a WireError (never another
 * exception, never a big allocation on a lying length prefix).
 */
import { describe, expect, test } from "bun:test";
import { FRAME_ASSEMBLE_BYTES_MIN, FRAME_BYTES_MAX, PROTOCOL_VERSION, UPDATE_PARTS_BYTES_MIN } from "../src/constants";
import {
  FRAME_HEADER_BYTES,
  type Frame,
  FrameBudget,
  FrameDecoder,
  helloMessage,
  type Message,
  MessageType,
  type Op,
  type Reply,
  WireError,
  Writer,
  concatBytes,
  decodeMessage,
  decodePeer,
  encodeMessage,
  encodeMessageParts,
  encodePeerParts,
  encodeUpdate,
  encodeUpdateParts,
  packPages,
  utf8Length,
  writeFrameHeader,
} from "../src/wire";

// ---- helpers ---------------------------------------------------------------

/** "0a 00 ff # comment" → bytes; spaces, `|` and `#` comments (to the end of a line) are for the reader. */
function hex(text: string): Uint8Array {
  const digits = text.replace(/#.*$/gm, "").replace(/[\s|]/g, "");
  if (digits.length % 2 !== 0) throw new Error(`odd hex: ${text}`);
  const bytes = new Uint8Array(digits.length / 2);
  for (let i = 0; i < bytes.length; i++) bytes[i] = Number.parseInt(digits.slice(2 * i, 2 * i + 2), 16);
  return bytes;
}

function toHex(bytes: Uint8Array): string {
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join(" ");
}

/** Decodes one whole encoded frame (header included). */
function decodeFrame(frame: Uint8Array): Message {
  return decodeMessage(frame[FRAME_HEADER_BYTES - 1]!, frame.subarray(FRAME_HEADER_BYTES));
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** Runs `fn` and returns what it threw (fails the test when it does not throw). */
function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  throw new Error("expected a throw");
}

function expectWireError(fn: () => unknown, message?: RegExp): void {
  const error = thrown(fn);
  expect(error).toBeInstanceOf(WireError);
  if (message) expect((error as Error).message).toMatch(message);
}

/** Tiny seeded PRNG (mulberry32): a failure replays from its seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const page = (index: number, fill: number, length = 16) => ({ page: index, bytes: new Uint8Array(length).fill(fill) });

// ---- every op, every reply, every message ----------------------------------

const ALL_OPS: Op[] = [
  { type: "open_session", timeoutMs: 10_000 },
  { type: "close_session" },
  { type: "create", name: "compteur", size: 4 },
  { type: "create", name: "ünïcødé €", size: 2 ** 53 - 1 },
  { type: "delete", name: "compteur" },
  { type: "acquire", name: "compteur", mode: "read", knownCreatedSeq: -1, cachedVersion: -1 },
  { type: "acquire", name: "x", mode: "write", knownCreatedSeq: 17, cachedVersion: 2 ** 40 + 3 },
  { type: "acquire", name: "c", mode: "read", knownCreatedSeq: 4, cachedVersion: 9, cache: true },
  { type: "release", holdId: 9, pages: [] },
  { type: "release", holdId: 2 ** 33 + 1, pages: [page(0, 0xaa), page(4_000_000, 0x55, 4096), { page: 7, bytes: new Uint8Array(0) }] },
  { type: "cancel", acquireReqNo: 0xffff_ffff },
  { type: "expire_session", session: 2 ** 52 + 5 },
  { type: "refused", code: "ENOSPC", message: "the disk of server 1 is full", holdId: 2 ** 33 + 1 },
];

const ALL_REPLIES: Reply[] = [
  { type: "ok" },
  { type: "session", timeoutMs: 1234 },
  { type: "created", offset: 2 ** 40, size: 5000, createdSeq: 77 },
  {
    type: "granted",
    holdId: 3,
    mode: "read",
    name: "compteur",
    offset: 8192,
    size: 4,
    createdSeq: 5,
    version: 9,
    sendAfter: -1,
  },
  {
    type: "granted",
    holdId: 2 ** 53 - 1,
    mode: "write",
    name: "é",
    offset: 0,
    size: 1,
    createdSeq: 1,
    version: 1,
    sendAfter: 1,
  },
  { type: "released", version: 42, cached: false },
  { type: "released", version: 7, cached: true },
  { type: "queued" },
  { type: "error", code: "ENOENT", message: 'no datum named "x" — créez-la d’abord' },
];

const HELLO_CLIENT = helloMessage("client", 0, new Uint8Array(32).fill(0xab));

const ALL_MESSAGES: Message[] = [
  HELLO_CLIENT,
  { type: "hello", body: { version: 7, role: "server", senderId: 3, nonce: new Uint8Array(32).fill(9) } },
  { type: "challenge", body: { nonce: new Uint8Array(32).fill(1), proof: new Uint8Array(32).fill(2) } },
  { type: "auth", body: { proof: new Uint8Array(32).fill(3) } },
  {
    type: "welcome",
    body: { version: 1, serverId: 2, segmentSize: 256 * 1024 * 1024, pageSize: 4096, epoch: 12, chain: ["127.0.0.1:7401", "[::1]:7402"] },
  },
  { type: "welcome", body: { version: 1, serverId: 1, segmentSize: 4096, pageSize: 4096, epoch: 0, chain: [] } },
  ...ALL_OPS.map((op, i): Message => ({ type: "request", body: { session: 1 + i * 1_000_000_007, reqNo: i, doneBelow: i, op } })),
  ...ALL_REPLIES.map((reply, i): Message => ({ type: "reply", body: { session: 99, reqNo: i + 1, reply, pages: [] } })),
  { type: "reply", body: { session: 99, reqNo: 5, reply: ALL_REPLIES[3]!, pages: [page(2, 1), page(3, 2)] } },
  { type: "heartbeat", body: { session: 2 ** 53 - 1, doneBelow: 2 ** 32 - 1 } },
  { type: "query", body: { queryId: 1, kind: "list", name: "" } },
  { type: "query", body: { queryId: 2, kind: "stat", name: "compteur" } },
  { type: "query", body: { queryId: 3, kind: "status", name: "" } },
  { type: "queryReply", body: { queryId: 4, json: '{"a":[1,2],"é":"€"}' } },
  { type: "subscribe", body: { session: 8, waiting: [] } },
  { type: "subscribe", body: { session: 8, waiting: [1, 2, 0xffff_ffff] } },
  { type: "recall", body: { session: 2 ** 53 - 1, holdId: 2 ** 24 + 5, name: "compteur" } },
  { type: "error", body: { code: "EPROTO", message: "bad frame" } },
  { type: "config", body: { epoch: 2 ** 40 + 17, chain: ["10.0.0.1:7401", "10.0.0.2:7401", "10.0.0.3:7401"] } },
  { type: "config", body: { epoch: 0, chain: [] } },
];

describe("golden bytes (u32 LE length of what follows, u8 type, body)", () => {
  test("hello from a client", () => {
    const expected = hex(`
      2a 00 00 00 | 01  # length 42, type hello
      50 53 54 52  # magic "PSTR"
      07 00 | 01 | 00 00  # version 7, role client, sender 0
      ${"ab ".repeat(32)} # the client's nonce`);
    expect(PROTOCOL_VERSION).toBe(7);
    expect(toHex(encodeMessage(HELLO_CLIENT))).toBe(toHex(expected));
    expect(decodeFrame(expected)).toEqual(HELLO_CLIENT);
  });

  test("a request with an acquire", () => {
    const message: Message = {
      type: "request",
      body: { session: 7, reqNo: 3, doneBelow: 2, op: { type: "acquire", name: "ab", mode: "write", knownCreatedSeq: -1, cachedVersion: 5 } },
    };
    const expected = hex(`
      27 00 00 00 | 03  # length 39, type request
      07 00 00 00 00 00 00 00  # session 7 (u53)
      03 00 00 00 | 02 00 00 00  # reqNo 3, doneBelow 2
      05  # op acquire
      02 00 61 62  # name "ab"
      02  # mode write
      00 00 00 00 00 00 f0 bf  # knownCreatedSeq -1.0 (f64)
      00 00 00 00 00 00 14 40  # cachedVersion 5.0 (f64)`);
    expect(toHex(encodeMessage(message))).toBe(toHex(expected));
    expect(decodeFrame(expected)).toEqual(message);
  });

  test("a release with one page", () => {
    const message: Message = {
      type: "request",
      body: { session: 7, reqNo: 4, doneBelow: 3, op: { type: "release", holdId: 9, pages: [{ page: 2, bytes: hex("01 02 03") }] } },
    };
    const expected = hex(`
      29 00 00 00 | 03  # length 41, type request
      07 00 00 00 00 00 00 00  # session 7
      04 00 00 00 | 03 00 00 00  # reqNo 4, doneBelow 3
      06  # op release
      09 00 00 00 00 00 00 00  # hold 9
      01 00 00 00  # one page
      02 00 00 00  # page index 2
      03 00 00 00 | 01 02 03  # 3 bytes`);
    expect(toHex(encodeMessage(message))).toBe(toHex(expected));
    expect(decodeFrame(expected)).toEqual(message);
  });

  test("a reply with a grant and its page", () => {
    const message: Message = {
      type: "reply",
      body: {
        session: 7,
        reqNo: 3,
        reply: {
          type: "granted",
          holdId: 9,
          mode: "read",
          name: "ab",
          offset: 0x2000,
          size: 0x1388,
          createdSeq: 4,
          version: 0x1_0000_0006,
          sendAfter: -1,
        },
        pages: [{ page: 2, bytes: hex("ff") }],
      },
    };
    const expected = hex(`
      50 00 00 00 | 04  # length 80 = type 1 + session 8 + reqNo 4 + reply 54 + pages 13
      07 00 00 00 00 00 00 00  # session 7
      03 00 00 00  # reqNo 3
      04  # reply granted
      09 00 00 00 00 00 00 00  # hold 9
      01  # mode read
      02 00 61 62  # name "ab"
      00 20 00 00 00 00 00 00  # offset 8192
      88 13 00 00 00 00 00 00  # size 5000
      04 00 00 00 00 00 00 00  # createdSeq 4
      06 00 00 00 01 00 00 00  # version 2^32 + 6 (high word second)
      00 00 00 00 00 00 f0 bf  # sendAfter -1.0
      01 00 00 00  # one page
      02 00 00 00 | 01 00 00 00 | ff`);
    expect(toHex(encodeMessage(message))).toBe(toHex(expected));
    expect(decodeFrame(expected)).toEqual(message);
  });

  test("message type codes are the documented ones", () => {
    for (const message of ALL_MESSAGES) {
      expect(encodeMessage(message)[4]).toBe(MessageType[message.type]);
    }
  });
});

describe("round trip", () => {
  test("every message type survives encode → decode, and the length prefix is exact", () => {
    const seen = new Set<string>();
    for (const message of ALL_MESSAGES) {
      const frame = encodeMessage(message);
      const length = new DataView(frame.buffer, frame.byteOffset).getUint32(0, true);
      expect(length).toBe(frame.length - 4);
      expect(decodeFrame(frame)).toEqual(message);
      seen.add(message.type);
    }
    expect([...seen].sort()).toEqual(Object.keys(MessageType).sort());
  });

  test("every op type and every reply type is covered", () => {
    expect(new Set(ALL_OPS.map((op) => op.type)).size).toBe(9);
    expect(new Set(ALL_REPLIES.map((reply) => reply.type)).size).toBe(7);
  });

  test("page bytes come back byte for byte, as views into the frame (no copy)", () => {
    const bytes = new Uint8Array(4096);
    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 31) & 0xff;
    const frame = encodeMessage({ type: "request", body: { session: 1, reqNo: 1, doneBelow: 0, op: { type: "release", holdId: 1, pages: [{ page: 5, bytes }] } } });
    const body = frame.subarray(FRAME_HEADER_BYTES);
    const decoded = decodeMessage(MessageType.request, body);
    if (decoded.type !== "request" || decoded.body.op.type !== "release") throw new Error("wrong message");
    const got = decoded.body.op.pages[0]!.bytes;
    expect(got).toEqual(bytes);
    expect(got.buffer).toBe(frame.buffer);
  });

  test("packed pages encode to the same bytes, in parts when large (head, then the pages as packed)", () => {
    const pageSize = 4096;
    const source = new Uint8Array(40 * pageSize).map((_, i) => (i * 13) & 0xff);
    for (const indices of [[3], [0, 1, 2, 7, 39], Array.from({ length: 20 }, (_, i) => i + 10)]) {
      const pages = packPages(indices, pageSize, source);
      expect(pages.map((p) => p.page)).toEqual(indices);
      for (const p of pages) expect(p.bytes).toEqual(source.subarray(p.page * pageSize, (p.page + 1) * pageSize));
      const message: Message = { type: "request", body: { session: 9, reqNo: 4, doneBelow: 2, op: { type: "release", holdId: 77, pages } } };
      const plain: Message = { type: "request", body: { ...message.body, op: { type: "release", holdId: 77, pages: pages.map((p) => ({ ...p })) } } };
      const parts = encodeMessageParts(message);
      expect(parts.length).toBe(indices.length >= 16 ? 2 : 1);
      expect(toHex(concatBytes(parts))).toBe(toHex(encodeMessage(plain)));
      expect(toHex(encodeMessage(message))).toBe(toHex(encodeMessage(plain)));
    }
  });

  test("a large release from a client's frame is logged and forwarded as its header and the frame's own page bytes", () => {
    const pageSize = 4096;
    const pageCount = Math.ceil(UPDATE_PARTS_BYTES_MIN / pageSize) + 1;
    const source = new Uint8Array(pageCount * pageSize).map((_, i) => (i * 7) & 0xff);
    const pages = packPages(Array.from({ length: pageCount }, (_, i) => i), pageSize, source);
    const frame = concatBytes(encodeMessageParts({ type: "request", body: { session: 9, reqNo: 4, doneBelow: 2, op: { type: "release", holdId: 77, pages } } }));
    const decoded = decodeMessage(MessageType.request, frame.subarray(FRAME_HEADER_BYTES));
    if (decoded.type !== "request") throw new Error("wrong message");
    // As the head sequences it: the request's op in an update of its own.
    const update = { seq: 12, epoch: 65, session: 9, reqNo: 4, doneBelow: 2, op: decoded.body.op };
    const parts = encodeUpdateParts(update);
    expect(parts.length).toBe(2);
    expect(parts[1]!.buffer).toBe(frame.buffer); // not copied
    const plain = { ...update, op: { type: "release" as const, holdId: 77, pages: pages.map((p) => ({ ...p })) } };
    expect(toHex(concatBytes(parts))).toBe(toHex(encodeUpdate(plain)));
    // And a follower decodes the forward made of those parts back to the same update.
    const forward = concatBytes(encodePeerParts({ type: "forward", from: 1, epoch: 65, prevEpoch: 65, updates: [update] }));
    const received = decodePeer(forward[FRAME_HEADER_BYTES - 1]!, forward.subarray(FRAME_HEADER_BYTES));
    if (received.type !== "forward") throw new Error("wrong message");
    expect(received.updates[0]!.op).toEqual(plain.op);
  });

  test("utf8Length agrees with TextEncoder, including lone surrogates", () => {
    const samples = ["", "a", "é", "€", "😀", "a😀b", "\uD800", "\uDC00", "\uD800a", "\uD800é", "\uD800€", "\uD800\uD800\uDC00", "x\uDBFF"];
    for (const text of samples) expect([text, utf8Length(text)]).toEqual([text, new TextEncoder().encode(text).length]);
  });

  test("a string with a lone surrogate encodes (as U+FFFD) instead of crashing the encoder", () => {
    for (const message of ["\uD800é", "\uD800€", "\uDBFF\uDBFF\uDC00"]) {
      const frame = encodeMessage({ type: "error", body: { code: "EINVAL", message } });
      const decoded = decodeFrame(frame);
      expect(decoded).toEqual({ type: "error", body: { code: "EINVAL", message: message.toWellFormed() } });
    }
  });

  test("values the wire cannot carry are refused at encoding, not silently changed", () => {
    // A u53 field: negative, fractional or over 2^53 would arrive as another number (or not decode).
    for (const size of [-1, 1.5, 2 ** 53, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => encodeMessage({ type: "request", body: { session: 1, reqNo: 1, doneBelow: 0, op: { type: "create", name: "x", size } } })).toThrow(RangeError);
    }
    // u32 and u16 fields: a session timeout of 2^32 + 500 ms would arrive as 500 ms.
    for (const timeoutMs of [2 ** 32 + 500, -1, 1500.5]) {
      expect(() => encodeMessage({ type: "request", body: { session: 1, reqNo: 1, doneBelow: 0, op: { type: "open_session", timeoutMs } } })).toThrow(RangeError);
    }
    expect(() => encodeMessage({ type: "request", body: { session: 1, reqNo: 2 ** 32, doneBelow: 0, op: { type: "close_session" } } })).toThrow(RangeError);
    expect(() => encodeMessage({ type: "hello", body: { version: 1, role: "server", senderId: 65_536, nonce: new Uint8Array(32) } })).toThrow(RangeError);
    expect(() => encodeMessage({ type: "hello", body: { version: 1, role: "server", senderId: 1, nonce: new Uint8Array(31) } })).toThrow(RangeError);
    // A u16-length string over 65535 bytes would have its length wrapped.
    expect(() => encodeMessage({ type: "error", body: { code: "E", message: "x".repeat(65_536) } })).toThrow(RangeError);
    expect(() => encodeMessage({ type: "query", body: { queryId: 1, kind: "stat", name: "é".repeat(40_000) } })).toThrow(RangeError);
    const longest = encodeMessage({ type: "error", body: { code: "E", message: "x".repeat(65_535) } });
    expect(decodeFrame(longest)).toEqual({ type: "error", body: { code: "E", message: "x".repeat(65_535) } });
  });
});

// ---- framing ---------------------------------------------------------------

function decodeAll(decoder: FrameDecoder, chunks: Uint8Array[]): Message[] {
  const frames: Frame[] = [];
  for (const chunk of chunks) decoder.push(chunk, (frame) => frames.push(frame));
  // Decoded only at the end: frame bodies must stay valid while later chunks arrive.
  return frames.map((frame) => decodeMessage(frame.type, frame.body));
}

describe("FrameDecoder", () => {
  const messages = ALL_MESSAGES.filter((m) => m.type !== "welcome" || m.body.chain.length > 0).slice(0, 15);
  const stream = concat(messages.map(encodeMessage));

  test("the stream under test has several frames, including large and tiny ones", () => {
    expect(messages.length).toBeGreaterThanOrEqual(10);
    expect(stream.length).toBeGreaterThan(4096);
  });

  test("the stream in one chunk yields every message in order", () => {
    const decoder = new FrameDecoder(FRAME_BYTES_MAX);
    expect(decodeAll(decoder, [stream])).toEqual(messages);
    expect(decoder.idle).toBe(true);
  });

  test("cut at every split point, the stream yields the same messages", () => {
    for (let cut = 0; cut <= stream.length; cut++) {
      const decoder = new FrameDecoder(FRAME_BYTES_MAX);
      const got = decodeAll(decoder, [stream.slice(0, cut), stream.slice(cut)]);
      if (got.length !== messages.length) throw new Error(`cut at ${cut}: ${got.length} messages`);
      expect(got).toEqual(messages);
      expect(decoder.idle).toBe(true);
    }
  });

  test("one byte at a time yields the same messages, and idle only between frames", () => {
    const decoder = new FrameDecoder(FRAME_BYTES_MAX);
    const frameEnds = new Set<number>();
    let end = 0;
    for (const message of messages) frameEnds.add((end += encodeMessage(message).length));
    const frames: Frame[] = [];
    for (let i = 0; i < stream.length; i++) {
      decoder.push(stream.slice(i, i + 1), (frame) => frames.push(frame));
      expect([i + 1, decoder.idle]).toEqual([i + 1, frameEnds.has(i + 1)]);
    }
    expect(frames.map((f) => decodeMessage(f.type, f.body))).toEqual(messages);
  });

  test("random chunkings (seeded) yield the same messages", () => {
    for (let seed = 1; seed <= 200; seed++) {
      const random = prng(seed);
      const chunks: Uint8Array[] = [];
      for (let at = 0; at < stream.length; ) {
        const size = Math.floor(random() * (random() < 0.5 ? 8 : 600));
        chunks.push(stream.slice(at, at + size));
        at += size;
      }
      expect([seed, decodeAll(new FrameDecoder(FRAME_BYTES_MAX), chunks)]).toEqual([seed, messages]);
    }
  });

  test("a large frame in random chunks arrives whole, holding no chunk, its budget following the bytes", () => {
    const bodyLength = FRAME_ASSEMBLE_BYTES_MIN * 3 + 17;
    const random = prng(7);
    const frame = new Uint8Array(5 + bodyLength);
    for (let i = 5; i < frame.length; i++) frame[i] = Math.floor(random() * 256);
    writeFrameHeader(frame, 9);
    const budget = new FrameBudget(bodyLength);
    const decoder = new FrameDecoder(FRAME_BYTES_MAX);
    decoder.budget = budget;
    decoder.assembleBytesMin = FRAME_ASSEMBLE_BYTES_MIN;
    const frames: Frame[] = [];
    const chunks: Uint8Array[] = [];
    for (let at = 0; at < frame.length; ) {
      const chunk = frame.slice(at, at + 1 + Math.floor(random() * 100_000));
      at += chunk.length;
      decoder.push(chunk, (f) => frames.push(f));
      chunks.push(chunk);
      // The decoder keeps no chunk of a large frame (they can be freed and reused at once).
      chunk.fill(0);
      // What arrived of the body, and no more, is held against the budget.
      if (frames.length === 0) expect(budget.heldBytes).toBe(Math.max(0, at - 5));
    }
    expect(chunks.length).toBeGreaterThan(5);
    expect(frames.length).toBe(1);
    expect(frames[0]!.type).toBe(9);
    expect(Buffer.compare(frames[0]!.body, frame.subarray(5))).toBe(0);
    expect(budget.heldBytes).toBe(0);
    expect(decoder.idle).toBe(true);
  });

  test("a large frame whose buffer cannot be had (the host says null) keeps its chunks and still arrives whole", () => {
    const bodyLength = FRAME_ASSEMBLE_BYTES_MIN * 2 + 3;
    const frame = new Uint8Array(5 + bodyLength);
    for (let i = 5; i < frame.length; i++) frame[i] = i % 251;
    writeFrameHeader(frame, 9);
    const asked: number[] = [];
    const decoder = new FrameDecoder(FRAME_BYTES_MAX, (bytes) => (asked.push(bytes), null));
    decoder.assembleBytesMin = FRAME_ASSEMBLE_BYTES_MIN;
    const frames: Frame[] = [];
    for (let at = 0; at < frame.length; at += 65_536) decoder.push(frame.slice(at, at + 65_536), (f) => frames.push(f));
    expect(asked).toEqual([bodyLength, bodyLength]); // at its header, and again to join the chunks
    expect(frames.length).toBe(1);
    expect(Buffer.compare(frames[0]!.body, frame.subarray(5))).toBe(0);
    expect(decoder.idle).toBe(true);
  });

  test("a frame of exactly the limit passes; one byte more is refused", () => {
    const body = new Uint8Array(99);
    const atLimit = concat([hex("64 00 00 00 05"), body]); // length 100 = type + 99
    const frames: Frame[] = [];
    new FrameDecoder(100).push(atLimit, (frame) => frames.push(frame));
    expect(frames.length).toBe(1);
    expect(frames[0]!.body.length).toBe(99);
    expectWireError(() => new FrameDecoder(100).push(hex("65 00 00 00 05"), () => {}), /over the limit/);
  });

  test("a 4 GiB length is refused from its header alone, before any buffer is allocated", () => {
    for (const chunks of [[hex("ff ff ff ff 03")], [...hex("ff ff ff ff 03")].map((b) => new Uint8Array([b]))]) {
      const decoder = new FrameDecoder(1024);
      let error: unknown;
      let frames = 0;
      try {
        for (const chunk of chunks) decoder.push(chunk, () => frames++);
      } catch (caught) {
        error = caught;
      }
      expect(error).toBeInstanceOf(WireError);
      expect((error as Error).message).toContain("4294967295");
      expect(frames).toBe(0);
      // No body buffer was made for the lying length.
      expect((decoder as unknown as { pending: Uint8Array | null }).pending).toBeNull();
    }
  });

  test("a length one byte over a 1 GiB limit is refused at once, with nothing allocated", () => {
    const decoder = new FrameDecoder(2 ** 30);
    const started = performance.now();
    expectWireError(() => decoder.push(hex("01 00 00 40 03"), () => {}), /over the limit/);
    expect(performance.now() - started).toBeLessThan(50);
    expect((decoder as unknown as { pending: Uint8Array | null }).pending).toBeNull();
  });

  test("a zero length is refused (every frame has a type byte)", () => {
    expectWireError(() => new FrameDecoder(1024).push(hex("00 00 00 00 01"), () => {}), /length 0/);
    const slow = new FrameDecoder(1024);
    expectWireError(() => {
      for (const b of hex("00 00 00 00 01")) slow.push(new Uint8Array([b]), () => {});
    }, /length 0/);
  });

  test("a frame with only a type byte has an empty body, in both paths", () => {
    const frames: Frame[] = [];
    new FrameDecoder(16).push(hex("01 00 00 00 05 01 00 00 00 06"), (f) => frames.push(f));
    const slow = new FrameDecoder(16);
    for (const b of hex("01 00 00 00 07")) slow.push(new Uint8Array([b]), (f) => frames.push(f));
    expect(frames.map((f) => [f.type, f.body.length])).toEqual([
      [5, 0],
      [6, 0],
      [7, 0],
    ]);
  });
});

// ---- bad input -------------------------------------------------------------

describe("FrameDecoder with a budget (a server's clients share one)", () => {
  const header = (length: number) => {
    const bytes = new Uint8Array(FRAME_HEADER_BYTES);
    new DataView(bytes.buffer).setUint32(0, length, true);
    bytes[4] = MessageType.request;
    return bytes;
  };

  test("an announced length costs nothing; the bytes that arrive are charged, and given back when the frame is whole", () => {
    const budget = new FrameBudget(1000);
    const decoder = new FrameDecoder(FRAME_BYTES_MAX);
    decoder.budget = budget;
    const frames: Frame[] = [];
    decoder.push(header(1 + 800), (frame) => frames.push(frame));
    expect(budget.heldBytes).toBe(0);
    decoder.push(new Uint8Array(300).fill(1), (frame) => frames.push(frame));
    expect(budget.heldBytes).toBe(300);
    decoder.push(new Uint8Array(500).fill(2), (frame) => frames.push(frame));
    expect(budget.heldBytes).toBe(0);
    expect(frames.length).toBe(1);
    expect(frames[0]!.body.length).toBe(800);
    expect([frames[0]!.body[299], frames[0]!.body[300]]).toEqual([1, 2]);
  });

  test("over the budget: ELIMIT to the decoder that passes it; a discarded frame gives its bytes back", () => {
    const budget = new FrameBudget(1000);
    const first = new FrameDecoder(FRAME_BYTES_MAX);
    const second = new FrameDecoder(FRAME_BYTES_MAX);
    first.budget = second.budget = budget;
    first.push(concatBytes([header(1 + 5000), new Uint8Array(700)]), () => {});
    second.push(header(1 + 5000), () => {});
    let error: unknown = null;
    try {
      second.push(new Uint8Array(400), () => {});
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(WireError);
    expect((error as WireError).code).toBe("ELIMIT");
    expect((error as WireError).message).toContain("limit 1000");
    expect(budget.heldBytes).toBe(700);
    first.discard();
    expect(budget.heldBytes).toBe(0);
  });
});

describe("bad input is a WireError, never another exception", () => {
  test("every truncation of every message is refused", () => {
    for (const message of ALL_MESSAGES) {
      const frame = encodeMessage(message);
      const type = frame[4]!;
      for (let length = 0; length < frame.length - FRAME_HEADER_BYTES; length++) {
        const body = frame.slice(FRAME_HEADER_BYTES, FRAME_HEADER_BYTES + length);
        expectWireError(() => decodeMessage(type, body));
      }
    }
  });

  test("trailing bytes after any message are refused", () => {
    for (const message of ALL_MESSAGES) {
      const frame = encodeMessage(message);
      const body = concat([frame.subarray(FRAME_HEADER_BYTES), hex("00")]);
      expectWireError(() => decodeMessage(frame[4]!, body), /trailing/);
    }
  });

  test("unknown message types", () => {
    const unused = Math.max(...Object.values(MessageType)) + 1;
    for (const type of [0, unused, 0x80, 0xff]) expectWireError(() => decodeMessage(type, new Uint8Array(16)), /unknown message type/);
  });

  test("unknown op, reply, mode, query and role codes", () => {
    const header = "07 00 00 00 00 00 00 00 | 01 00 00 00 | 00 00 00 00";
    for (const op of ["00", "7f", "ff"]) expectWireError(() => decodeMessage(MessageType.request, hex(`${header} ${op}`)), /unknown operation/);
    const replyHeader = "07 00 00 00 00 00 00 00 | 01 00 00 00";
    for (const code of ["00", "80", "ff"]) {
      expectWireError(() => decodeMessage(MessageType.reply, hex(`${replyHeader} ${code} 00 00 00 00`)), /unknown reply/);
    }
    // acquire "a" with mode 3
    expectWireError(
      () => decodeMessage(MessageType.request, hex(`${header} 05 01 00 61 03 ${"00".repeat(16)}`)),
      /unknown hold mode/,
    );
    expectWireError(() => decodeMessage(MessageType.query, hex("01 00 00 00 | 04 | 00 00")), /unknown query/);
    expectWireError(() => decodeMessage(MessageType.hello, hex("50 53 54 52 01 00 03 00 00")), /unknown role/);
    expectWireError(() => decodeMessage(MessageType.hello, hex("50 53 54 51 01 00 01 00 00")), /magic/);
  });

  test("bad UTF-8 in a name, an error message or a JSON answer", () => {
    const header = "07 00 00 00 00 00 00 00 | 01 00 00 00 | 00 00 00 00";
    for (const bad of ["ff", "c3", "ed a0 80", "c0 80", "f8 88 80 80 80"]) {
      const length = (bad.replace(/ /g, "").length / 2).toString(16).padStart(2, "0");
      expectWireError(() => decodeMessage(MessageType.request, hex(`${header} 04 ${length} 00 ${bad}`)), /UTF-8/);
      expectWireError(() => decodeMessage(MessageType.error, hex(`01 00 45 ${length} 00 ${bad}`)), /UTF-8/);
      expectWireError(() => decodeMessage(MessageType.queryReply, hex(`01 00 00 00 ${length} 00 00 00 ${bad}`)), /UTF-8/);
    }
  });

  test("a page count that cannot fit in the frame is refused before looping", () => {
    const release = "07 00 00 00 00 00 00 00 | 01 00 00 00 | 00 00 00 00 | 06 | 01 00 00 00 00 00 00 00";
    expectWireError(() => decodeMessage(MessageType.request, hex(`${release} ff ff ff ff`)), /page count/);
    // Two pages announced, room for one header only.
    expectWireError(() => decodeMessage(MessageType.request, hex(`${release} 02 00 00 00 | 01 00 00 00 00 00 00 00`)));
    // A page blob longer than the frame.
    expectWireError(() => decodeMessage(MessageType.request, hex(`${release} 01 00 00 00 | 01 00 00 00 | ff ff ff ff`)), /truncated/);
    const reply = "07 00 00 00 00 00 00 00 | 01 00 00 00 | 01";
    expectWireError(() => decodeMessage(MessageType.reply, hex(`${reply} 00 00 00 20`)), /page count/);
    expectWireError(() => decodeMessage(MessageType.subscribe, hex("01 00 00 00 00 00 00 00 | ff ff ff ff")), /waiting count/);
  });

  test("an integer over 2^53 is refused", () => {
    expectWireError(() => decodeMessage(MessageType.heartbeat, hex("00 00 00 00 00 00 20 00")), /2\^53/);
    expect(decodeMessage(MessageType.heartbeat, hex("ff ff ff ff ff ff 1f 00 07 00 00 00"))).toEqual({ type: "heartbeat", body: { session: 2 ** 53 - 1, doneBelow: 7 } });
  });

  test("random mutations of valid frames decode or throw WireError, and what decodes re-encodes", () => {
    const random = prng(0x5eed);
    const frames = ALL_MESSAGES.map(encodeMessage);
    let decoded = 0;
    for (let round = 0; round < 5000; round++) {
      const frame = frames[Math.floor(random() * frames.length)]!.slice();
      const flips = 1 + Math.floor(random() * 3);
      for (let i = 0; i < flips; i++) {
        const at = FRAME_HEADER_BYTES + Math.floor(random() * (frame.length - FRAME_HEADER_BYTES));
        frame[at] = random() < 0.5 ? Math.floor(random() * 256) : frame[at]! ^ (1 << Math.floor(random() * 8));
      }
      let message: Message;
      try {
        message = decodeMessage(frame[4]!, frame.subarray(FRAME_HEADER_BYTES));
      } catch (error) {
        if (!(error instanceof WireError)) throw new Error(`round ${round}: ${String(error)} on ${toHex(frame)}`);
        continue;
      }
      decoded++;
      // A server that accepted a message must be able to send it on (forwarding, stored replies).
      expect(decodeFrame(encodeMessage(message))).toEqual(message);
    }
    expect(decoded).toBeGreaterThan(100);
  });
});

describe("Writer and Reader", () => {
  test("u53 splits into low then high little-endian words", () => {
    const writer = new Writer(8).u53(0x12_3456_789a_bcde);
    expect(toHex(writer.bytes)).toBe("de bc 9a 78 56 34 12 00");
  });
});
