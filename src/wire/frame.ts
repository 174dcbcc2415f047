/**
 * Frames: u32 length (of what follows, little endian), u8 type, body.
 * The decoder takes arbitrary chunks and hands back whole frames; the length
 * is checked against the limit before any buffer is allocated for the frame.
 * What arrives of an incomplete frame is charged to a budget shared by
 * connections. A frame keeps its chunks and joins them once whole (an
 * announced length costs nothing until its bytes come). From `assembleBytesMin`
 * on, a frame is instead copied as it comes into one buffer of its announced
 * length, which the system backs with memory only as bytes are written into
 * it, so each chunk is freed at once and reused for the next: no second copy
 * of a 64 MiB frame, and no fresh pages for its chunks (a page fault costs
 * ~11 µs on our VM). Servers' links assemble from 256 KiB; clients' links
 * (budgeted) only frames whose buffer the server maps apart and gives back
 * to the system once collected: a buffer from the allocator, written and
 * dropped, would stay with the process, and a client could spread its bytes
 * over many.
 */
import { FRAME_ASSEMBLE_BYTES_MIN } from "../constants";
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
  /** The body of an incomplete large frame, filled up to pendingFilled. */
  private assembly: Uint8Array | null = null;
  private pendingFilled = 0;
  private pendingLength = 0;
  /** The budget this frame's chunks are charged to (the one of the moment it began), and how much. */
  private charged: FrameBudget | null = null;
  private chargedBytes = 0;
  /** Incomplete frames are charged to this, when set; over it the frame is refused (ELIMIT). */
  budget: FrameBudget | null = null;
  /** From this body length on, a frame is copied into one buffer as it arrives (see above). */
  assembleBytesMin = Infinity;
  private header = new Uint8Array(FRAME_HEADER_BYTES);
  private headerFilled = 0;

  /**
   * frameBytesMax is raised for server links after their hello (a state transfer is larger
   * than any client frame); `allocate` makes the buffer of a large frame (a host may first
   * collect the garbage of the last one, so that its memory is reused rather than fresh), or
   * says null when it cannot: the frame then keeps its chunks.
   */
  constructor(
    public frameBytesMax: number,
    private readonly allocate: (bytes: number) => Uint8Array | null = (bytes) => new Uint8Array(bytes),
  ) {}

  /** Calls onFrame once per whole frame in order; throws WireError on a bad length. */
  push(chunk: Uint8Array, onFrame: (frame: Frame) => void): void {
    let offset = 0;
    while (offset < chunk.length) {
      if (this.pending || this.assembly) {
        const take = Math.min(this.pendingLength - this.pendingFilled, chunk.length - offset);
        this.charge(take);
        if (this.assembly) this.assembly.set(chunk.subarray(offset, offset + take), this.pendingFilled);
        else this.pending!.push(chunk.subarray(offset, offset + take));
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
    if ((this.pending === null && this.assembly === null) || this.pendingFilled !== this.pendingLength) return;
    const body = this.assembly ?? this.joined(this.pending!);
    const type = this.header[4]!;
    this.discard();
    onFrame({ type, body });
  }

  private joined(chunks: Uint8Array[]): Uint8Array {
    if (chunks.length === 1) return chunks[0]!;
    if (this.pendingLength < FRAME_ASSEMBLE_BYTES_MIN) return concatBytes(chunks);
    const body = this.allocate(this.pendingLength);
    if (body === null) return concatBytes(chunks);
    let at = 0;
    for (const chunk of chunks) {
      body.set(chunk, at);
      at += chunk.length;
    }
    return body;
  }

  /** The announced body length of the frame being copied into one buffer (0: none). */
  get assemblingBytes(): number {
    return this.assembly === null ? 0 : this.pendingLength;
  }

  /** Bytes of the incomplete frame received so far. */
  get heldBytes(): number {
    return this.pendingFilled;
  }

  /** Drops the incomplete frame, if any, and gives its bytes back to the budget (the link closed). */
  discard(): void {
    this.charged?.give(this.chargedBytes);
    this.charged = null;
    this.chargedBytes = 0;
    this.pending = null;
    this.assembly = null;
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
    return this.pending === null && this.assembly === null && this.headerFilled === 0;
  }

  private startBody(bodyLength: number): void {
    this.headerFilled = FRAME_HEADER_BYTES;
    this.assembly = bodyLength >= this.assembleBytesMin ? this.allocate(bodyLength) : null;
    if (this.assembly === null) this.pending = [];
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
