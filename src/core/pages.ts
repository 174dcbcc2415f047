/**
 * The segment's bytes on a server, in chunks allocated on first write, so a
 * server's memory follows the pages in use rather than the segment's size.
 * Each page also records the sequence number of its last write.
 */
const PAGES_PER_CHUNK = 64;

export class PageStore {
  private readonly chunks: (Uint8Array | undefined)[];
  /** Sequence number of the update that last wrote each page. */
  readonly pageSeq: Float64Array;
  private readonly zeroPage: Uint8Array;

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
    let chunk = this.chunks[chunkIndex];
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
      const chunk = this.chunks[Math.floor(page / PAGES_PER_CHUNK)];
      if (chunk) {
        const start = (page % PAGES_PER_CHUNK) * this.pageSize;
        chunk.fill(0, start, start + this.pageSize);
      }
      this.pageSeq[page] = seq;
    }
  }

  /** Bytes of memory held by allocated chunks. */
  residentBytes(): number {
    let chunks = 0;
    for (const chunk of this.chunks) if (chunk) chunks++;
    return chunks * PAGES_PER_CHUNK * this.pageSize;
  }
}
