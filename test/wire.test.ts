/**
 * The wire as a peer meets it: exact bytes for the messages that matter,
 * every message and every op/reply surviving a round trip, and bad input
 * refused with a WireError (never another exception, never a big allocation on
 * a lying length prefix). Frames cut anywhere in a TCP stream: frame.test.ts.
 */
import { describe, expect, test } from "bun:test";
import { PROTOCOL_VERSION, UPDATE_PARTS_BYTES_MIN } from "../src/constants";
import { FRAME_HEADER_BYTES, type Message, MessageType, OP_CODES, REPLY_CODES, WireError, Writer, concatBytes, decodeMessage, decodePeer, encodeMessage, encodePeer, PEER_TYPES, encodeMessageParts, encodePeerParts, encodeUpdate, encodeUpdateParts, packPages, utf8Length } from "../src/wire";
import { PEER_MESSAGES } from "./helpers/fuzz";
import { hex, toHex, decodeFrame, expectWireError, prng, ALL_OPS, ALL_REPLIES, HELLO_CLIENT, ALL_MESSAGES } from "./helpers/wire";

describe("golden bytes (u32 LE length of what follows, u8 type, body)", () => {
  test("hello from a client", () => {
    const expected = hex(`
      2a 00 00 00 | 01  # length 42, type hello
      50 53 54 52  # magic "PSTR"
      0b 00 | 01 | 00 00  # version 11, role client, sender 0
      ${"ab ".repeat(32)} # the client's nonce`);
    expect(PROTOCOL_VERSION).toBe(11);
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
    // Against the codec's own tables: a type added to the wire and not here fails (checkpoint
    // and checkpointed were missing while this compared with fixed counts).
    expect([...new Set(ALL_OPS.map((op): string => op.type))].sort()).toEqual(Object.keys(OP_CODES).sort());
    expect([...new Set(ALL_REPLIES.map((reply): string => reply.type))].sort()).toEqual(Object.keys(REPLY_CODES).sort());
  });

  test("every server-to-server message survives a round trip, and every peer type is covered", () => {
    const seen = new Set<string>();
    for (const message of PEER_MESSAGES) {
      const frame = encodePeer(message);
      expect(frame[FRAME_HEADER_BYTES - 1]).toBe(PEER_TYPES[message.type]);
      expect(decodePeer(frame[FRAME_HEADER_BYTES - 1]!, frame.subarray(FRAME_HEADER_BYTES))).toEqual(message);
      seen.add(message.type);
    }
    expect([...seen].sort()).toEqual(Object.keys(PEER_TYPES).sort());
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
      const body = concatBytes([frame.subarray(FRAME_HEADER_BYTES), hex("00")]);
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
