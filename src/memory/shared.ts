/**
 * Memory shared with another process (the agent's lending table, which the C
 * program it serves maps too: c/pstore_lend.h): plain bytes for fields, and
 * 32-bit words changed atomically through C (JavaScript's Atomics promise
 * nothing across processes on memory Bun did not allocate).
 */
import type { Pointer } from "bun:ffi";
import { PStoreError } from "../errors.ts";
import * as native from "./native.ts";

export class SharedRegion {
  /** Plain access, for fields published by a later atomic store. */
  readonly bytes: Uint8Array;
  readonly view: DataView;
  #address: Pointer | null;

  private constructor(
    address: Pointer,
    readonly size: number,
  ) {
    this.#address = address;
    const buffer = native.sharedBuffer(address, size);
    this.bytes = new Uint8Array(buffer);
    this.view = new DataView(buffer);
  }

  /** Maps `size` bytes of the open file `fd` from `offset` (a multiple of the page size). */
  static map(fd: number, offset: number, size: number): SharedRegion {
    return new SharedRegion(native.sharedMap(fd, offset, size), size);
  }

  load32(offset: number): number {
    return native.sharedLoad32(this.#at(offset, 4), offset);
  }

  store32(offset: number, value: number): void {
    native.sharedStore32(this.#at(offset, 4), offset, value >>> 0);
  }

  /** Swaps in `desired` if the word is `expected`; returns the word found (=== expected: swapped). */
  cas32(offset: number, expected: number, desired: number): number {
    return native.sharedCas32(this.#at(offset, 4), offset, expected >>> 0, desired >>> 0);
  }

  store64(offset: number, value: number): void {
    native.sharedStore64(this.#at(offset, 8), offset, Math.max(0, Math.floor(value)));
  }

  unmap(): void {
    const address = this.#address;
    if (address === null) return;
    this.#address = null;
    native.sharedUnmap(address, this.size);
  }

  #at(offset: number, width: number): Pointer {
    if (this.#address === null) throw new PStoreError("ECLOSED", "the shared region was unmapped");
    if (offset % width !== 0 || offset < 0 || offset + width > this.size) {
      throw new PStoreError("EINVAL", `offset ${offset} is not a ${width}-byte word of the ${this.size}-byte region`);
    }
    return this.#address;
  }
}

export const monotonicMs = native.monotonicMs;
