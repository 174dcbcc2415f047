/**
 * A server's disk driven directly, for store.test.ts and checkpoint.test.ts: a writer that
 * applies and logs updates as a server does, and ways to read and damage the files.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { StoreState } from "../../src/core";
import { BATCH_HEADER_BYTES, BATCH_MARK, Durability, NODE_IO, WAL_HEADER_BYTES, listSegments, nodeFs } from "../../src/store";
import type { Op, Update } from "../../src/wire";
import { removeDir, tempDir } from "./processes";

export const SEGMENT = 1024 * 1024;
export const PAGE = 4096;
export const SESSION = 77;
/** Log segments of a few KiB, as the simulator's: a few writes span several. */
export const SMALL_LOG = { first: 2048, segment: 8192 };
let dirs: string[] = [];

/** For afterEach: the directories freshDir made are removed. */
export function removeFreshDirs(): void {
  for (const dir of dirs) removeDir(dir);
  dirs = [];
}

export function freshDir(): string {
  const dir = tempDir("pstore-store-");
  dirs.push(dir);
  return dir;
}

/** Feeds updates to a state and a log the way a server does; returns the state. */
export class Writer {
  readonly state = new StoreState(SEGMENT, PAGE);
  private reqNo = 1;

  constructor(readonly durability: Durability) {}

  /** Applies and logs `op`; synced (as a server does before it acknowledges) unless `sync` is false: then only written. */
  do(op: Op, sync = true): Update {
    const reqNo = this.reqNo++;
    const update: Update = { seq: this.state.appliedSeq + 1, epoch: 65, session: SESSION, reqNo, doneBelow: reqNo, op };
    this.state.apply(update);
    this.durability.append(update);
    if (sync) this.durability.commit();
    else this.durability.flush();
    return update;
  }

  /** Creates `name` and writes `value` in its first page under a write hold. */
  write(name: string, value: number, sync = true): void {
    if (!this.state.data.has(name)) this.do({ type: "create", name, size: 4 }, sync);
    this.do({ type: "acquire", name, mode: "write", knownCreatedSeq: -1, cachedVersion: -1 }, sync);
    const holdId = [...this.state.holds.values()].find((hold) => hold.name === name)!.id;
    const page = new Uint8Array(PAGE);
    new DataView(page.buffer).setInt32(0, value, true);
    const first = this.state.data.get(name)!.firstPage;
    this.do({ type: "release", holdId, pages: [{ page: first, bytes: page }] }, sync);
  }
}

export function open(dir: string): { writer: Writer; notes: string[] } {
  const { durability, recovered } = Durability.open(NODE_IO, dir, { segmentSize: SEGMENT, fsync: "always", checkpointBytes: 64 * 1024 * 1024 });
  const writer = new Writer(durability);
  // Request numbers go on past the recovered ones (each update had its own), or the session's deduplication drops them.
  if (recovered.state.appliedSeq > 0) Object.assign(writer, { state: recovered.state, reqNo: recovered.state.appliedSeq + 1 });
  return { writer, notes: recovered.notes };
}

export function valueOf(state: StoreState, name: string): number {
  const datum = state.data.get(name)!;
  return new DataView(state.pages.read(datum.firstPage).slice().buffer).getInt32(0, true);
}

export function startSession(writer: Writer): void {
  writer.do({ type: "open_session", timeoutMs: 10_000 });
}

export function lastSegment(dir: string): string {
  return listSegments(nodeFs, dir).at(-1)!.file;
}

/** Where the records of a segment end (the zero-filled rest follows). */
export function dataEnd(file: string): number {
  const bytes = new Uint8Array(readFileSync(file));
  const view = new DataView(bytes.buffer);
  let offset = WAL_HEADER_BYTES;
  while (offset + 8 <= bytes.length && view.getUint32(offset, true) !== 0) offset += recordBytes(view, offset);
  return offset;
}

/** The bytes of the record or batch header at `offset`. */
export function recordBytes(view: DataView, offset: number): number {
  const length = view.getUint32(offset, true);
  return length === BATCH_MARK ? BATCH_HEADER_BYTES : 8 + length;
}

export function patch(file: string, offset: number, patchBytes: Uint8Array | ((bytes: Uint8Array) => void)): void {
  const bytes = new Uint8Array(readFileSync(file));
  if (typeof patchBytes === "function") patchBytes(bytes);
  else bytes.set(patchBytes, offset);
  writeFileSync(file, bytes);
}
