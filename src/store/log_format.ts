/**
 * The bytes of a log segment `wal-<first seq>.log`:
 *   magic "PSWAL02\n" | u53 sequence number of its first record | u53 flags
 *   then records and batch headers, then zeros to the segment's end.
 * Flag SYNCED_BEFORE_NEXT: the writer syncs a segment before it starts the next one (every
 * --fsync mode but off), so only the last segment can have an unsynced tail.
 * A record is
 *   u32 payload length | u32 CRC-32 of the payload | payload (an encoded Update)
 * A batch header starts each write of records (one per flush) and says how far the segment
 * was durable when that write began:
 *   u32 BATCH_MARK | u32 CRC-32 | u53 durable offset | u53 own offset
 * (the CRC covers the segment's first seq, then the two offsets, so a header is valid only
 * where it was written). A power loss may leave any mixture of old and new blocks after the
 * durable offset (writeback goes in any order): recovery cuts the log at the first record that
 * does not check out unless a later batch header says a sync had covered it (recovery.ts).
 * Segments of the first format, "PSWAL01\n" and the first seq (16 bytes), have no flags and no
 * batch headers, and are still read.
 */
import { Reader, type Update, Writer, encodeUpdateParts, readUpdate } from "../wire";

export const WAL_MAGIC = new TextEncoder().encode("PSWAL02\n");
/** Segments written before batch headers (read only). */
export const WAL_MAGIC_V1 = new TextEncoder().encode("PSWAL01\n");
export const WAL_HEADER_BYTES = WAL_MAGIC.length + 16;
export const WAL_HEADER_BYTES_V1 = WAL_MAGIC.length + 8;
export const SYNCED_BEFORE_NEXT = 1;
export const RECORD_HEADER_BYTES = 8;
/** In a record's length field: no record is 4 GiB long. */
export const BATCH_MARK = 0xffff_ffff;
export const BATCH_HEADER_BYTES = 24;

/** The segment header: its magic, the sequence number of its first record, its flags. */
export function encodeSegmentHeader(firstSeq: number, syncedBeforeNext: boolean): Uint8Array {
  return new Writer(WAL_HEADER_BYTES).raw(WAL_MAGIC).u53(firstSeq).u53(syncedBeforeNext ? SYNCED_BEFORE_NEXT : 0).bytes;
}

/** A record as its 8-byte header and its payload (the update's own encoding, in parts, not copied). */
export function encodeRecord(update: Update): Uint8Array[] {
  const payload = encodeUpdateParts(update);
  let length = 0;
  let crc = 0;
  for (const part of payload) {
    length += part.length;
    crc = Bun.hash.crc32(part, crc);
  }
  const header = new Uint8Array(RECORD_HEADER_BYTES);
  const view = new DataView(header.buffer);
  view.setUint32(0, length, true);
  view.setUint32(4, crc, true);
  return [header, ...payload];
}

export function decodeRecordPayload(payload: Uint8Array): Update {
  const reader = new Reader(payload);
  const update = readUpdate(reader);
  reader.done();
  return update;
}

/** The header of a batch written at `offset` of the segment from `firstSeq`, while bytes below `durable` were synced. */
export function encodeBatchHeader(firstSeq: number, durable: number, offset: number): Uint8Array {
  const header = new Writer(BATCH_HEADER_BYTES).u32(BATCH_MARK).u32(0).u53(durable).u53(offset).bytes;
  new DataView(header.buffer).setUint32(4, batchCrc(firstSeq, header), true);
  return header;
}

/** The durable offset claimed by a valid batch header at `offset`, or null if there is none there. */
export function readBatchHeader(bytes: Uint8Array, offset: number, firstSeq: number): number | null {
  if (offset + BATCH_HEADER_BYTES > bytes.length) return null;
  const header = bytes.subarray(offset, offset + BATCH_HEADER_BYTES);
  const reader = new Reader(header);
  if (reader.u32() !== BATCH_MARK) return null;
  const crc = reader.u32();
  if (crc !== batchCrc(firstSeq, header)) return null;
  const durable = reader.u53();
  const own = reader.u53();
  // A header claims only what was synced before it was written.
  return own === offset && durable <= offset ? durable : null;
}

/** The furthest durable offset claimed by a valid batch header at or after `from` (0 if none). */
export function durableClaimedFrom(bytes: Uint8Array, from: number, firstSeq: number): number {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let claimed = 0;
  // Every offset, in one loop: 0.1–0.4 s for 64 MiB whatever it holds (Buffer.indexOf of the
  // mark took 2 s over pages of 0xff bytes, a mark at every byte). Its own offset is the cheap test.
  for (let at = from; at + BATCH_HEADER_BYTES <= bytes.length; at++) {
    if (bytes[at] !== 0xff || view.getUint32(at, true) !== BATCH_MARK || view.getUint32(at + 16, true) !== at % 0x1_0000_0000) continue;
    const durable = readBatchHeader(bytes, at, firstSeq);
    if (durable !== null) claimed = Math.max(claimed, durable);
  }
  return claimed;
}

function batchCrc(firstSeq: number, header: Uint8Array): number {
  return Bun.hash.crc32(header.subarray(8), Bun.hash.crc32(new Writer(8).u53(firstSeq).bytes));
}
