/**
 * Pages on the wire: the list of (page index, bytes) a write release or a grant carries.
 * Page bytes travel raw; a release's pages are packed once into their encoding (packPages).
 */
import { type Reader, type Writer, WireError } from "./codec";

/** A page of a write release: its absolute index in the segment and its bytes. */
export interface PageWrite {
  page: number;
  bytes: Uint8Array;
}

export function pagesSize(pages: PageWrite[]): number {
  let size = 4;
  for (const page of pages) size += 4 + 4 + page.bytes.length;
  return size;
}

/** Page lists made by packPages, and the buffer that already holds their encoding. */
export const packedSections = new WeakMap<PageWrite[], Uint8Array>();

/**
 * Copies the pages `indices` of `source` (pages of `pageSize` bytes, the first
 * of them page `sourceFirstPage`) straight
 * into their wire encoding, one buffer for all: a release ships its dirty
 * pages with this one copy (encodeMessageParts sends the buffer as it is).
 * The returned list must not be changed. `allocate` gives the buffer (packedSections finds it again).
 */
export function packPages(
  indices: ArrayLike<number>,
  pageSize: number,
  source: Uint8Array,
  sourceFirstPage = 0,
  allocate: (bytes: number) => Uint8Array = (bytes) => new Uint8Array(bytes),
): PageWrite[] {
  const section = allocate(4 + indices.length * (8 + pageSize));
  const view = new DataView(section.buffer, section.byteOffset, section.byteLength);
  view.setUint32(0, indices.length, true);
  const pages: PageWrite[] = [];
  let offset = 4;
  for (let i = 0; i < indices.length; i++) {
    const page = indices[i]!;
    view.setUint32(offset, page, true);
    view.setUint32(offset + 4, pageSize, true);
    const bytes = section.subarray(offset + 8, offset + 8 + pageSize);
    bytes.set(source.subarray((page - sourceFirstPage) * pageSize, (page - sourceFirstPage + 1) * pageSize));
    pages.push({ page, bytes });
    offset += 8 + pageSize;
  }
  packedSections.set(pages, section);
  return pages;
}

export function writePages(writer: Writer, pages: PageWrite[]): void {
  const section = packedSections.get(pages);
  if (section) {
    writer.raw(section);
    return;
  }
  writer.u32(pages.length);
  for (const page of pages) writer.u32(page.page).blob(page.bytes);
}

/** Reads a page list; its encoding, a view of the frame, stays known (writePages sends it as it is). */
export function readPages(reader: Reader): PageWrite[] {
  const start = reader.offset;
  const count = reader.u32();
  // Each page needs at least 8 bytes of header: refuse counts the frame cannot hold.
  if (count * 8 > reader.remaining) throw new WireError(`page count ${count} does not fit in the frame`);
  const pages: PageWrite[] = [];
  for (let i = 0; i < count; i++) pages.push({ page: reader.u32(), bytes: reader.blob() });
  if (count > 0) packedSections.set(pages, reader.bytes.subarray(start, reader.offset));
  return pages;
}
