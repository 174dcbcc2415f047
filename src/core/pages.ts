/**
 * The segment's bytes on a server, in chunks allocated on first write, so a
 * server's memory follows the pages in use rather than the segment's size.
 * Each page also records the sequence number of its last write.
 */
const PAGES_PER_CHUNK = 64;

/** The pages as they were at one moment (a checkpoint being written): chunks shared with the store until it writes them. */
export interface FrozenPages {
  read(page: number): Uint8Array;
  seqOf(page: number): number;
}

export class PageStore {
  private readonly chunks: (Uint8Array | undefined)[];
  /** Sequence number of the update that last wrote each page. */
  readonly pageSeq: Float64Array;
  private readonly zeroPage: Uint8Array;
  /** Chunks a frozen view still reads: a write copies such a chunk first (copy on write). */
  private readonly shared = new Set<Uint8Array>();

  constructor(readonly pageSize: number, readonly pageCount: number) {
    this.chunks = new Array(Math.ceil(pageCount / PAGES_PER_CHUNK));
    this.pageSeq = new Float64Array(pageCount);
    this.zeroPage = new Uint8Array(pageSize);
  }

  /** The page's bytes (a view; zeros for a page never written). Do not modify. */
  read(page: number): Uint8Array {
    const chunk = this.chunks[Math.floor(page / PAGES_PER_CHUNK)];
    if (!chunk) return this.zeroPage;
    const start = (page % PAGES_PER_CHUNK) * this.pageSize;
    return chunk.subarray(start, start + this.pageSize);
  }

  write(page: number, bytes: Uint8Array, seq: number): void {
    const chunkIndex = Math.floor(page / PAGES_PER_CHUNK);
    let chunk = this.writable(chunkIndex);
    if (!chunk) {
      chunk = new Uint8Array(PAGES_PER_CHUNK * this.pageSize);
      this.chunks[chunkIndex] = chunk;
    }
    chunk.set(bytes, (page % PAGES_PER_CHUNK) * this.pageSize);
    this.pageSeq[page] = seq;
  }

  /** Zeroes a run of pages (a new datum starts as zeros) and stamps them with `seq`. */
  zero(first: number, count: number, seq: number): void {
    for (let page = first; page < first + count; page++) {
      const chunk = this.writable(Math.floor(page / PAGES_PER_CHUNK));
      if (chunk) {
        const start = (page % PAGES_PER_CHUNK) * this.pageSize;
        chunk.fill(0, start, start + this.pageSize);
      }
      this.pageSeq[page] = seq;
    }
  }

  /**
   * The pages as they are now, for as long as `thaw` is not called: the store
   * keeps changing, copying a chunk the first time it writes it, so a
   * checkpoint costs the memory of what changes while it is written, not a
   * copy of every page. One frozen view at a time.
   */
  freeze(): { pages: FrozenPages; thaw: () => void } {
    if (this.shared.size > 0) throw new Error("pages: a frozen view is already open");
    const chunks = [...this.chunks];
    for (const chunk of chunks) if (chunk) this.shared.add(chunk);
    const pageSeq = this.pageSeq.slice();
    const { pageSize, zeroPage } = this;
    const pages: FrozenPages = {
      read(page) {
        const chunk = chunks[Math.floor(page / PAGES_PER_CHUNK)];
        if (!chunk) return zeroPage;
        const start = (page % PAGES_PER_CHUNK) * pageSize;
        return chunk.subarray(start, start + pageSize);
      },
      seqOf: (page) => pageSeq[page]!,
    };
    return { pages, thaw: () => this.shared.clear() };
  }

  /** The chunk, copied first if a frozen view shares it. */
  private writable(chunkIndex: number): Uint8Array | undefined {
    const chunk = this.chunks[chunkIndex];
    if (!chunk || !this.shared.has(chunk)) return chunk;
    this.shared.delete(chunk);
    const copy = chunk.slice();
    this.chunks[chunkIndex] = copy;
    return copy;
  }

  /** Bytes of memory held by allocated chunks. */
  residentBytes(): number {
    let chunks = 0;
    for (const chunk of this.chunks) if (chunk) chunks++;
    return chunks * PAGES_PER_CHUNK * this.pageSize;
  }
}
