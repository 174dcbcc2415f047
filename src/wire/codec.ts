/**
 * Bounds-checked binary reader and writer for message bodies (little endian).
 * A reader never reads past its end: a short or malformed body throws
 * WireError, which the connection turns into an EPROTO error and a close.
 */

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder("utf-8", { fatal: true });

export class WireError extends Error {
  /** The error code the connection reports before closing: EPROTO, or ELIMIT for a frame over a budget. */
  constructor(
    message: string,
    readonly code: "EPROTO" | "ELIMIT" = "EPROTO",
  ) {
    super(message);
    this.name = "WireError";
  }
}

/** UTF-8 length of a string without encoding it twice in the hot path. */
export function utf8Length(text: string): number {
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0x80) bytes += 1;
    else if (code < 0x800) bytes += 2;
    else if (code >= 0xd800 && code <= 0xdbff && isLowSurrogate(text.charCodeAt(i + 1))) {
      bytes += 4;
      i++;
    } else bytes += 3; // other BMP characters, and lone surrogates (encoded as U+FFFD)
  }
  return bytes;
}

function isLowSurrogate(code: number): boolean {
  return code >= 0xdc00 && code <= 0xdfff;
}

function checkUint(value: number, max: number): void {
  if (!Number.isInteger(value) || value < 0 || value > max) throw new RangeError(`${value} is not an integer in 0..${max}`);
}

export class Writer {
  readonly bytes: Uint8Array;
  private readonly view: DataView;
  offset = 0;

  constructor(size: number) {
    this.bytes = new Uint8Array(size);
    this.view = new DataView(this.bytes.buffer);
  }

  // DataView's setters keep the low bits of anything: a timeout of 2^32 + 500 ms would arrive as 500.
  u8(value: number): this {
    checkUint(value, 0xff);
    this.view.setUint8(this.offset, value);
    this.offset += 1;
    return this;
  }

  u16(value: number): this {
    checkUint(value, 0xffff);
    this.view.setUint16(this.offset, value, true);
    this.offset += 2;
    return this;
  }

  u32(value: number): this {
    checkUint(value, 0xffff_ffff);
    this.view.setUint32(this.offset, value, true);
    this.offset += 4;
    return this;
  }

  /** A non-negative integer up to 2^53 (sequence numbers, session ids, sizes). */
  u53(value: number): this {
    if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`${value} is not an integer in 0..2^53`);
    this.view.setUint32(this.offset, value % 0x1_0000_0000, true);
    this.view.setUint32(this.offset + 4, Math.floor(value / 0x1_0000_0000), true);
    this.offset += 8;
    return this;
  }

  /** A signed integer up to ±2^53 stored as a float64 (e.g. -1 for "nothing cached"). */
  f64(value: number): this {
    this.view.setFloat64(this.offset, value, true);
    this.offset += 8;
    return this;
  }

  /** u16 byte length, then UTF-8. */
  str(text: string): this {
    const target = this.bytes.subarray(this.offset + 2);
    const { written } = textEncoder.encodeInto(text, target);
    // setUint16 would silently keep the low 16 bits of a longer length.
    if (written > 0xffff) throw new RangeError(`a string of ${written} bytes is over the 65535 of a u16 length`);
    this.view.setUint16(this.offset, written, true);
    this.offset += 2 + written;
    return this;
  }

  raw(bytes: Uint8Array): this {
    this.bytes.set(bytes, this.offset);
    this.offset += bytes.length;
    return this;
  }

  /** u32 byte length, then the bytes. */
  blob(bytes: Uint8Array): this {
    this.u32(bytes.length);
    return this.raw(bytes);
  }
}

export const sizeOf = {
  str: (text: string) => 2 + utf8Length(text),
  blob: (bytes: Uint8Array) => 4 + bytes.length,
};

export class Reader {
  private readonly view: DataView;
  offset: number;
  private readonly end: number;

  constructor(readonly bytes: Uint8Array, start = 0, end = bytes.length) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.offset = start;
    this.end = end;
  }

  get remaining(): number {
    return this.end - this.offset;
  }

  private need(count: number, what: string): void {
    if (this.offset + count > this.end) {
      throw new WireError(`truncated message: ${what} needs ${count} bytes, ${this.remaining} left`);
    }
  }

  u8(): number {
    this.need(1, "u8");
    return this.view.getUint8(this.offset++);
  }

  u16(): number {
    this.need(2, "u16");
    const value = this.view.getUint16(this.offset, true);
    this.offset += 2;
    return value;
  }

  u32(): number {
    this.need(4, "u32");
    const value = this.view.getUint32(this.offset, true);
    this.offset += 4;
    return value;
  }

  u53(): number {
    this.need(8, "u53");
    const low = this.view.getUint32(this.offset, true);
    const high = this.view.getUint32(this.offset + 4, true);
    if (high > 0x1f_ffff) throw new WireError("integer over 2^53");
    this.offset += 8;
    return high * 0x1_0000_0000 + low;
  }

  f64(): number {
    this.need(8, "f64");
    const value = this.view.getFloat64(this.offset, true);
    this.offset += 8;
    return value;
  }

  str(): string {
    const length = this.u16();
    this.need(length, "string");
    const start = this.offset;
    this.offset += length;
    try {
      return textDecoder.decode(this.bytes.subarray(start, start + length));
    } catch {
      throw new WireError("string is not valid UTF-8");
    }
  }

  /** A view into the frame, not a copy. */
  raw(length: number): Uint8Array {
    this.need(length, "bytes");
    const start = this.offset;
    this.offset += length;
    return this.bytes.subarray(start, start + length);
  }

  blob(): Uint8Array {
    return this.raw(this.u32());
  }

  /** Bodies must be consumed exactly: trailing bytes mean a malformed frame. */
  done(): void {
    if (this.offset !== this.end) throw new WireError(`${this.end - this.offset} unexpected trailing bytes`);
  }
}

/** The parts one after the other in a new buffer. */
export function concatBytes(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, part) => n + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** A code table the other way round: code → name, for decoding. */
export function invert<K extends string>(codes: Record<K, number>): Map<number, K> {
  return new Map(Object.entries(codes).map(([name, code]) => [code as number, name as K]));
}

export function decodeCode<K>(table: Map<number, K>, code: number, what: string): K {
  const name = table.get(code);
  if (name === undefined) throw new WireError(`unknown ${what} code ${code}`);
  return name;
}
