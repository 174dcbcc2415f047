/**
 * What the client's mapped segment holds: the holds in use, found by their
 * view (its place in the segment gives the first page), and for each datum which version
 * of its bytes the segment keeps (an acquire names it: the tail then sends only
 * what changed). Pages are opened here in a hold's mode and closed when it
 * ends; when, and what the servers are told, is the session's (session.ts).
 */
import { PStoreError } from "../errors";
import { type Mode, type PageWrite, type Reply, packPages } from "../wire";
import { pageGaps, pageRuns } from "./helpers";
import type { SegmentMemory } from "./host";

export interface ClientHold {
  holdId: number;
  name: string;
  mode: Mode;
  firstPage: number;
  pageCount: number;
  createdSeq: number;
  /** The view handed out: if the session is lost, releasing it says so. */
  view: Uint8Array;
}

/** Which version of a datum's bytes the mapped segment holds. */
interface CacheEntry {
  firstPage: number;
  pageCount: number;
  size: number;
  createdSeq: number;
  version: number;
}

export class SegmentHolds {
  /** Current holds by first page. */
  private readonly holds = new Map<number, ClientHold>();
  private readonly cache = new Map<string, CacheEntry>();
  /** Views of holds voided with a lost session, to their datum's name: releasing one says why it is gone. */
  private readonly lostViews = new WeakMap<ArrayBufferView, string>();
  pagesReceived = 0;

  constructor(readonly segment: SegmentMemory) {}

  /** The version of `name`'s bytes we keep, as an acquire names it (-1: none). */
  known(name: string): { knownCreatedSeq: number; cachedVersion: number } {
    const cached = this.cache.get(name);
    return { knownCreatedSeq: cached ? cached.createdSeq : -1, cachedVersion: cached ? cached.version : -1 };
  }

  createdSeqOf(name: string): number {
    return this.cache.get(name)?.createdSeq ?? -1;
  }

  /**
   * Writes a grant's pages into the segment and opens them in its mode. Data whose
   * pages the grant's overlap (a deleted datum's) are no longer kept: `overwritten` names them.
   */
  mapGrant(reply: Extract<Reply, { type: "granted" }>, pages: PageWrite[]): { hold: ClientHold; overwritten: string[] } {
    const segment = this.segment;
    const pageSize = segment.pageSize;
    const firstPage = reply.offset / pageSize;
    const pageCount = Math.ceil(reply.size / pageSize);
    const overwritten = this.forgetOverlapping(reply.name, firstPage, pageCount);
    segment.setName(firstPage, pageCount, reply.name);
    // Opened first: a small write hold's pages are then read-write already and take the
    // grant's bytes with no mprotect (c/pstore_mem.c, pstore_fill_pages): one system call
    // for a pingpong or contended turn's grant instead of three.
    segment.protect(firstPage, pageCount, reply.mode);
    // A whole copy (no valid one here) leaves out the pages untouched since the datum's
    // creation: they are zeros (our pages may hold a deleted datum's bytes).
    if (reply.sendAfter < 0) for (const gap of pageGaps(pages, firstPage, pageCount)) segment.zeroPages(gap.firstPage, gap.count);
    for (const run of pageRuns(pages, pageSize)) segment.writePagesStrided(run.firstPage, run.count, run.bytes, run.stride);
    this.pagesReceived += pages.length;
    const view = segment.view(reply.offset, reply.size);
    const hold = { holdId: reply.holdId, name: reply.name, mode: reply.mode, firstPage, pageCount, createdSeq: reply.createdSeq, view };
    this.holds.set(firstPage, hold);
    this.cache.set(reply.name, { firstPage, pageCount, size: reply.size, createdSeq: reply.createdSeq, version: reply.version });
    return { hold, overwritten };
  }

  /** Opens the bytes we keep of `name` for a use granted locally; null when we no longer keep them. */
  openLocal(name: string, mode: Mode, holdId: number): ClientHold | null {
    const entry = this.cache.get(name);
    if (!entry) return null;
    this.segment.protect(entry.firstPage, entry.pageCount, mode);
    const view = this.segment.view(entry.firstPage * this.segment.pageSize, entry.size);
    const hold = { holdId, name, mode, firstPage: entry.firstPage, pageCount: entry.pageCount, createdSeq: entry.createdSeq, view };
    this.holds.set(entry.firstPage, hold);
    return hold;
  }

  /** Whether a use in progress rests on hold `holdId`. */
  isInUse(holdId: number): boolean {
    for (const hold of this.holds.values()) if (hold.holdId === holdId) return true;
    return false;
  }

  /** The hold `view` was handed out for, released in `mode`. */
  holdOf(view: ArrayBufferView, mode: Mode): ClientHold {
    const offset = ArrayBuffer.isView(view) ? this.segment.offsetOf(view) : -1;
    if (offset < 0) throw new PStoreError("EINVAL", "release takes the view that access returned");
    // Checked first: a lost view must not release a newer hold on the same pages.
    const lost = this.lostViews.get(view);
    if (lost !== undefined) {
      throw new PStoreError("ESTALE", `the hold on "${lost}" was lost with its session (the cluster was out of reach, or the session expired); access it again`);
    }
    const hold = this.holds.get(Math.floor(offset / this.segment.pageSize));
    if (!hold) throw new PStoreError("ESTALE", "this view holds nothing (already released?)");
    if (hold.mode !== mode) {
      const right = hold.mode === "read" ? "releaseRead" : "releaseReadWrite";
      throw new PStoreError("EINVAL", `"${hold.name}" is held for ${hold.mode === "read" ? "reading" : "writing"}: use ${right}`);
    }
    return hold;
  }

  /**
   * Ends a use: the hold leaves the table, and a write's changed pages are copied
   * now (into their wire encoding, in a buffer from `allocate`). The pages stay open until `shut`.
   */
  take(hold: ClientHold, allocate?: (bytes: number) => Uint8Array): PageWrite[] {
    const segment = this.segment;
    let pages: PageWrite[] = [];
    if (hold.mode === "write") {
      const held = segment.view(hold.firstPage * segment.pageSize, hold.pageCount * segment.pageSize);
      pages = packPages(segment.dirtyPages(hold.firstPage, hold.pageCount), segment.pageSize, held, hold.firstPage, allocate);
    }
    this.holds.delete(hold.firstPage);
    return pages;
  }

  /** Ends a write without shipping it: the hold leaves the table, its pages close, the local bytes are not the servers'. */
  abandon(hold: ClientHold): void {
    this.holds.delete(hold.firstPage);
    this.shut(hold);
    this.cache.delete(hold.name);
  }

  /** The pages of an ended use go back to no access. */
  shut(hold: ClientHold): void {
    this.segment.protect(hold.firstPage, hold.pageCount, "none");
  }

  /** The servers applied a release: the bytes we keep are of `version` (unless the datum was created again). */
  released(name: string, createdSeq: number, version: number): void {
    const entry = this.cache.get(name);
    if (entry && entry.createdSeq === createdSeq) entry.version = version;
  }

  /** Our bytes of `name` are not the servers' (a write they did not take, a delete). */
  forget(name: string): void {
    this.cache.delete(name);
  }

  /** The session was lost: its holds are void; bytes written under a write hold never reached the servers. */
  loseAll(): void {
    for (const hold of this.holds.values()) {
      this.lostViews.set(hold.view, hold.name);
      this.shut(hold);
      if (hold.mode === "write") this.cache.delete(hold.name);
    }
    this.holds.clear();
  }

  /** The store closes: every view goes back to no access. */
  closeAll(): void {
    for (const hold of this.holds.values()) this.shut(hold);
    this.holds.clear();
  }

  /** Pages now given to `name` may hold bytes of a deleted datum: that cache is gone. */
  private forgetOverlapping(name: string, firstPage: number, pageCount: number): string[] {
    const overwritten: string[] = [];
    for (const [other, entry] of this.cache) {
      if (other === name) continue;
      if (entry.firstPage < firstPage + pageCount && firstPage < entry.firstPage + entry.pageCount) {
        this.cache.delete(other);
        overwritten.push(other);
      }
    }
    return overwritten;
  }
}
