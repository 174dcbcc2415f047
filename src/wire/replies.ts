/**
 * The replies of the replicated state to a client's operation, and their binary encoding.
 */
import { type Reader, type Writer, WireError, decodeCode, invert, sizeOf } from "./codec";
import { type Mode, decodeMode, modeCode } from "./ops";

export type Reply =
  | { type: "ok" }
  | { type: "session"; timeoutMs: number }
  | { type: "created"; offset: number; size: number; createdSeq: number }
  | {
      type: "granted";
      holdId: number;
      mode: Mode;
      name: string;
      offset: number;
      size: number;
      createdSeq: number;
      version: number;
      /** Pages whose last write is after this sequence number travel with the grant (-1: all). */
      sendAfter: number;
    }
  /** `cached`: the session keeps the hold as its cached grant (nobody waited); else it is gone. */
  | { type: "released"; version: number; cached: boolean }
  /** An acquire is in the datum's queue (committed): the grant follows later. */
  | { type: "queued" }
  /** Every server of the chain wrote a checkpoint at this sequence number. */
  | { type: "checkpointed"; seq: number }
  | { type: "error"; code: string; message: string };

export const REPLY_CODES: Record<Reply["type"], number> = {
  ok: 1,
  session: 2,
  created: 3,
  granted: 4,
  released: 5,
  error: 6,
  queued: 7,
  checkpointed: 8,
};
const REPLY_BY_CODE = invert(REPLY_CODES);

function readFlag(reader: Reader, what: string): boolean {
  const flag = reader.u8();
  if (flag > 1) throw new WireError(`${what} is ${flag}, not 0 or 1`);
  return flag === 1;
}

export function replySize(reply: Reply): number {
  switch (reply.type) {
    case "ok":
      return 1;
    case "session":
      return 1 + 4;
    case "created":
      return 1 + 8 * 3;
    case "granted":
      return 1 + 8 + 1 + sizeOf.str(reply.name) + 8 * 5;
    case "released":
      return 1 + 8 + 1;
    case "queued":
      return 1;
    case "checkpointed":
      return 1 + 8;
    case "error":
      return 1 + sizeOf.str(reply.code) + sizeOf.str(reply.message);
  }
}

export function writeReply(writer: Writer, reply: Reply): void {
  writer.u8(REPLY_CODES[reply.type]);
  switch (reply.type) {
    case "ok":
      return;
    case "session":
      writer.u32(reply.timeoutMs);
      return;
    case "created":
      writer.u53(reply.offset).u53(reply.size).u53(reply.createdSeq);
      return;
    case "granted":
      writer.u53(reply.holdId).u8(modeCode(reply.mode)).str(reply.name);
      writer.u53(reply.offset).u53(reply.size).u53(reply.createdSeq).u53(reply.version).f64(reply.sendAfter);
      return;
    case "released":
      writer.u53(reply.version).u8(reply.cached ? 1 : 0);
      return;
    case "queued":
      return;
    case "checkpointed":
      writer.u53(reply.seq);
      return;
    case "error":
      writer.str(reply.code).str(reply.message);
      return;
  }
}

export function readReply(reader: Reader): Reply {
  const type = decodeCode(REPLY_BY_CODE, reader.u8(), "reply");
  switch (type) {
    case "ok":
      return { type };
    case "session":
      return { type, timeoutMs: reader.u32() };
    case "created":
      return { type, offset: reader.u53(), size: reader.u53(), createdSeq: reader.u53() };
    case "granted":
      return {
        type,
        holdId: reader.u53(),
        mode: decodeMode(reader.u8()),
        name: reader.str(),
        offset: reader.u53(),
        size: reader.u53(),
        createdSeq: reader.u53(),
        version: reader.u53(),
        sendAfter: reader.f64(),
      };
    case "released":
      return { type, version: reader.u53(), cached: readFlag(reader, "cached") };
    case "queued":
      return { type };
    case "checkpointed":
      return { type, seq: reader.u53() };
    case "error":
      return { type, code: reader.str(), message: reader.str() };
  }
}
