/**
 * Frames: u32 length (of what follows, little endian), u8 type, body.
 * The decoder takes arbitrary chunks and hands back whole frames; the length
 * is checked against the limit before any buffer is allocated for the frame.
 * An incomplete frame holds only the chunks that arrived (an announced length
 * costs nothing until its bytes come), charged to a budget shared by
 * connections, and is joined into one buffer once whole.
 */
import { WireError, concatBytes } from "./codec";

/** Bytes held for incomplete frames, shared by many decoders (a server's clients). */
export class FrameBudget {
  private held = 0;

  constructor(readonly bytesMax: number) {}

  get heldBytes(): number {
    return this.held;
  }

  /** Takes `bytes` if they fit under the limit. */
  take(bytes: number): boolean {
    if (this.held + bytes > this.bytesMax) return false;
    this.held += bytes;
    return true;
  }

  give(bytes: number): void {
    this.held -= bytes;
  }
}

export const FRAME_HEADER_BYTES = 5;

export interface Frame {
  type: number;
  /** The body only; a view that stays valid (received chunks are never reused). */
  body: Uint8Array;
}

export class FrameDecoder {
  /** What arrived of an incomplete frame's body: views of the received chunks, pendingFilled bytes of pendingLength. */
  private pending: Uint8Array[] | null = null;
  private pendingFilled = 0;
  private pendingLength = 0;
  /** The budget this frame's chunks are charged to (the one of the moment it began), and how much. */
  private charged: FrameBudget | null = null;
  private chargedBytes = 0;
  /** Incomplete frames are charged to this, when set; over it the frame is refused (ELIMIT). */
  budget: FrameBudget | null = null;
  private header = new Uint8Array(FRAME_HEADER_BYTES);
  private headerFilled = 0;

  /** Raised for server links after their hello: a state transfer is larger than any client frame. */
  constructor(public frameBytesMax: number) {}

  /** True while part of a frame has arrived and the rest has not. */
  get receiving(): boolean {
    return this.pending !== null || this.headerFilled > 0;
  }

  /** Calls onFrame once per whole frame in order; throws WireError on a bad length. */
  push(chunk: Uint8Array, onFrame: (frame: Frame) => void): void {
    let offset = 0;
    while (offset < chunk.length) {
      if (this.pending) {
        const take = Math.min(this.pendingLength - this.pendingFilled, chunk.length - offset);
        this.charge(take);
        this.pending.push(chunk.subarray(offset, offset + take));
        this.pendingFilled += take;
        offset += take;
        this.emitIfComplete(onFrame);
        continue;
      }
      if (this.headerFilled === 0 && chunk.length - offset >= FRAME_HEADER_BYTES) {
        // Fast path: the whole header is in this chunk.
        const length = readLength(chunk, offset);
        const type = chunk[offset + 4]!;
        this.checkLength(length);
        const bodyLength = length - 1;
        const bodyStart = offset + FRAME_HEADER_BYTES;
        if (chunk.length - bodyStart >= bodyLength) {
          offset = bodyStart + bodyLength;
          onFrame({ type, body: chunk.subarray(bodyStart, bodyStart + bodyLength) });
        } else {
          this.header.set(chunk.subarray(offset, bodyStart));
          this.startBody(bodyLength);
          offset = bodyStart;
        }
        continue;
      }
      const take = Math.min(FRAME_HEADER_BYTES - this.headerFilled, chunk.length - offset);
      this.header.set(chunk.subarray(offset, offset + take), this.headerFilled);
      this.headerFilled += take;
      offset += take;
      if (this.headerFilled === FRAME_HEADER_BYTES) {
        const length = readLength(this.header, 0);
        this.checkLength(length);
        this.startBody(length - 1);
        this.emitIfComplete(onFrame);
      }
    }
  }

  private emitIfComplete(onFrame: (frame: Frame) => void): void {
    if (this.pending === null || this.pendingFilled !== this.pendingLength) return;
    const body = this.pending.length === 1 ? this.pending[0]! : concatBytes(this.pending);
    const type = this.header[4]!;
    this.discard();
    onFrame({ type, body });
  }

  /** Drops the incomplete frame, if any, and gives its bytes back to the budget (the link closed). */
  discard(): void {
    this.charged?.give(this.chargedBytes);
    this.charged = null;
    this.chargedBytes = 0;
    this.pending = null;
    this.pendingFilled = 0;
    this.pendingLength = 0;
    this.headerFilled = 0;
  }

  /** Charges `bytes` more of an incomplete frame to the budget; over it, the frame is refused (ELIMIT). */
  private charge(bytes: number): void {
    const budget = this.charged ?? this.budget;
    if (budget === null) return;
    if (!budget.take(bytes)) {
      throw new WireError(
        `the server is holding ${budget.heldBytes} bytes of incoming frames (limit ${budget.bytesMax}): ` +
          `this frame of ${this.pendingLength + 1} bytes does not fit now; retry later`,
        "ELIMIT",
      );
    }
    this.charged = budget;
    this.chargedBytes += bytes;
  }

  /** True when no partial frame is buffered (a clean place to close). */
  get idle(): boolean {
    return this.pending === null && this.headerFilled === 0;
  }

  private startBody(bodyLength: number): void {
    this.headerFilled = FRAME_HEADER_BYTES;
    this.pending = [];
    this.pendingLength = bodyLength;
    this.pendingFilled = 0;
  }

  private checkLength(length: number): void {
    if (length < 1) throw new WireError("frame length 0: every frame has a type byte");
    if (length > this.frameBytesMax) {
      throw new WireError(`frame of ${length} bytes is over the limit of ${this.frameBytesMax}`);
    }
  }
}

function readLength(bytes: Uint8Array, offset: number): number {
  return (bytes[offset]! | (bytes[offset + 1]! << 8) | (bytes[offset + 2]! << 16)) + bytes[offset + 3]! * 0x100_0000;
}

/** Writes the frame header into the first FRAME_HEADER_BYTES of `frame`. */
export function writeFrameHeader(frame: Uint8Array, type: number): Uint8Array {
  const length = frame.length - 4;
  frame[0] = length & 0xff;
  frame[1] = (length >>> 8) & 0xff;
  frame[2] = (length >>> 16) & 0xff;
  frame[3] = (length >>> 24) & 0xff;
  frame[4] = type;
  return frame;
}
