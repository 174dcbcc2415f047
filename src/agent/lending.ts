/**
 * The agent's side of the lending table (c/pstore_lend.h: keep the layout in
 * step). After a program's release, the agent asks its client store for a use
 * of the datum granted locally (a cached grant: no message) and lends that
 * use to the program through memory both map: the program takes it and, if it
 * wrote nothing, returns it with a compare-and-swap of the slot's state word,
 * so a read-cached datum costs no message at all, and a write costs only its
 * release. The client store stays the one authority: every use the program
 * makes is inside a use the store granted (its fencing id, its lease), and a
 * recall reaches `recalling` before the store answers it, which takes the
 * lent use back if the program is not in it, or marks the slot so that the
 * program's release comes here and the store gives the grant back.
 */
import { LEND_LEASE_REFRESH_MS } from "../constants.ts";
import type { GrantLender } from "../client/store.ts";
import type { Store } from "../client/types.ts";
import { PStoreError } from "../errors.ts";
import { type MappedSegment, type SharedRegion, monotonicMs } from "../memory/index.ts";

export const LEND_SLOTS = 64;
export const LEND_TABLE_BYTES = 24576;
const HEADER_BYTES = 64;
const SLOT_BYTES = 320;
/** Field offsets in a slot (struct lend_slot). */
const STATE = 0;
const MODE = 4;
const FIRST_PAGE = 8;
const PAGE_COUNT = 12;
const OFFSET = 16;
const SIZE = 24;
const NAME_LEN = 32;
const NAME = 34;

const EMPTY = 0;
const FREE = 1;
const USED_READ = 2;
const USED_WRITE = 3;
const KIND_MASK = 3;
const RECALLED = 4;
const GENERATIONS = 2 ** 29;

const encoder = new TextEncoder();

interface Lent {
  name: string;
  slot: number;
  /** The store's use that the program takes and returns. */
  view: Uint8Array;
  mode: "read" | "write";
  /** The view's place in the segment (the program's pointer is its mapping plus this). */
  offset: number;
}

/** What an access of a lent datum gets: the slot, its state word while the program is in it. */
export interface HandOver {
  offset: number;
  size: number;
  slot: number;
  word: number;
}

export class Lending {
  private readonly byName = new Map<string, Lent>();
  private readonly byOffset = new Map<number, Lent>();
  private readonly freeSlots: number[] = [];
  private readonly timer: ReturnType<typeof setInterval>;
  /** The table is about to be unmapped: nothing is written to it any more. */
  private closed = false;

  constructor(
    private readonly table: SharedRegion,
    private readonly store: Store & GrantLender,
    private readonly segment: MappedSegment,
  ) {
    for (let slot = LEND_SLOTS - 1; slot >= 0; slot--) this.freeSlots.push(slot);
    // The store renews its lease with every answer (heartbeats too): the program sees it within this.
    this.timer = setInterval(() => this.publishLease(), LEND_LEASE_REFRESH_MS);
    this.timer.unref?.();
  }

  /** The lease, in the clock the program reads (CLOCK_MONOTONIC µs); 0 stops every take. */
  publishLease(): void {
    if (this.closed) return;
    const leftMs = this.store.localGrantsUntilMs() - performance.now();
    this.table.store64(0, leftMs > 0 ? (monotonicMs() + leftMs) * 1000 : 0);
  }

  /** Lends `name` if the store grants a use of it here, with no message. */
  lend(name: string): void {
    if (this.closed || this.byName.has(name) || this.freeSlots.length === 0) return;
    let mode: "read" | "write" = "write";
    let view = this.store.accessLocal(name, "write");
    if (!view) {
      mode = "read";
      view = this.store.accessLocal(name, "read");
    }
    if (!view) return;
    const slot = this.freeSlots.pop()!;
    // Where the program finds the bytes: the view's place in the segment (its own buffer starts there).
    const offset = this.segment.offsetOf(view);
    const lent: Lent = { name, slot, view, mode, offset };
    const at = HEADER_BYTES + slot * SLOT_BYTES;
    const pageSize = this.segment.pageSize;
    const bytes = encoder.encode(name);
    const fields = this.table.view;
    fields.setUint32(at + MODE, mode === "write" ? 2 : 1, true);
    fields.setUint32(at + FIRST_PAGE, offset / pageSize, true);
    fields.setUint32(at + PAGE_COUNT, Math.ceil(view.length / pageSize), true);
    setU64(fields, at + OFFSET, offset);
    setU64(fields, at + SIZE, view.length);
    fields.setUint16(at + NAME_LEN, bytes.length, true);
    this.table.bytes.set(bytes, at + NAME);
    this.byName.set(name, lent);
    this.byOffset.set(offset, lent);
    this.publishLease();
    // Published last: the program reads the fields only after it sees FREE.
    this.table.store32(at + STATE, nextGeneration(this.table.load32(at + STATE)) | FREE);
  }

  /** Before the store answers a recall of `name`: take the lent use back, or have the program's release come here. */
  recalling(name: string): void {
    const lent = this.byName.get(name);
    if (!lent) return;
    const state = HEADER_BYTES + lent.slot * SLOT_BYTES + STATE;
    for (;;) {
      const word = this.table.load32(state);
      const kind = word & KIND_MASK;
      if (kind === FREE) {
        if (this.table.cas32(state, word, nextGeneration(word) | EMPTY) !== word) continue;
        // Ended now, before the store decides: it gives the grant back (the program never had it).
        void this.takenBack(lent);
        return;
      }
      if (kind === EMPTY || (word & RECALLED) !== 0) return;
      if (this.table.cas32(state, word, word | RECALLED) === word) return;
    }
  }

  /**
   * An access by the program that did not find `name` idle in the table (it
   * raced a lend, or wants more than a read lend): the lent use if it serves,
   * else null after taking it back. EDEADLK when the program is in it.
   */
  async handOver(name: string, mode: "read" | "write"): Promise<HandOver | null> {
    const lent = this.byName.get(name);
    if (!lent) return null;
    const state = HEADER_BYTES + lent.slot * SLOT_BYTES + STATE;
    const word = this.table.load32(state);
    if ((word & KIND_MASK) !== FREE) throw new PStoreError("EDEADLK", `this program already holds or waits for "${name}": release it first`);
    const serves = (lent.mode === "write" || mode === "read") && this.store.localGrantsUntilMs() > performance.now();
    if (serves) {
      const used = (word & ~KIND_MASK) | (mode === "write" ? USED_WRITE : USED_READ);
      if (this.table.cas32(state, word, used) === word) {
        this.publishLease();
        return { offset: lent.offset, size: lent.view.length, slot: lent.slot, word: used >>> 0 };
      }
    } else if (this.table.cas32(state, word, nextGeneration(word) | EMPTY) === word) {
      await this.takenBack(lent);
      return null;
    }
    // The word changed under us: a recall took it back meanwhile, or the program took it.
    return this.handOver(name, mode);
  }

  /** The lent use at `offset`, if one is. */
  lentAt(offset: number): { name: string; view: Uint8Array } | undefined {
    return this.byOffset.get(offset);
  }

  /** Takes back an idle lend of `name` (before a delete); EBUSY when the program is in it. */
  async takeBack(name: string): Promise<void> {
    const lent = this.byName.get(name);
    if (!lent) return;
    const state = HEADER_BYTES + lent.slot * SLOT_BYTES + STATE;
    const word = this.table.load32(state);
    if ((word & KIND_MASK) !== FREE) throw new PStoreError("EBUSY", `"${name}" is held by this program; delete it once it is released`);
    if (this.table.cas32(state, word, nextGeneration(word) | EMPTY) !== word) return this.takeBack(name);
    await this.takenBack(lent);
  }

  /**
   * The program ended a lent use with a message (it wrote pages, or a recall
   * is pending): the store's use ends with those pages (the caller lends the
   * datum again). False when nothing is lent at `offset`.
   */
  async returned(offset: number, pages: Uint32Array): Promise<boolean> {
    const lent = this.byOffset.get(offset);
    if (!lent) return false;
    const state = HEADER_BYTES + lent.slot * SLOT_BYTES + STATE;
    const word = this.table.load32(state);
    const kind = word & KIND_MASK;
    if (kind !== USED_READ && kind !== USED_WRITE) throw new PStoreError("ESTALE", "the program released a lent hold it was not in");
    if (pages.length > 0 && (kind !== USED_WRITE || lent.mode !== "write")) throw new PStoreError("EPROTO", "pages written under a read hold");
    // The program touches the slot no more (it sent this instead of swapping it back).
    this.table.store32(state, nextGeneration(word) | EMPTY);
    this.segment.markDirty(pages);
    await this.giveBack(lent);
    return true;
  }

  close(): void {
    clearInterval(this.timer);
    this.table.store64(0, 0);
    this.closed = true;
  }

  /**
   * Ends an idle lent use the agent took back, before a call of its own on the datum: a
   * failure (the session lost with its holds) is that call's to report, not this one's.
   */
  private takenBack(lent: Lent): Promise<void> {
    return this.giveBack(lent).catch(() => {});
  }

  /** Ends the store's lent use (the slot is EMPTY already): a write use ships the pages marked dirty. */
  private giveBack(lent: Lent): Promise<void> {
    this.byName.delete(lent.name);
    this.byOffset.delete(lent.offset);
    this.freeSlots.push(lent.slot);
    return lent.mode === "read" ? this.store.releaseRead(lent.view) : this.store.releaseReadWrite(lent.view);
  }
}

/** Two halves: no BigInt on the hot path (offsets and sizes are below 2^53). */
function setU64(view: DataView, at: number, value: number): void {
  view.setUint32(at, value % 2 ** 32, true);
  view.setUint32(at + 4, Math.floor(value / 2 ** 32), true);
}

function nextGeneration(word: number): number {
  return (((word >>> 3) + 1) % GENERATIONS) * 8;
}
