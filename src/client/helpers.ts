/** Pure helpers of the client store: grant page runs, the TLS CA, session ids. */
import { readFileSync } from "node:fs";
import { PStoreError } from "../errors";
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

/** The CA as PEM text, read once: a bad path is EINVAL now, not a connection failure later. */
export function readCa(ca: string | undefined): string | undefined {
  if (ca === undefined || ca.includes("-----BEGIN")) return ca;
  try {
    return readFileSync(ca, "utf8");
  } catch (error) {
    throw new PStoreError("EINVAL", `cannot read the TLS CA ${ca}: ${(error as Error).message}`);
  }
}

export function randomSessionId(): number {
  const words = crypto.getRandomValues(new Uint32Array(2));
  // 53 bits: exact as a JS number and on the wire (u53); never 0 (the system session).
  return (words[0]! & 0x1f_ffff) * 0x1_0000_0000 + words[1]! || 1;
}
