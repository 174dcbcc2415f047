/**
 * The client's buffer for large write releases (src/client/pack_buffer.ts): the next large
 * release packs into the same memory (no fresh pages to fault in), a buffer comes back only
 * if it was lent, and an idle client lets it go.
 */
import { describe, expect, test } from "bun:test";
import type { ClientHost, TimerHandle } from "../src/client/host";
import { PackBuffer } from "../src/client/pack_buffer";
import { PACK_BUFFER_BYTES_MIN, PACK_BUFFER_IDLE_MS } from "../src/constants";
import { packPages, packedSections } from "../src/wire";

/** Virtual clock and `every` timers; nothing else of a host is used. */
function clock(): { host: ClientHost; advance(ms: number): void; live(): number } {
  let now = 0;
  const timers: { at: number; every: number; fn: () => void; live: boolean }[] = [];
  const host = {
    nowMs: () => now,
    every(ms: number, fn: () => void): TimerHandle {
      const timer = { at: now + ms, every: ms, fn, live: true };
      timers.push(timer);
      return { cancel: () => (timer.live = false) };
    },
  } as unknown as ClientHost;
  return {
    host,
    advance(ms) {
      const end = now + ms;
      for (;;) {
        const due = timers.filter((t) => t.live && t.at <= end).sort((a, b) => a.at - b.at)[0];
        if (!due) break;
        now = due.at;
        due.at += due.every;
        due.fn();
      }
      now = end;
    },
    live: () => timers.filter((t) => t.live).length,
  };
}

const LARGE = PACK_BUFFER_BYTES_MIN + 4096;

describe("pack buffer", () => {
  test("a large release's buffer, given back, is the next one's; a smaller large release uses part of it", () => {
    const { host } = clock();
    const buffers = new PackBuffer(host);
    const first = buffers.take(LARGE);
    expect(first.length).toBe(LARGE);
    buffers.giveBack(first);
    expect(buffers.keptBytes).toBe(LARGE);
    const second = buffers.take(PACK_BUFFER_BYTES_MIN);
    expect(second.buffer).toBe(first.buffer);
    expect(second.length).toBe(PACK_BUFFER_BYTES_MIN);
    // Lent out: the next release meanwhile gets a buffer of its own.
    expect(buffers.keptBytes).toBe(0);
    expect(buffers.take(LARGE).buffer).not.toBe(first.buffer);
  });

  test("small releases and buffers it did not lend never enter it", () => {
    const { host } = clock();
    const buffers = new PackBuffer(host);
    buffers.giveBack(buffers.take(4096));
    buffers.giveBack(new Uint8Array(LARGE));
    expect(buffers.keptBytes).toBe(0);
  });

  test("packPages packs into the buffer given, which the encoding then names", () => {
    const { host } = clock();
    const buffers = new PackBuffer(host);
    const page = 4096;
    const pageCount = Math.ceil(PACK_BUFFER_BYTES_MIN / page);
    const source = new Uint8Array(pageCount * page).map((_, i) => i % 251);
    const indices = Uint32Array.from({ length: pageCount }, (_, i) => 10 + i);
    const pages = packPages(indices, page, source, 10, buffers.take);
    const section = packedSections.get(pages)!;
    expect(section.buffer.byteLength).toBeGreaterThanOrEqual(PACK_BUFFER_BYTES_MIN);
    expect(pages[3]!.page).toBe(13);
    expect(pages[3]!.bytes).toEqual(source.subarray(3 * page, 4 * page));
    buffers.giveBack(section);
    // The next release writes over it: the same memory, its new bytes.
    const again = packPages(indices, page, source.map((b) => b ^ 0xff), 10, buffers.take);
    expect(packedSections.get(again)!.buffer).toBe(section.buffer);
    expect(again[3]!.bytes[0]).toBe(source[3 * page]! ^ 0xff);
  });

  test("it goes once no large release came for the idle time, and its timer with it", () => {
    const { host, advance, live } = clock();
    const buffers = new PackBuffer(host);
    buffers.giveBack(buffers.take(LARGE));
    advance(PACK_BUFFER_IDLE_MS / 2);
    buffers.giveBack(buffers.take(LARGE)); // used again: the idle time starts over
    advance(PACK_BUFFER_IDLE_MS * 0.9);
    expect(buffers.keptBytes).toBe(LARGE);
    advance(PACK_BUFFER_IDLE_MS * 1.2);
    expect(buffers.keptBytes).toBe(0);
    expect(live()).toBe(0);
  });
});
