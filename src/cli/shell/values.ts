/**
 * The shell's value types and how each is laid out in a datum's bytes
 * (little-endian, the byte order of the machines pstore runs on, so a C
 * client's `*(int32_t *)p` reads what `write NAME i32` wrote):
 *
 *   i32  4 bytes, -2147483648..2147483647       (decimal, or 0x hex)
 *   u32  4 bytes, 0..4294967295
 *   i64  8 bytes, -2^63..2^63-1
 *   f64  8 bytes, IEEE 754 double (1.5, -2e10, inf, -inf, nan)
 *   str  UTF-8 bytes, then a NUL when there is room for it; read back up to
 *        the first NUL or the end of the datum, printed as a quoted string
 *   hex  raw bytes written as hex digits (0xdeadbeef or deadbeef)
 *
 * Nothing is ever truncated: a value out of its type's range, or one that
 * does not fit in the datum at that offset, is an EINVAL error.
 */
import { PStoreError } from "../../errors.ts";
import { quoteWord } from "../format.ts";

export const VALUE_TYPES = ["i32", "u32", "i64", "f64", "str", "hex"] as const;
export type ValueType = (typeof VALUE_TYPES)[number];

/** The most bytes `read … str|hex` prints in one line unless a LENGTH is given. */
export const READ_BYTES_MAX = 65536;

const _WIDTHS: Partial<Record<ValueType, number>> = { i32: 4, u32: 4, i64: 8, f64: 8 };

export function parseValueType(text: string): ValueType {
  if ((VALUE_TYPES as readonly string[]).includes(text)) return text as ValueType;
  throw new PStoreError("EINVAL", `unknown type "${text}"; use one of ${VALUE_TYPES.join(" ")}`);
}

/** A byte offset or length: a whole number, decimal or 0x hex. */
export function parseByteCount(text: string, what: string): number {
  if (!/^(\d+|0x[0-9a-fA-F]+)$/.test(text) || !Number.isSafeInteger(Number(text))) {
    throw new PStoreError("EINVAL", `${what} "${text}" is not a whole number of bytes`);
  }
  return Number(text);
}

/** The bytes a value takes, before knowing where it goes. */
export function encodeValue(type: ValueType, text: string): Uint8Array {
  switch (type) {
    case "i32":
      return _integer(text, type, -(2n ** 31n), 2n ** 31n - 1n, 4);
    case "u32":
      return _integer(text, type, 0n, 2n ** 32n - 1n, 4);
    case "i64":
      return _integer(text, type, -(2n ** 63n), 2n ** 63n - 1n, 8);
    case "f64": {
      const bytes = new Uint8Array(8);
      new DataView(bytes.buffer).setFloat64(0, _float(text), true);
      return bytes;
    }
    case "str":
      return new TextEncoder().encode(text);
    case "hex":
      return _hex(text);
  }
}

function _integer(text: string, type: ValueType, min: bigint, max: bigint, width: 4 | 8): Uint8Array {
  const match = /^([+-]?)(\d+|0[xX][0-9a-fA-F]+)$/.exec(text);
  if (!match) throw new PStoreError("EINVAL", `"${text}" is not an integer (${type})`);
  const magnitude = BigInt(match[2]!);
  const value = match[1] === "-" ? -magnitude : magnitude;
  if (value < min || value > max) {
    throw new PStoreError("EINVAL", `${text} is out of range for ${type} (${min}..${max})`);
  }
  const bytes = new Uint8Array(width);
  const view = new DataView(bytes.buffer);
  if (width === 8) view.setBigUint64(0, BigInt.asUintN(64, value), true);
  else view.setUint32(0, Number(BigInt.asUintN(32, value)), true);
  return bytes;
}

function _float(text: string): number {
  const lower = text.toLowerCase();
  if (/^[+]?(inf|infinity)$/.test(lower)) return Number.POSITIVE_INFINITY;
  if (/^-(inf|infinity)$/.test(lower)) return Number.NEGATIVE_INFINITY;
  if (lower === "nan") return Number.NaN;
  if (!/^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/.test(lower)) {
    throw new PStoreError("EINVAL", `"${text}" is not a number (f64: 1.5, -2e10, inf, nan)`);
  }
  const value = Number(text);
  if (!Number.isFinite(value)) throw new PStoreError("EINVAL", `${text} is out of range for f64`);
  return value;
}

function _hex(text: string): Uint8Array {
  const digits = text.replace(/^0x/i, "");
  if (digits === "" || !/^([0-9a-fA-F]{2})+$/.test(digits)) {
    throw new PStoreError("EINVAL", `"${text}" is not hex bytes (an even number of hex digits, e.g. 0xdeadbeef)`);
  }
  return Uint8Array.from(digits.match(/../g)!, (pair) => Number.parseInt(pair, 16));
}

/**
 * Writes an encoded value at `offset` of a datum's view; a str also gets a
 * terminating NUL when one more byte fits. Returns the bytes written.
 */
export function writeValue(view: Uint8Array, name: string, type: ValueType, bytes: Uint8Array, offset: number): number {
  _checkRange(view, name, type, offset, bytes.length);
  view.set(bytes, offset);
  if (type === "str" && offset + bytes.length < view.length) {
    view[offset + bytes.length] = 0;
    return bytes.length + 1;
  }
  return bytes.length;
}

export interface ReadResult {
  /** What the shell prints. */
  text: string;
  /** What `--json` prints: numbers where JSON holds them exactly, else strings. */
  json: number | string;
}

export function readValue(view: Uint8Array, name: string, type: ValueType, offset: number, length?: number): ReadResult {
  const width = _WIDTHS[type];
  if (width !== undefined) {
    if (length !== undefined) throw new PStoreError("EINVAL", `a LENGTH is only for str and hex; ${type} is ${width} bytes`);
    _checkRange(view, name, type, offset, width);
    const data = new DataView(view.buffer, view.byteOffset + offset, width);
    switch (type) {
      case "i32":
        return _number(data.getInt32(0, true));
      case "u32":
        return _number(data.getUint32(0, true));
      case "i64": {
        const value = data.getBigInt64(0, true).toString();
        return { text: value, json: value };
      }
      default: {
        const value = data.getFloat64(0, true);
        const text = Object.is(value, -0) ? "-0" : String(value);
        return { text, json: Number.isFinite(value) ? value : text };
      }
    }
  }
  const end = _readEnd(view, name, type, offset, length);
  const bytes = view.subarray(offset, end);
  if (type === "hex") {
    const hex = Buffer.from(bytes).toString("hex");
    return { text: hex === "" ? "(0 bytes)" : `0x${hex}`, json: hex };
  }
  const nul = bytes.indexOf(0);
  if (nul === -1 && length === undefined && bytes.length === READ_BYTES_MAX && end < view.length) {
    throw new PStoreError("EINVAL", `no NUL in the ${READ_BYTES_MAX} bytes at offset ${offset} of "${name}"; give a LENGTH`);
  }
  const text = nul === -1 ? bytes : bytes.subarray(0, nul);
  const value = new TextDecoder().decode(text);
  return { text: _quoteUtf8(text) ?? JSON.stringify(value), json: value };
}

/**
 * Bytes that are not all valid UTF-8, quoted with each bad byte as `\xNN`
 * (not as U+FFFD, which would hide what is there); null when they are valid.
 */
function _quoteUtf8(bytes: Uint8Array): string | null {
  const strict = new TextDecoder("utf-8", { fatal: true });
  try {
    strict.decode(bytes);
    return null;
  } catch {
    // Some bytes are not UTF-8: decode the valid runs, escape the rest.
  }
  let out = "";
  let start = 0;
  for (let at = 0; at < bytes.length; ) {
    const length = _utf8Length(bytes, at);
    if (length > 0) {
      at += length;
      continue;
    }
    out += JSON.stringify(new TextDecoder().decode(bytes.subarray(start, at))).slice(1, -1);
    out += `\\x${bytes[at]!.toString(16).padStart(2, "0")}`;
    start = ++at;
  }
  out += JSON.stringify(new TextDecoder().decode(bytes.subarray(start))).slice(1, -1);
  return `"${out}"`;
}

/** The length of the valid UTF-8 sequence at `at`, or 0 if the byte there does not start one. */
function _utf8Length(bytes: Uint8Array, at: number): number {
  const lead = bytes[at]!;
  const length = lead < 0x80 ? 1 : lead >= 0xc2 && lead <= 0xdf ? 2 : lead >= 0xe0 && lead <= 0xef ? 3 : lead >= 0xf0 && lead <= 0xf4 ? 4 : 0;
  if (length <= 1 || at + length > bytes.length) return length === 1 ? 1 : 0;
  try {
    new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(at, at + length));
    return length;
  } catch {
    return 0;
  }
}

function _number(value: number): ReadResult {
  return { text: String(value), json: value };
}

/** Where a str/hex read stops: LENGTH bytes, else the datum's end, capped at READ_BYTES_MAX. */
function _readEnd(view: Uint8Array, name: string, type: ValueType, offset: number, length: number | undefined): number {
  if (offset > view.length) {
    throw new PStoreError("EINVAL", `offset ${offset} is past the end of "${name}" (${view.length} bytes)`);
  }
  if (length !== undefined) {
    if (length > READ_BYTES_MAX) throw new PStoreError("EINVAL", `LENGTH ${length} is over the limit of ${READ_BYTES_MAX} bytes`);
    _checkRange(view, name, type, offset, length);
    return offset + length;
  }
  const rest = view.length - offset;
  if (type === "hex" && rest > READ_BYTES_MAX) {
    throw new PStoreError("EINVAL", `"${name}" has ${rest} bytes from offset ${offset}; give a LENGTH of at most ${READ_BYTES_MAX}`);
  }
  return offset + Math.min(rest, READ_BYTES_MAX);
}

function _checkRange(view: Uint8Array, name: string, type: ValueType, offset: number, bytes: number): void {
  if (offset + bytes > view.length) {
    const what = bytes === 1 ? `byte ${offset}` : `bytes ${offset}..${offset + bytes - 1}`;
    throw new PStoreError(
      "EINVAL",
      `${type} at offset ${offset} needs ${what} but ${quoteWord(name)} is ${view.length} byte${view.length === 1 ? "" : "s"}`,
    );
  }
}
