/**
 * A simulated client's segment: a plain buffer with a hold mode per page, in
 * place of mmap and mprotect. A page written under a write hold is dirty when
 * its bytes differ from what they were when the hold began (the real segment
 * learns it from the first write fault). Writing a page not held for writing
 * is what mprotect would have stopped: the simulation fails on it.
 */
import type { SegmentMemory } from "../client/host";
import type { HoldMode } from "../memory/segment";

export class PageMemory implements SegmentMemory {
  readonly buffer: ArrayBuffer;
  private readonly bytes: Uint8Array;
  /** The bytes as of the last protect or page write: what "unchanged" means. */
  private readonly shadow: Uint8Array;
  private readonly modes: HoldMode[];
  private mapped = true;

  constructor(
    readonly size: number,
    readonly pageSize: number,
    /** Called when a page changed that was not held for writing. */
    private readonly fault: (message: string) => void,
  ) {
    this.buffer = new ArrayBuffer(size);
    this.bytes = new Uint8Array(this.buffer);
    this.shadow = new Uint8Array(size);
    this.modes = new Array(size / pageSize).fill("none");
  }

  view(offset: number, length: number): Uint8Array {
    this.checkRange(offset / this.pageSize, Math.ceil(length / this.pageSize));
    return new Uint8Array(this.buffer, offset, length);
  }

  offsetOf(view: ArrayBufferView): number {
    return this.mapped && view.buffer === this.buffer ? view.byteOffset : -1;
  }

  setName(firstPage: number, pageCount: number): void {
    this.checkRange(firstPage, pageCount);
  }

  writePagesStrided(firstPage: number, pageCount: number, bytes: Uint8Array, stride: number): void {
    this.checkRange(firstPage, pageCount);
    for (let i = 0; i < pageCount; i++) {
      const page = bytes.subarray(i * stride, i * stride + this.pageSize);
      this.bytes.set(page, (firstPage + i) * this.pageSize);
      this.shadow.set(page, (firstPage + i) * this.pageSize);
    }
  }

  zeroPages(firstPage: number, pageCount: number): void {
    this.checkRange(firstPage, pageCount);
    this.bytes.fill(0, firstPage * this.pageSize, (firstPage + pageCount) * this.pageSize);
    this.shadow.fill(0, firstPage * this.pageSize, (firstPage + pageCount) * this.pageSize);
  }

  protect(firstPage: number, pageCount: number, mode: HoldMode): void {
    this.checkRange(firstPage, pageCount);
    for (let page = firstPage; page < firstPage + pageCount; page++) {
      if (this.modes[page] !== "write") this.checkUnchanged(page);
      this.modes[page] = mode;
      // The bytes stay (private memory); their dirty marks clear.
      const at = page * this.pageSize;
      this.shadow.set(this.bytes.subarray(at, at + this.pageSize), at);
    }
  }

  dirtyPages(firstPage: number, pageCount: number): Uint32Array {
    this.checkRange(firstPage, pageCount);
    const dirty: number[] = [];
    for (let page = firstPage; page < firstPage + pageCount; page++) {
      if (this.modes[page] === "write" && this.changed(page)) dirty.push(page);
      else if (this.modes[page] !== "write") this.checkUnchanged(page);
    }
    return Uint32Array.from(dirty);
  }

  unmap(): void {
    this.mapped = false;
  }

  private changed(page: number): boolean {
    const at = page * this.pageSize;
    for (let i = at; i < at + this.pageSize; i++) if (this.bytes[i] !== this.shadow[i]) return true;
    return false;
  }

  private checkUnchanged(page: number): void {
    if (this.changed(page)) this.fault(`page ${page} changed while held ${this.modes[page]}: a write mprotect would have stopped`);
  }

  private checkRange(firstPage: number, pageCount: number): void {
    if (!this.mapped) this.fault("the segment was used after unmap");
    if (!Number.isInteger(firstPage) || firstPage < 0 || firstPage + pageCount > this.modes.length) this.fault(`pages [${firstPage}, +${pageCount}) are outside the segment`);
  }
}
