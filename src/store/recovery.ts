/**
 * Restart (reprise): the latest checkpoint, then the log after it. A torn
 * last record (a crash in the middle of an append) is cut off; anything else
 * that does not check out is refused with the file and offset, never guessed.
 */
import { join } from "node:path";
import { ensureDirectory } from "./files";
import type { StoreFs, StoreIo } from "./fs";
import { type ChainConfig, StoreState, type Vote } from "../core";
import { EpochHistory } from "../core/epochs";
import { loadConfig } from "./config";
import { Reader, WireError } from "../wire";
import { type CheckpointInfo, listCheckpoints, readCheckpoint } from "./checkpoint";
import { CorruptDataError, RecoveryError, readHeader } from "./errors";
import { WriteAheadLog, listSegments } from "./wal";
import {
  BATCH_HEADER_BYTES,
  BATCH_MARK,
  RECORD_HEADER_BYTES,
  SYNCED_BEFORE_NEXT,
  WAL_HEADER_BYTES,
  WAL_HEADER_BYTES_V1,
  WAL_MAGIC,
  WAL_MAGIC_V1,
  decodeRecordPayload,
  durableClaimedFrom,
  readBatchHeader,
} from "./log_format";

export interface Recovered {
  state: StoreState;
  /** Epoch of the update at state.appliedSeq (0 when there is none). */
  lastEpoch: number;
  /** The epochs of the recovered history: the checkpoint's, then each replayed update's. */
  epochs: EpochHistory;
  configEpoch: number;
  /** The last chain configuration the server knew (none on a first start). */
  config: ChainConfig | null;
  /** --quorum majority: the server's vote as an acceptor of configurations (none if it never voted). */
  vote: Vote | null;
  /** The servers heard while not serving since that configuration (ReplicaShared.bootPeers). */
  bootPeers: number[];
  checkpoint: CheckpointInfo | null;
  replayed: number;
  wal: WriteAheadLog;
  notes: string[];
}

/** `syncs`: false when the log will never be synced (--fsync off). */
export function recover(io: StoreIo, dir: string, segmentSize: number, pageSize: number, syncs = true): Recovered {
  const fs = io.fs;
  ensureDirectory(fs, dir);
  const notes: string[] = [];
  const checkpoints = listCheckpoints(fs, dir);
  const checkpoint = checkpoints[checkpoints.length - 1] ?? null;
  let state = new StoreState(segmentSize, pageSize);
  let lastEpoch = 0;
  let configEpoch = 0;
  // A log or checkpoint that does not check out: say what can be done about it.
  const asCorrupt = <T>(read: () => T): T => {
    try {
      return read();
    } catch (error) {
      if (!(error instanceof RecoveryError)) throw error;
      throw new CorruptDataError(`${error.message}\n${corruptAdvice(dir, checkpoints.map((c) => c.seq))}`);
    }
  };
  if (checkpoint) {
    const loaded = asCorrupt(() => readCheckpoint(fs, checkpoint.file));
    if (loaded.state.segmentSize !== segmentSize || loaded.state.pageSize !== pageSize) {
      throw new RecoveryError(
        `${checkpoint.file}: the data has a segment of ${loaded.state.segmentSize} bytes (pages of ${loaded.state.pageSize}); start with --segment-size ${loaded.state.segmentSize}`,
      );
    }
    state = loaded.state;
    lastEpoch = loaded.lastEpoch;
    configEpoch = loaded.configEpoch;
    notes.push(`loaded checkpoint at seq ${loaded.seq}`);
  }
  const epochs = new EpochHistory(state.appliedSeq, lastEpoch);
  const segments = listSegments(fs, dir);
  let replayed = 0;
  for (const [index, segment] of segments.entries()) {
    const last = index === segments.length - 1;
    const result = asCorrupt(() => replaySegment(fs, segment.file, segment.firstSeq, last, state, epochs));
    replayed += result.replayed;
    if (result.lastEpoch !== null) lastEpoch = result.lastEpoch;
    if (result.cutAt === 0) {
      // Nothing was logged in it: removed, not left empty. Emptied, it stayed below the segment
      // the log goes on in, and the next restart refused it ("shorter than a log header";
      // sim seed 706000011 of --disks --fsync batch --full-disks).
      fs.unlink(segment.file);
      fs.syncDirectory(dir);
      notes.push(`removed ${segment.file}: created just before the crash, nothing was logged in it`);
    } else if (result.cutAt !== null) {
      cutFile(fs, segment.file, result.cutAt);
      notes.push(`cut a torn record at the end of ${segment.file} (offset ${result.cutAt})`);
    } else if (syncs && result.replayed > 0) {
      // Records a killed process wrote but never synced are still only in the system's cache:
      // synced now, since the replica counts what it recovers as durable (core/chain_sync.ts).
      syncFile(fs, segment.file);
    }
    // A segment never synced (--fsync off) whose tail a power loss took ends the log where the
    // next one does not go on from (the next from after a checkpoint the state came from does).
    const next = segments[index + 1];
    if (result.unsyncedTail && next !== undefined && next.firstSeq > state.appliedSeq + 1) {
      const after = segments.slice(index + 1);
      for (const later of after) fs.unlink(later.file);
      fs.syncDirectory(dir);
      notes.push(`removed ${after.length} log segment(s) after ${segment.file}, which a power loss cut short (--fsync off): they are past a gap`);
      break;
    }
  }
  if (replayed > 0) notes.push(`replayed ${replayed} updates from the log, now at seq ${state.appliedSeq}`);
  const saved = loadConfig(fs, dir);
  // Appends continue in a fresh segment: the old ones may end before a newer checkpoint.
  const wal = WriteAheadLog.create(fs, io.logSizes, dir, state.appliedSeq + 1, syncs);
  return { state, lastEpoch, epochs, configEpoch, config: saved?.config ?? null, vote: saved?.vote ?? null, bootPeers: saved?.bootPeers ?? [], checkpoint, replayed, wal, notes };
}

/** Moves the log, the checkpoints and any temporary file of `dir` into `dir/aside-<time>/` (config.json stays); returns that folder. */
export function moveAside(fs: StoreFs, dir: string): string {
  const aside = join(dir, `aside-${new Date().toISOString().replace(/[:.]/g, "-")}`);
  fs.mkdirs(aside);
  for (const name of fs.readdir(dir)) {
    if (/^wal-.*\.(log|tmp)$|\.ckpt(\.tmp)?$|\.tmp$/.test(name)) fs.rename(join(dir, name), join(aside, name));
  }
  fs.syncDirectory(dir);
  return aside;
}

/** What an operator can do about a corrupt data dir: the advice depends on what is there. */
function corruptAdvice(dir: string, checkpointSeqs: number[]): string {
  const rejoin =
    "If the other servers of the cluster are serving (they hold the history), restart this one with `pstore serve --rejoin …`: " +
    `it moves this dir's log and checkpoints aside (into ${dir}/aside-<time>/) and fetches the whole state from them.`;
  const restore =
    checkpointSeqs.length > 0
      ? `If this dir holds the only copy, \`pstore restore --data-dir ${dir} --checkpoint <seq>\` (checkpoints here: ${checkpointSeqs.join(", ")}) rolls it back to a checkpoint, losing the updates after it.`
      : "There is no checkpoint here to restore: if this dir holds the only copy, the updates from the corrupt record on are lost.";
  return `${rejoin}\n${restore}`;
}

interface SegmentReplay {
  /** The segment was never synced (--fsync off): a power loss may have taken any part of it. */
  unsyncedTail: boolean;
  replayed: number;
  lastEpoch: number | null;
  /** Offset of the torn tail to cut off, or null. */
  cutAt: number | null;
}

function replaySegment(fs: StoreFs, file: string, firstSeq: number, isLast: boolean, state: StoreState, epochs: EpochHistory): SegmentReplay {
  const bytes = fs.readFile(file);
  const result: SegmentReplay = { unsyncedTail: false, replayed: 0, lastEpoch: null, cutAt: null };
  const hasBatchHeaders = hasMagic(bytes, WAL_MAGIC);
  const headerBytes = hasBatchHeaders ? WAL_HEADER_BYTES : WAL_HEADER_BYTES_V1;
  // Zeros only, or less than a header: the last segment was created and the crash came before
  // its header was whole (a power loss that kept the new name but not the removal that followed
  // a full disk; a server of an older version named its spare first). Nothing was logged in it.
  if (isLast && (bytes.length < headerBytes || isZero(bytes, 0))) return { ...result, cutAt: 0 };
  if (bytes.length < headerBytes) throw new RecoveryError(`${file}: shorter than a log header (${bytes.length} bytes)`);
  if (!hasBatchHeaders && !hasMagic(bytes, WAL_MAGIC_V1)) throw new RecoveryError(`${file}: not a pstore log (bad magic at offset 0)`);
  const header = readHeader(file, () => {
    const reader = new Reader(bytes, WAL_MAGIC.length, headerBytes);
    return { seq: reader.u53(), flags: hasBatchHeaders ? reader.u53() : SYNCED_BEFORE_NEXT };
  });
  if (header.seq !== firstSeq) throw new RecoveryError(`${file}: header says first seq ${header.seq}, the file name ${firstSeq}`);
  // Every segment but the last was synced before the next began, unless its writer never synced (--fsync off).
  result.unsyncedTail = (header.flags & SYNCED_BEFORE_NEXT) === 0;
  const mayHaveUnsyncedTail = isLast || result.unsyncedTail;
  /**
   * Something at `offset` does not check out. Where the segment may have an unsynced tail, it
   * is that tail, which a power loss may leave in any state (cut off from there), unless a
   * later batch header says a sync had covered it: then synced data is damaged, and that is
   * refused. A segment of the first format has no batch headers: its tail is cut only if
   * nothing but zeros follows (from `zerosFrom`).
   */
  const notTorn = (offset: number, zerosFrom: number): boolean =>
    !mayHaveUnsyncedTail || (hasBatchHeaders ? durableClaimedFrom(bytes, offset, firstSeq) > offset : !isZero(bytes, zerosFrom));
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let offset = headerBytes;
  let expectedSeq = firstSeq;
  while (offset < bytes.length) {
    const remaining = bytes.length - offset;
    // The zero-filled space after the last record, however short (a batch may leave less than
    // a record header at the end of a segment): the end of this segment's data.
    const atEnd = remaining < RECORD_HEADER_BYTES || (view.getUint32(offset, true) === 0 && view.getUint32(offset + 4, true) === 0);
    if (atEnd) {
      if (isZero(bytes, offset)) break;
      if (notTorn(offset, offset)) throw new RecoveryError(`${file}: data after the end of the records at offset ${offset}`);
      return { ...result, cutAt: offset };
    }
    const length = view.getUint32(offset, true);
    if (length === BATCH_MARK && hasBatchHeaders) {
      if (readBatchHeader(bytes, offset, firstSeq) !== null) {
        offset += BATCH_HEADER_BYTES;
        continue;
      }
      if (notTorn(offset, offset + BATCH_HEADER_BYTES)) throw new RecoveryError(`${file}: bad batch header at offset ${offset}; the log is corrupt`);
      return { ...result, cutAt: offset };
    }
    const end = offset + RECORD_HEADER_BYTES + length;
    if (end > bytes.length) {
      if (notTorn(offset, offset + RECORD_HEADER_BYTES)) throw new RecoveryError(`${file}: record at offset ${offset} runs past the end of the file`);
      return { ...result, cutAt: offset };
    }
    const payload = bytes.subarray(offset + RECORD_HEADER_BYTES, end);
    if (Bun.hash.crc32(payload) !== view.getUint32(offset + 4, true)) {
      if (notTorn(offset, end)) throw new RecoveryError(`${file}: checksum mismatch in the record at offset ${offset}; the log is corrupt`);
      return { ...result, cutAt: offset };
    }
    let update;
    try {
      update = decodeRecordPayload(payload);
    } catch (error) {
      if (!(error instanceof WireError)) throw error;
      if (notTorn(offset, end)) throw new RecoveryError(`${file}: record at offset ${offset} does not decode: ${error.message}`);
      return { ...result, cutAt: offset };
    }
    if (update.seq !== expectedSeq) {
      if (notTorn(offset, end)) throw new RecoveryError(`${file}: record at offset ${offset} has seq ${update.seq}, expected ${expectedSeq}`);
      return { ...result, cutAt: offset };
    }
    expectedSeq++;
    if (update.seq === state.appliedSeq + 1) {
      state.apply(update);
      epochs.note(update.seq, update.epoch);
      result.replayed++;
      result.lastEpoch = update.epoch;
    } else if (update.seq > state.appliedSeq + 1) {
      throw new RecoveryError(`${file}: updates ${state.appliedSeq + 1}..${update.seq - 1} are missing before offset ${offset}`);
    }
    offset = end;
  }
  return result;
}

function hasMagic(bytes: Uint8Array, magic: Uint8Array): boolean {
  return magic.every((byte, i) => bytes[i] === byte);
}

function isZero(bytes: Uint8Array, from: number): boolean {
  for (let i = from; i < bytes.length; i++) if (bytes[i] !== 0) return false;
  return true;
}

function syncFile(fs: StoreFs, file: string): void {
  const fd = fs.open(file, "r");
  try {
    fs.datasync(fd);
  } finally {
    fs.close(fd);
  }
}

function cutFile(fs: StoreFs, file: string, length: number): void {
  const fd = fs.open(file, "r+");
  try {
    fs.truncate(fd, length);
    fs.datasync(fd);
  } finally {
    fs.close(fd);
  }
}
