/**
 * A whole StoreState as bytes: for state transfer to a joining server and for
 * checkpoints. Metadata (names, sessions, holds, allocator) is JSON; the pages
 * of every datum follow raw, with their sequence numbers. Free pages are not
 * sent: they are zeros until a create stamps them.
 */
import { present } from "../assert";
import type { Reply } from "../wire/replies";
import { SNAPSHOT_BLOCK_BYTES } from "../constants";
import { PageAllocator, type PageRun } from "./allocator";
import type { FrozenPages } from "./pages";
import { type Datum, type Hold, type Session, StoreState } from "./state";

interface SnapshotMeta {
  format: 1;
  segmentSize: number;
  pageSize: number;
  appliedSeq: number;
  nextHoldId: number;
  free: PageRun[];
  data: Omit<Datum, "holders">[];
  holds: Hold[];
  sessions: { id: number; timeoutMs: number; doneBelow: number; lastReqNo?: number; replies: [number, Reply | null][]; waiting: [number, string][] }[];
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * A snapshot as a stream of parts (metadata, then page records in blocks of at
 * most SNAPSHOT_BLOCK_BYTES), read from `pages`: a frozen view lets a
 * checkpoint be written while the state goes on, without a copy of it. Each
 * part is valid only until the next one is asked for (one buffer is reused).
 */
export function snapshotParts(state: StoreState, pages: FrozenPages = livePages(state)): { bytes: number; parts: () => Generator<Uint8Array> } {
  const data = [...state.data.values()].map(({ holders: _holders, ...rest }) => rest);
  const meta: SnapshotMeta = {
    format: 1,
    segmentSize: state.segmentSize,
    pageSize: state.pageSize,
    appliedSeq: state.appliedSeq,
    nextHoldId: state.nextHoldId,
    free: state.allocator.freeRuns(),
    data,
    holds: [...state.holds.values()],
    sessions: [...state.sessions.values()].map((s) => ({
      id: s.id,
      timeoutMs: s.timeoutMs,
      doneBelow: s.doneBelow,
      lastReqNo: s.lastReqNo,
      replies: [...s.replies],
      waiting: [...s.waiting],
    })),
  };
  const json = encoder.encode(JSON.stringify(meta));
  const record = 8 + state.pageSize;
  let pageBytes = 0;
  for (const datum of data) pageBytes += datum.pageCount * record;
  const recordsPerBlock = Math.max(1, Math.floor(SNAPSHOT_BLOCK_BYTES / record));
  function* parts(): Generator<Uint8Array> {
    const head = new Uint8Array(4 + json.length);
    new DataView(head.buffer).setUint32(0, json.length, true);
    head.set(json, 4);
    yield head;
    // One block, reused: a part is valid until the next one is asked for (no garbage per block).
    const block = new Uint8Array(recordsPerBlock * record);
    const view = new DataView(block.buffer);
    for (const datum of data) {
      const end = datum.firstPage + datum.pageCount;
      for (let first = datum.firstPage; first < end; first += recordsPerBlock) {
        const count = Math.min(recordsPerBlock, end - first);
        for (let i = 0; i < count; i++) {
          view.setFloat64(i * record, pages.seqOf(first + i), true);
          block.set(pages.read(first + i), i * record + 8);
        }
        yield block.subarray(0, count * record);
      }
    }
  }
  return { bytes: 4 + json.length + pageBytes, parts };
}

function livePages(state: StoreState): FrozenPages {
  return { read: (page) => state.pages.read(page), seqOf: (page) => state.pages.pageSeq[page]! };
}

export function encodeSnapshot(state: StoreState): Uint8Array {
  const { bytes, parts } = snapshotParts(state);
  const out = new Uint8Array(bytes);
  let offset = 0;
  for (const part of parts()) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

export class SnapshotError extends Error {}

export function decodeSnapshot(bytes: Uint8Array): StoreState {
  if (bytes.length < 4) throw new SnapshotError("snapshot shorter than its header");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const jsonLength = view.getUint32(0, true);
  if (4 + jsonLength > bytes.length) throw new SnapshotError("snapshot metadata runs past its end");
  let meta: SnapshotMeta;
  try {
    meta = JSON.parse(decoder.decode(bytes.subarray(4, 4 + jsonLength)));
  } catch (error) {
    throw new SnapshotError(`snapshot metadata is not JSON: ${(error as Error).message}`);
  }
  if (meta.format !== 1) throw new SnapshotError(`snapshot format ${meta.format} is not supported`);
  const state = new StoreState(meta.segmentSize, meta.pageSize, new PageAllocator(meta.segmentSize / meta.pageSize, meta.free));
  state.appliedSeq = meta.appliedSeq;
  state.nextHoldId = meta.nextHoldId;
  let offset = 4 + jsonLength;
  const expected = offset + meta.data.reduce((n, d) => n + d.pageCount * (8 + meta.pageSize), 0);
  if (expected !== bytes.length) throw new SnapshotError(`snapshot has ${bytes.length} bytes, its metadata says ${expected}`);
  for (const datum of meta.data) {
    // Fields added with cached holds are absent from older checkpoints.
    const queue = datum.queue.map((waiter) => ({ ...waiter, cache: waiter.cache ?? false }));
    state.data.set(datum.name, { ...datum, queue, holders: [] });
    if (queue.length > 0) state.contended.add(datum.name);
    for (let page = datum.firstPage; page < datum.firstPage + datum.pageCount; page++) {
      const seq = view.getFloat64(offset, true);
      state.pages.write(page, bytes.subarray(offset + 8, offset + 8 + meta.pageSize), seq);
      offset += 8 + meta.pageSize;
    }
  }
  for (const s of meta.sessions) {
    const session: Session = {
      id: s.id,
      timeoutMs: s.timeoutMs,
      doneBelow: s.doneBelow,
      // Absent from checkpoints written before it existed: the highest number it can know.
      lastReqNo: s.lastReqNo ?? Math.max(s.doneBelow - 1, ...s.replies.map(([reqNo]) => reqNo)),
      replies: new Map(s.replies),
      holds: new Set(),
      waiting: new Map(s.waiting),
    };
    state.sessions.set(s.id, session);
  }
  for (const stored of meta.holds) {
    const hold = { ...stored, cacheable: stored.cacheable ?? false, cached: stored.cached ?? false };
    state.holds.set(hold.id, hold);
    present(state.data.get(hold.name), "snapshot: a hold is on a known datum").holders.push(hold);
    present(state.sessions.get(hold.session), "snapshot: a hold has a session").holds.add(hold.id);
  }
  return state;
}
