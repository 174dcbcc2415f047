/**
 * The write-ahead log: every applied update, in sequence order, in segment
 * files `wal-<first seq>.log`. A record is
 *   u32 payload length | u32 CRC-32 of the payload | payload (an encoded Update)
 * A segment starts with an 8-byte magic and the u53 sequence number its first
 * record will have. Appends go to the page cache at once; `sync()` makes them
 * durable (fdatasync), so many records share one sync (group commit).
 */
import { closeSync, fdatasyncSync, openSync, readdirSync, unlinkSync } from "node:fs";
import { join } from "node:path";
import { Reader, type Update, Writer, readUpdate, updateSize, writeUpdate } from "../wire";
import { syncDirectory, writeAll } from "./files";

export const WAL_MAGIC = new TextEncoder().encode("PSWAL01\n");
export const WAL_HEADER_BYTES = WAL_MAGIC.length + 8;
export const RECORD_HEADER_BYTES = 8;
const SEGMENT_NAME = /^wal-(\d{16})\.log$/;

export function segmentName(firstSeq: number): string {
  return `wal-${String(firstSeq).padStart(16, "0")}.log`;
}

/** Segments of `dir`, oldest first. */
export function listSegments(dir: string): { file: string; firstSeq: number }[] {
  return readdirSync(dir)
    .map((name) => ({ name, match: SEGMENT_NAME.exec(name) }))
    .filter((entry) => entry.match !== null)
    .map((entry) => ({ file: join(dir, entry.name), firstSeq: Number(entry.match![1]) }))
    .sort((a, b) => a.firstSeq - b.firstSeq);
}

export function encodeRecord(update: Update): Uint8Array {
  const payloadBytes = updateSize(update);
  const writer = new Writer(RECORD_HEADER_BYTES + payloadBytes);
  writer.offset = RECORD_HEADER_BYTES;
  writeUpdate(writer, update);
  const payload = writer.bytes.subarray(RECORD_HEADER_BYTES);
  const view = new DataView(writer.bytes.buffer);
  view.setUint32(0, payloadBytes, true);
  view.setUint32(4, Bun.hash.crc32(payload), true);
  return writer.bytes;
}

export function decodeRecordPayload(payload: Uint8Array): Update {
  const reader = new Reader(payload);
  const update = readUpdate(reader);
  reader.done();
  return update;
}


export class WriteAheadLog {
  private fd: number;
  private unsynced = false;
  /** Bytes appended since the last checkpoint (drives automatic checkpoints). */
  bytesSinceCheckpoint = 0;
  private pending: Uint8Array[] = [];
  private pendingBytes = 0;

  /** Opens (or creates) the segment `file` for appending after `validBytes`. */
  constructor(
    private readonly dir: string,
    private file: string,
  ) {
    this.fd = openSync(file, "a");
  }

  /** Starts a new segment whose first record will be `firstSeq`. */
  static create(dir: string, firstSeq: number): WriteAheadLog {
    const file = join(dir, segmentName(firstSeq));
    const fd = openSync(file, "w");
    const header = new Writer(WAL_HEADER_BYTES).raw(WAL_MAGIC).u53(firstSeq);
    writeAll(fd, header.bytes);
    fdatasyncSync(fd);
    closeSync(fd);
    syncDirectory(dir);
    return new WriteAheadLog(dir, file);
  }

  /** Queues a record; `flush()` writes every queued record with one system call. */
  append(update: Update): void {
    const record = encodeRecord(update);
    this.pending.push(record);
    this.pendingBytes += record.length;
  }

  /** Writes the queued records to the file (the page cache); true if there were any. */
  flush(): boolean {
    if (this.pending.length === 0) return false;
    const batch = this.pending.length === 1 ? this.pending[0]! : concat(this.pending, this.pendingBytes);
    writeAll(this.fd, batch);
    this.bytesSinceCheckpoint += this.pendingBytes;
    this.pending = [];
    this.pendingBytes = 0;
    this.unsynced = true;
    return true;
  }

  /** Makes every flushed record durable. */
  sync(): void {
    this.flush();
    if (!this.unsynced) return;
    fdatasyncSync(this.fd);
    this.unsynced = false;
  }

  get hasUnsynced(): boolean {
    return this.unsynced || this.pending.length > 0;
  }

  /** After a checkpoint at `seq`: continue in a fresh segment and drop the older ones. */
  rotate(seq: number): void {
    this.sync();
    closeSync(this.fd);
    const next = WriteAheadLog.create(this.dir, seq + 1);
    this.fd = next.fd;
    this.file = next.file;
    for (const segment of listSegments(this.dir)) {
      if (segment.file !== this.file) unlinkSync(segment.file);
    }
    syncDirectory(this.dir);
    this.bytesSinceCheckpoint = 0;
  }

  close(): void {
    try {
      this.sync();
    } finally {
      closeSync(this.fd);
    }
  }
}


function concat(parts: Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}
