/**
 * Framing: frames cut at any point of a TCP stream, large frames assembled in a
 * buffer of their own, and a budget that a server's clients share.
 */
import { describe, expect, test } from "bun:test";
import { FRAME_ASSEMBLE_BYTES_MIN, FRAME_BYTES_MAX } from "../src/constants";
import { FRAME_HEADER_BYTES, type Frame, FrameBudget, FrameDecoder, type Message, MessageType, WireError, concatBytes, decodeMessage, encodeMessage, writeFrameHeader } from "../src/wire";
import { hex, expectWireError, prng, ALL_MESSAGES } from "./helpers/wire";

function decodeAll(decoder: FrameDecoder, chunks: Uint8Array[]): Message[] {
  const frames: Frame[] = [];
  for (const chunk of chunks) decoder.push(chunk, (frame) => frames.push(frame));
  // Decoded only at the end: frame bodies must stay valid while later chunks arrive.
  return frames.map((frame) => decodeMessage(frame.type, frame.body));
}

describe("FrameDecoder", () => {
  const messages = ALL_MESSAGES.filter((m) => m.type !== "welcome" || m.body.chain.length > 0).slice(0, 15);
  const stream = concatBytes(messages.map(encodeMessage));

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
    const atLimit = concatBytes([hex("64 00 00 00 05"), body]); // length 100 = type + 99
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
