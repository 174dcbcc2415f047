/** Pure helpers of the client store: grant page runs. */
import type { PageWrite } from "../wire";

/**
 * A grant's pages as runs of consecutive pages that lie the same distance
 * apart in one buffer (the frame, between their headers): one copy into the
 * segment per run instead of one per page (each opening and closing its page).
 */
export function* pageRuns(pages: PageWrite[], pageSize: number): Generator<{ firstPage: number; count: number; bytes: Uint8Array; stride: number }> {
  let start = 0;
  while (start < pages.length) {
    const first = pages[start]!;
    const second = pages[start + 1];
    const stride = second ? second.bytes.byteOffset - first.bytes.byteOffset : pageSize;
    let end = start + 1;
    // Pages closer than a page apart overlap: no run then.
    while (stride >= pageSize && end < pages.length) {
      const page = pages[end]!;
      const apart = end - start;
      const inRun = page.page === first.page + apart && page.bytes.buffer === first.bytes.buffer && page.bytes.byteOffset === first.bytes.byteOffset + apart * stride;
      if (!inRun || page.bytes.length !== pageSize) break;
      end++;
    }
    const count = end - start;
    const length = (count - 1) * stride + first.bytes.length;
    yield { firstPage: first.page, count, bytes: new Uint8Array(first.bytes.buffer, first.bytes.byteOffset, length), stride: count > 1 ? stride : pageSize };
    start = end;
  }
}

/** The runs of pages of [firstPage, firstPage + pageCount) that `pages` (ascending) leaves out. */
export function* pageGaps(pages: PageWrite[], firstPage: number, pageCount: number): Generator<{ firstPage: number; count: number }> {
  let next = firstPage;
  for (const { page } of pages) {
    if (page > next) yield { firstPage: next, count: page - next };
    next = Math.max(next, page + 1);
  }
  const end = firstPage + pageCount;
  if (end > next) yield { firstPage: next, count: end - next };
}
