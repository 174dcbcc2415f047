/**
 * Small deterministic hashes for the simulator: FNV-1a over bytes and
 * strings, and a two-lane (64-bit) running hash of a sequence of numbers.
 * Not cryptographic: they only need to tell different histories apart.
 */
import { Writer, type Update, updateSize, writeUpdate } from "../wire";

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

export function fnvBytes(bytes: Uint8Array, seed = FNV_OFFSET): number {
  let h = seed >>> 0;
  for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i]!, FNV_PRIME);
  return h >>> 0;
}

export function fnvString(text: string, seed = FNV_OFFSET): number {
  let h = seed >>> 0;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), FNV_PRIME);
  return h >>> 0;
}

/** Mixes a 32-bit value into a 32-bit hash (murmur3's finaliser on the combination). */
export function mix32(h: number, value: number): number {
  let x = (h ^ Math.imul(value | 0, 0x9e3779b1)) >>> 0;
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
  return (x ^ (x >>> 16)) >>> 0;
}

/** Folds a number that may exceed 32 bits (sequence numbers, epochs, times). */
export function mixNumber(h: number, value: number): number {
  return mix32(mix32(h, value % 0x1_0000_0000), Math.floor(value / 0x1_0000_0000));
}

/** Two independent 32-bit digests of an update's wire form. */
export function updateDigest(update: Update): [number, number] {
  const writer = new Writer(updateSize(update));
  writeUpdate(writer, update);
  return [fnvBytes(writer.bytes), fnvBytes(writer.bytes, 0x2545f491)];
}

/** A 64-bit running hash kept as two 32-bit lanes. */
export class RunningHash {
  a = 0x6a09e667;
  b = 0xbb67ae85;

  add(value: number): void {
    this.a = mixNumber(this.a, value);
    this.b = mixNumber(this.b ^ 0x5bd1e995, value);
  }

  addString(text: string): void {
    this.add(fnvString(text));
  }

  hex(): string {
    return this.a.toString(16).padStart(8, "0") + this.b.toString(16).padStart(8, "0");
  }
}
