/**
 * The client's mapping of the pstore segment: one PROT_NONE region whose
 * pages C opens per hold. Reading without a hold, or writing under a read
 * hold, kills the process with a line naming the datum (c/pstore_fault.c);
 * under a write hold the first write to a page marks it dirty, so a release
 * ships only the pages that changed (and a large write hold opens its pages
 * only as they are touched, so a release closes only those).
 *
 * Not thread-safe: use a segment from the thread that mapped it.
 */
import { NAME_BYTES_MAX, PAGE_SIZE, SEGMENT_SIZE_MAX, SEGMENT_VIEW_BUFFERS_MAX } from "../constants.ts";
import { PStoreError } from "../errors.ts";
import * as native from "./native.ts";

export type HoldMode = "none" | "read" | "write";

const HOLD_CODES: Record<HoldMode, number> = {
  none: native.HOLD_NONE,
  read: native.HOLD_READ,
  write: native.HOLD_WRITE,
};


const encoder = new TextEncoder();

export class MappedSegment {
  readonly size: number;
  readonly pageSize: number;
  readonly pageCount: number;
  readonly #seg: number;
  /** The mapping's address: a view is ours when its bytes lie within [base, base + size). */
  readonly #base: number;
  /**
   * An ArrayBuffer per range asked for (a datum's pages), by offset: never one over the whole
   * mapping. The collector counts every live ArrayBuffer's length as heap, so one of a 1 GiB
   * segment let a client allocate ~2 GiB of garbage between collections (its RSS grew by
   * 145 MiB/s under cached reads, docs/benchmarks.md session 12); data's own buffers count
   * what the client uses.
   */
  readonly #buffers = new Map<number, ArrayBuffer>();
  #mapped = true;
  /** Reused by dirtyPages; grows to the largest range asked for. */
  #dirtyScratch = new Uint32Array(0);

  private constructor(seg: number, size: number, pageSize: number) {
    this.#seg = seg;
    this.size = size;
    this.pageSize = pageSize;
    this.pageCount = size / pageSize;
    this.#base = native.segmentBase(seg);
  }

  /**
   * mmap(PROT_NONE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE) of `size` bytes.
   * The first segment of the process installs the SIGSEGV handler, chaining
   * JavaScriptCore's. At most 64 segments per process, each at most 4 GiB.
   */
  static map(size: number, pageSize: number = PAGE_SIZE): MappedSegment {
    MappedSegment.#checkGeometry(size, pageSize);
    return MappedSegment.#wrap(native.segmentMap(size / pageSize, pageSize), size, pageSize);
  }

  /**
   * The pstore agent's mapping of the open file `fd` (at least `size` bytes),
   * MAP_SHARED with the C program it serves: bytes granted here are the
   * program's, and pages it wrote are here. Readable throughout: protect()
   * changes the holds' bookkeeping only (modes, dirty bits), since the agent
   * only reads through it and the program's own mapping enforces the holds;
   * that saves two mprotects a hold on the program's every cycle.
   */
  static mapSharedReadable(fd: number, size: number, pageSize: number = PAGE_SIZE): MappedSegment {
    MappedSegment.#checkGeometry(size, pageSize);
    return MappedSegment.#wrap(native.segmentMapFdReadable(size / pageSize, pageSize, fd), size, pageSize);
  }

  static #checkGeometry(size: number, pageSize: number): void {
    if (!Number.isSafeInteger(pageSize) || pageSize <= 0 || pageSize % PAGE_SIZE !== 0) {
      throw new PStoreError("EINVAL", `page size ${pageSize} must be a positive multiple of ${PAGE_SIZE}`);
    }
    if (!Number.isSafeInteger(size) || size <= 0 || size % pageSize !== 0) {
      throw new PStoreError("EINVAL", `segment size ${size} must be a positive multiple of the page size ${pageSize}`);
    }
    if (size > SEGMENT_SIZE_MAX) {
      throw new PStoreError("EINVAL", `segment size ${size} is over ${SEGMENT_SIZE_MAX} bytes, the largest ArrayBuffer Bun can make`);
    }
  }

  static #wrap(seg: number, size: number, pageSize: number): MappedSegment {
    try {
      return new MappedSegment(seg, size, pageSize);
    } catch (error) {
      native.segmentUnmap(seg);
      throw error;
    }
  }

  view(offset: number, length: number): Uint8Array {
    this.#checkMapped();
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.size) {
      throw new PStoreError("EINVAL", `bytes [${offset}, ${offset}+${length}) are outside the segment of ${this.size} bytes`);
    }
    return new Uint8Array(this.#bufferAt(offset, length), 0, length);
  }

  /** Where `view` starts in the segment, or -1 when its bytes are not (all) in it. */
  offsetOf(view: ArrayBufferView): number {
    if (!this.#mapped) return -1;
    const offset = native.addressOf(view) - this.#base;
    return offset >= 0 && offset + view.byteLength <= this.size ? offset : -1;
  }

  /** The buffer kept for the whole pages from `offset` that hold `length` bytes (a datum's, a hold's). */
  #bufferAt(offset: number, length: number): ArrayBuffer {
    const bytes = Math.min(Math.ceil(length / this.pageSize) * this.pageSize, this.size - offset);
    const kept = this.#buffers.get(offset);
    if (kept && kept.byteLength >= bytes) return kept;
    // Data deleted and created elsewhere leave buffers behind: past the bound, start over.
    if (this.#buffers.size >= SEGMENT_VIEW_BUFFERS_MAX) this.#buffers.clear();
    const buffer = native.bufferAt(this.#base + offset, Math.max(bytes, 1));
    this.#buffers.set(offset, buffer);
    return buffer;
  }

  /** Labels the pages with a datum name for fault messages; "" clears the label. */
  setName(firstPage: number, pageCount: number, name: string): void {
    this.#checkRange(firstPage, pageCount);
    const bytes = encoder.encode(name);
    if (bytes.length > NAME_BYTES_MAX) {
      throw new PStoreError("EINVAL", `name "${name}" has ${bytes.length} UTF-8 bytes; at most ${NAME_BYTES_MAX}`);
    }
    native.setName(this.#seg, firstPage, pageCount, bytes);
  }

  /** Copies whole pages in whatever their protection; leaves dirty bits alone. */
  writePages(firstPage: number, bytes: Uint8Array): void {
    if (bytes.length % this.pageSize !== 0) {
      throw new PStoreError("EINVAL", `writePages takes whole pages: ${bytes.length} bytes is not a multiple of ${this.pageSize}`);
    }
    this.writePagesStrided(firstPage, bytes.length / this.pageSize, bytes, this.pageSize);
  }

  /** As writePages, with page i of the run at bytes[i * stride] (a grant's pages, apart in its frame). */
  writePagesStrided(firstPage: number, pageCount: number, bytes: Uint8Array, stride: number): void {
    if (!Number.isSafeInteger(stride) || stride < this.pageSize || (pageCount > 0 && bytes.length < (pageCount - 1) * stride + this.pageSize)) {
      throw new PStoreError("EINVAL", `${pageCount} pages ${stride} bytes apart do not fit in ${bytes.length} bytes`);
    }
    this.#checkRange(firstPage, pageCount);
    native.writePages(this.#seg, firstPage, pageCount, bytes, stride);
  }

  /** Makes the pages zeros whatever their protection (a grant's pages untouched since the datum's creation). */
  zeroPages(firstPage: number, pageCount: number): void {
    this.#checkRange(firstPage, pageCount);
    native.zeroPages(this.#seg, firstPage, pageCount);
  }

  /** Sets the hold mode of the pages and clears their dirty bits. */
  protect(firstPage: number, pageCount: number, mode: HoldMode): void {
    this.#checkRange(firstPage, pageCount);
    const code = HOLD_CODES[mode];
    if (code === undefined) throw new PStoreError("EINVAL", `hold mode "${mode}" is not none, read or write`);
    native.protect(this.#seg, firstPage, pageCount, code);
  }

  /** Marks write-held pages dirty: another process wrote them through its mapping of a shared segment. */
  markDirty(pages: Uint32Array): void {
    this.#checkMapped();
    native.markDirty(this.#seg, pages);
  }

  /**
   * Absolute indices of the dirty pages of the range, ascending. Every page
   * written under the write hold is there; when the process ran short of
   * mappings (vm.max_map_count) a whole write-held run is (faultCounts().widened).
   */
  dirtyPages(firstPage: number, pageCount: number): Uint32Array {
    this.#checkRange(firstPage, pageCount);
    if (this.#dirtyScratch.length < pageCount) this.#dirtyScratch = new Uint32Array(pageCount);
    const found = native.dirtyPages(this.#seg, firstPage, pageCount, this.#dirtyScratch);
    return this.#dirtyScratch.slice(0, found);
  }

  /** munmap: the segment, its buffer and every view over it are dead afterwards. */
  unmap(): void {
    this.#checkMapped();
    this.#mapped = false;
    this.#buffers.clear();
    native.segmentUnmap(this.#seg);
  }

  #checkMapped(): void {
    if (!this.#mapped) throw new PStoreError("ECLOSED", "the segment was unmapped");
  }

  #checkRange(firstPage: number, pageCount: number): void {
    this.#checkMapped();
    const valid =
      Number.isSafeInteger(firstPage) &&
      Number.isSafeInteger(pageCount) &&
      firstPage >= 0 &&
      pageCount >= 0 &&
      firstPage + pageCount <= this.pageCount;
    if (!valid) {
      throw new PStoreError("EINVAL", `pages [${firstPage}, ${firstPage}+${pageCount}) are outside the segment of ${this.pageCount} pages`);
    }
  }
}

/** Fault counters since start-up (see FaultCounts), for tests and benchmarks. */
export const faultCounts = native.faultCounts;
export type { FaultCounts } from "./native.ts";
