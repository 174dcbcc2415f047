/**
 * Hostile input (DESIGN §7 invariant 5, issue 7 item 4), the wire decoder alone: random
 * and mutated frames, cut at random points. Seeded and bounded; a long campaign, this
 * and the live servers' (fuzz.test.ts):
 *   FUZZ_FRAMES=1000000 FUZZ_SEED=42 bun test fuzz --timeout 600000
 * (default 100,000 frames, seed 1). A failure prints the seed and the frame.
 */
import { describe, expect, test } from "bun:test";
import { Random } from "../src/chaos/random";
import { FRAME_BYTES_MAX } from "../src/constants";
import {
  FRAME_HEADER_BYTES,
  type Frame,
  FrameDecoder,
  WireError,
  concatBytes,
  decodeMessage,
  decodePeer,
  encodeMessage,
  encodePeer,
} from "../src/wire";
import {
  FUZZ_FRAMES,
  FUZZ_SEED,
  chunk,
  hexDump,
  mutate,
} from "./helpers/fuzz";

describe("the decoder alone", () => {
  test(`${FUZZ_FRAMES} random and mutated frames, cut at random points: only WireError, same frames however cut, bounded time and memory`, () => {
    const random = new Random(FUZZ_SEED);
    const failures: string[] = [];
    const fail = (what: string) => {
      if (failures.length < 10) failures.push(`seed ${FUZZ_SEED}: ${what}`);
    };
    Bun.gc(true);
    const rssBefore = process.memoryUsage().rss / 2 ** 20;
    let frames = 0;
    let decodedClient = 0;
    let decodedPeer = 0;
    let refusedByFraming = 0;
    /** Slowest single step (a push of a whole stream, or a decode): with a 64 KiB limit, and with the real one. */
    const slowestMs = { small: 0, real: 0 };
    const started = performance.now();
    for (let round = 0; frames < FUZZ_FRAMES; round++) {
      const count = 1 + random.int(4);
      const parts: Uint8Array[] = [];
      for (let i = 0; i < count; i++) parts.push(mutate(random));
      frames += count;
      const stream = concatBytes(parts);
      // The real limit sometimes: a length under it makes the decoder allocate that much (lazily), which is slow to repeat.
      const limit = random.chance(0.99) ? 64 * 1024 : FRAME_BYTES_MAX;

      // The same stream in one chunk and in random chunks must give the same frames and the same end.
      const whole = framesOf(stream, [stream], limit);
      const cut = framesOf(stream, chunk(random, stream), limit);
      if (whole.error && !(whole.error instanceof WireError)) fail(`round ${round}: FrameDecoder threw ${String(whole.error)} on ${hexDump(stream)}`);
      if (cut.error && !(cut.error instanceof WireError)) fail(`round ${round}: FrameDecoder threw ${String(cut.error)} on ${hexDump(stream)}`);
      if (Boolean(whole.error) !== Boolean(cut.error) || whole.frames.length !== cut.frames.length || whole.idle !== cut.idle) {
        fail(`round ${round}: chunking changed the outcome (${whole.frames.length} vs ${cut.frames.length} frames) on ${hexDump(stream)}`);
      } else {
        for (let i = 0; i < whole.frames.length; i++) {
          const [a, b] = [whole.frames[i]!, cut.frames[i]!];
          if (a.type !== b.type || !Bun.deepEquals(a.body, b.body)) fail(`round ${round}: frame ${i} differs when the stream is cut, on ${hexDump(stream)}`);
        }
      }
      if (whole.error) refusedByFraming++;
      const which = limit === FRAME_BYTES_MAX ? "real" : "small";
      slowestMs[which] = Math.max(slowestMs[which], whole.ms, cut.ms);

      for (const frame of whole.frames) {
        const t0 = performance.now();
        const client = decodeBoth(frame, "client");
        const peer = decodeBoth(frame, "peer");
        slowestMs[which] = Math.max(slowestMs[which], performance.now() - t0);
        for (const result of [client, peer]) {
          if (result.kind === "other") fail(`round ${round}: ${result.what} decoder threw ${result.error} on type ${frame.type} body ${hexDump(frame.body)}`);
          if (result.kind === "roundtrip") fail(`round ${round}: ${result.what} message does not survive re-encoding: type ${frame.type} body ${hexDump(frame.body)}`);
        }
        if (client.kind === "ok") decodedClient++;
        if (peer.kind === "ok") decodedPeer++;
      }
    }
    const elapsedMs = performance.now() - started;
    Bun.gc(true);
    const rssAfter = process.memoryUsage().rss / 2 ** 20;
    console.log(
      `decoder fuzz, seed ${FUZZ_SEED}: ${frames} frames in ${Math.round(elapsedMs)} ms; ${decodedClient} decoded as client messages, ${decodedPeer} as server messages, ` +
        `${refusedByFraming} streams refused by framing; slowest step ${slowestMs.small.toFixed(1)} ms with a 64 KiB limit, ` +
        `${slowestMs.real.toFixed(1)} ms with the real limit (a length under it allocates that much); RSS ${rssBefore.toFixed(0)} → ${rssAfter.toFixed(0)} MiB`,
    );
    expect(failures).toEqual([]);
    expect(frames).toBeGreaterThanOrEqual(FUZZ_FRAMES);
    // Mutations must reach the decoders, not only the framing.
    expect(decodedClient + decodedPeer).toBeGreaterThan(frames / 100);
    // Bounds against a hang or a decoder that loops, not speed: a GC pause on a loaded
    // 2-core machine took one step of a small frame past 100 ms.
    expect(slowestMs.small).toBeLessThan(1000);
    expect(slowestMs.real).toBeLessThan(5000);
    expect(rssAfter - rssBefore).toBeLessThan(256);
  }, 120_000);
});

function framesOf(stream: Uint8Array, chunks: Uint8Array[], limit: number) {
  const decoder = new FrameDecoder(limit);
  const frames: Frame[] = [];
  let error: unknown = null;
  const t0 = performance.now();
  try {
    for (const part of chunks) decoder.push(part, (frame) => frames.push(frame));
  } catch (caught) {
    error = caught;
  }
  return { frames, error, idle: error ? false : decoder.idle, ms: performance.now() - t0, stream };
}

type DecodeResult = { kind: "ok" | "refused" } | { kind: "other"; what: string; error: string } | { kind: "roundtrip"; what: string };

/** Decodes a frame as a client message or a server message; what decodes must re-encode to the same message. */
function decodeBoth(frame: Frame, what: "client" | "peer"): DecodeResult {
  try {
    if (what === "client") {
      const message = decodeMessage(frame.type, frame.body);
      const again = encodeMessage(message);
      if (!Bun.deepEquals(decodeMessage(again[4]!, again.subarray(FRAME_HEADER_BYTES)), message)) return { kind: "roundtrip", what };
    } else {
      const message = decodePeer(frame.type, frame.body);
      const again = encodePeer(message);
      if (!Bun.deepEquals(decodePeer(again[4]!, again.subarray(FRAME_HEADER_BYTES)), message)) return { kind: "roundtrip", what };
    }
    return { kind: "ok" };
  } catch (error) {
    if (error instanceof WireError) return { kind: "refused" };
    return { kind: "other", what, error: String((error as Error)?.stack ?? error) };
  }
}
