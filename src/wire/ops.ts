/**
 * The operations on the replicated state (Op, as a client asks them) and the updates
 * that put them in the total order (Update), with their binary encodings: a request
 * carries an op, the chain forwards and logs updates.
 */
import { Reader, Writer, WireError, decodeCode, invert, sizeOf } from "./codec";
import { UPDATE_PARTS_BYTES_MIN } from "../constants";
import { type PageWrite, packedSections, pagesSize, readPages, writePages } from "./pages";

export type Mode = "read" | "write";

/** An operation on the replicated state, as a client asks it. */
export type Op =
  | { type: "open_session"; timeoutMs: number }
  | { type: "close_session" }
  | { type: "create"; name: string; size: number }
  | { type: "delete"; name: string }
  /**
   * knownCreatedSeq/cachedVersion say which bytes the client has cached (-1: none).
   * `cache`: the client keeps the hold after its release while nobody waits (a cached grant,
   * docs/protocol.md#cached-holds); encoded as bit 0x80 of the mode byte, so older logs decode.
   */
  | { type: "acquire"; name: string; mode: Mode; knownCreatedSeq: number; cachedVersion: number; cache?: boolean }
  | { type: "release"; holdId: number; pages: PageWrite[] }
  /** Withdraws the acquire sent as request `acquireReqNo`: dequeued, or released if already granted. */
  | { type: "cancel"; acquireReqNo: number }
  /** Issued by the head when a session stops heart-beating. */
  | { type: "expire_session"; session: number }
  /** Every server writes a checkpoint when it applies this: a recovery line at one seq. */
  | { type: "checkpoint" }
  /**
   * Sequenced by the system (session 0) when a head takes over a longer history (a pull): it
   * changes no state, but carries the head's epoch into that history (core/flow.ts, endPull).
   */
  | { type: "barrier" }
  /**
   * Put by the head in place of a request it refuses for a reason of its own
   * (its disk is full): sequenced like the request, so the session's request
   * numbers stay without a gap, and answered with this error by every replica.
   * A refused release (holdId > 0) still ends its hold, without its data: the
   * client let go of it when it sent the release.
   */
  | { type: "refused"; code: string; message: string; holdId: number };

export type OpType = Op["type"];

/** An operation with its place in the total order. Session 0 is the system (expiries). */
export interface Update {
  seq: number;
  /** The epoch of the configuration whose head sequenced it. */
  epoch: number;
  session: number;
  reqNo: number;
  doneBelow: number;
  op: Op;
}

export const OP_CODES: Record<OpType, number> = {
  open_session: 1,
  close_session: 2,
  create: 3,
  delete: 4,
  acquire: 5,
  release: 6,
  cancel: 7,
  expire_session: 8,
  checkpoint: 9,
  refused: 10,
  barrier: 11,
};
const OP_BY_CODE = invert(OP_CODES);

/** In an acquire's mode byte: the client caches the hold after release. */
const CACHE_BIT = 0x80;

export function modeCode(mode: Mode): number {
  return mode === "read" ? 1 : 2;
}

export function decodeMode(code: number): Mode {
  if (code === 1) return "read";
  if (code === 2) return "write";
  throw new WireError(`unknown hold mode ${code}`);
}

export function opSize(op: Op): number {
  switch (op.type) {
    case "open_session":
      return 1 + 4;
    case "close_session":
      return 1;
    case "create":
      return 1 + sizeOf.str(op.name) + 8;
    case "delete":
      return 1 + sizeOf.str(op.name);
    case "acquire":
      return 1 + sizeOf.str(op.name) + 1 + 8 + 8;
    case "release":
      return 1 + 8 + pagesSize(op.pages);
    case "cancel":
      return 1 + 4;
    case "expire_session":
      return 1 + 8;
    case "checkpoint":
    case "barrier":
      return 1;
    case "refused":
      return 1 + sizeOf.str(op.code) + sizeOf.str(op.message) + 8;
  }
}

export function writeOp(writer: Writer, op: Op): void {
  writer.u8(OP_CODES[op.type]);
  switch (op.type) {
    case "open_session":
      writer.u32(op.timeoutMs);
      return;
    case "close_session":
      return;
    case "create":
      writer.str(op.name).u53(op.size);
      return;
    case "delete":
      writer.str(op.name);
      return;
    case "acquire":
      writer.str(op.name).u8(modeCode(op.mode) | (op.cache ? CACHE_BIT : 0)).f64(op.knownCreatedSeq).f64(op.cachedVersion);
      return;
    case "release":
      writer.u53(op.holdId);
      writePages(writer, op.pages);
      return;
    case "cancel":
      writer.u32(op.acquireReqNo);
      return;
    case "expire_session":
      writer.u53(op.session);
      return;
    case "checkpoint":
    case "barrier":
      return;
    case "refused":
      writer.str(op.code).str(op.message).u53(op.holdId);
      return;
  }
}

export function readOp(reader: Reader): Op {
  const type = decodeCode(OP_BY_CODE, reader.u8(), "operation");
  switch (type) {
    case "open_session":
      return { type, timeoutMs: reader.u32() };
    case "close_session":
      return { type };
    case "create":
      return { type, name: reader.str(), size: reader.u53() };
    case "delete":
      return { type, name: reader.str() };
    case "acquire": {
      const name = reader.str();
      const modeByte = reader.u8();
      const op: Op = { type, name, mode: decodeMode(modeByte & ~CACHE_BIT), knownCreatedSeq: reader.f64(), cachedVersion: reader.f64() };
      // Only set when on: updates logged before cached holds existed read back unchanged.
      if (modeByte & CACHE_BIT) op.cache = true;
      return op;
    }
    case "release":
      return { type, holdId: reader.u53(), pages: readPages(reader) };
    case "cancel":
      return { type, acquireReqNo: reader.u32() };
    case "expire_session":
      return { type, session: reader.u53() };
    case "checkpoint":
    case "barrier":
      return { type };
    case "refused":
      return { type, code: reader.str(), message: reader.str(), holdId: reader.u53() };
  }
}

/** Each update's encoding, kept from when it was decoded or first encoded (forwarded and logged as is). */
const encodings = new WeakMap<Update, Uint8Array>();

/** The bytes of writeUpdate(update): encoded once, then reused (no copy of the pages per use). */
export function encodeUpdate(update: Update): Uint8Array {
  let bytes = encodings.get(update);
  if (!bytes) {
    const writer = new Writer(updateSize(update));
    writeUpdate(writer, update);
    bytes = writer.bytes;
    encodings.set(update, bytes);
  }
  return bytes;
}

/** Large write releases' encodings as [header, pages as received]: see encodeUpdateParts. */
const partedEncodings = new WeakMap<Update, Uint8Array[]>();

/**
 * The bytes of writeUpdate(update) as buffers to write one after the other. A write release
 * whose pages came packed (the client's frame, at the head) is its header and those very
 * bytes: a 64 MiB release is logged and forwarded without a new 64 MiB buffer (whose pages
 * the system would fault in, ~11 µs each on our VM) nor a copy.
 */
export function encodeUpdateParts(update: Update): Uint8Array[] {
  const whole = encodings.get(update);
  if (whole) return [whole];
  const op = update.op;
  const section = op.type === "release" ? packedSections.get(op.pages) : undefined;
  if (op.type !== "release" || !section || section.length < UPDATE_PARTS_BYTES_MIN) return [encodeUpdate(update)];
  let parts = partedEncodings.get(update);
  if (!parts) {
    const head = new Writer(8 + 8 + 8 + 4 + 4 + 1 + 8);
    writeUpdateHead(head, update);
    head.u8(OP_CODES.release).u53(op.holdId); // writeOp's release, up to its pages
    parts = [head.bytes, section];
    partedEncodings.set(update, parts);
  }
  return parts;
}

/** Reads an update and remembers the bytes it came from. */
export function readUpdateKeepingBytes(reader: Reader): Update {
  const start = reader.offset;
  const update = readUpdate(reader);
  encodings.set(update, reader.bytes.subarray(start, reader.offset));
  return update;
}

export function updateSize(update: Update): number {
  return 8 + 8 + 8 + 4 + 4 + opSize(update.op);
}

export function writeUpdate(writer: Writer, update: Update): void {
  writeUpdateHead(writer, update);
  writeOp(writer, update.op);
}

/** Where the update sits in the order: what precedes its op in the encoding. */
function writeUpdateHead(writer: Writer, update: Update): void {
  writer.u53(update.seq).u53(update.epoch).u53(update.session).u32(update.reqNo).u32(update.doneBelow);
}

export function readUpdate(reader: Reader): Update {
  return {
    seq: reader.u53(),
    epoch: reader.u53(),
    session: reader.u53(),
    reqNo: reader.u32(),
    doneBelow: reader.u32(),
    op: readOp(reader),
  };
}
