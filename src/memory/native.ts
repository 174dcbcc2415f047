/**
 * The only door to C: dlopen of c/pstore_mem.c, pstore_fault.c, pstore_shared.c
 * and pstore_large.c, compiled by build.ts into dist/libpstore_mem.so. The
 * `type: "file"` import embeds the library in the `bun build --compile`
 * executable and gives its path at run time (`cc()` from bun:ffi does not work
 * there). Run `bun run build.ts` once before `bun test`.
 *
 * Every wrapper throws a PStoreError carrying C's message when C says ERR.
 */
import { dlopen, ptr, toArrayBuffer, type Pointer } from "bun:ffi";
// @ts-ignore -- bun-types declares no module for "*.so"; Bun resolves it to a path.
import soPath from "../../dist/libpstore_mem.so" with { type: "file" };
import { PStoreError } from "../errors.ts";

/** Hold modes as c/pstore_mem.h numbers them. */
export const HOLD_NONE = 0;
export const HOLD_READ = 1;
export const HOLD_WRITE = 2;

const OK = 0;
const ERR_LEN = 256;

const lib = dlopen(soPath as string, {
  pstore_segment_map: { args: ["u32", "u32", "ptr"], returns: "i32" },
  pstore_segment_map_fd_readable: { args: ["u32", "u32", "i32", "ptr"], returns: "i32" },
  pstore_segment_base: { args: ["i32"], returns: "ptr" },
  pstore_segment_unmap: { args: ["i32", "ptr"], returns: "i32" },
  pstore_set_name: { args: ["i32", "u32", "u32", "ptr", "u32", "ptr"], returns: "i32" },
  pstore_protect: { args: ["i32", "u32", "u32", "i32", "ptr"], returns: "i32" },
  pstore_write_pages: { args: ["i32", "u32", "u32", "ptr", "u32", "ptr"], returns: "i32" },
  pstore_zero_pages: { args: ["i32", "u32", "u32", "ptr"], returns: "i32" },
  pstore_mark_dirty: { args: ["i32", "ptr", "u32", "ptr"], returns: "i32" },
  pstore_dirty_pages: { args: ["i32", "u32", "u32", "ptr", "ptr"], returns: "i32" },
  pstore_faults_upgraded: { args: [], returns: "u32" },
  pstore_faults_forwarded: { args: [], returns: "u32" },
  pstore_faults_widened: { args: [], returns: "u32" },
  pstore_faults_opened: { args: [], returns: "u32" },
  pstore_die_with_parent: { args: ["i32", "ptr"], returns: "i32" },
  pstore_lock_fd: { args: ["i32", "ptr"], returns: "i32" },
  pstore_shared_map: { args: ["i32", "f64", "u32", "ptr"], returns: "ptr" },
  pstore_shared_unmap: { args: ["ptr", "u32", "ptr"], returns: "i32" },
  pstore_shared_load32: { args: ["ptr", "u32"], returns: "u32" },
  pstore_shared_store32: { args: ["ptr", "u32", "u32"], returns: "void" },
  pstore_shared_cas32: { args: ["ptr", "u32", "u32", "u32"], returns: "u32" },
  pstore_shared_store64: { args: ["ptr", "u32", "f64"], returns: "void" },
  pstore_monotonic_ms: { args: [], returns: "f64" },
  pstore_large_alloc: { args: ["f64", "f64", "ptr", "ptr"], returns: "ptr" },
  pstore_large_free_fn: { args: [], returns: "ptr" },
  pstore_large_mapped: { args: [], returns: "f64" },
  pstore_large_unmapped: { args: [], returns: "f64" },
  pstore_large_kept_bytes: { args: [], returns: "f64" },
  pstore_large_release_kept: { args: [], returns: "void" },
});
const c = lib.symbols;

/** C writes its one-line reason here on ERR (single-threaded: one buffer is enough). */
const errBuffer = new Uint8Array(ERR_LEN);
const decoder = new TextDecoder();
/** A non-empty stand-in for empty inputs: FFI may turn an empty view into NULL. */
const noBytes = new Uint8Array(1);

function failure(what: string): PStoreError {
  const end = errBuffer.indexOf(0);
  const reason = decoder.decode(errBuffer.subarray(0, end < 0 ? ERR_LEN : end));
  errBuffer.fill(0);
  return new PStoreError("ELIMIT", `${what}: ${reason}`);
}

/** Maps a PROT_NONE segment; installs the SIGSEGV handler on first use. Returns its id. */
export function segmentMap(pageCount: number, pageSize: number): number {
  const seg = c.pstore_segment_map(pageCount, pageSize, errBuffer);
  if (seg < 0) throw failure("cannot map the segment");
  return seg;
}

/**
 * Maps the open file `fd` shared (another process maps the same bytes), readable
 * throughout: holds change the bookkeeping, not the protection. Returns its id.
 */
export function segmentMapFdReadable(pageCount: number, pageSize: number, fd: number): number {
  const seg = c.pstore_segment_map_fd_readable(pageCount, pageSize, fd, errBuffer);
  if (seg < 0) throw failure("cannot map the shared segment");
  return seg;
}

/** The address of the mapping's first byte. */
export function segmentBase(seg: number): number {
  const base = c.pstore_segment_base(seg);
  if (base === null) throw new PStoreError("EINVAL", `segment ${seg} is not mapped`);
  return base as number;
}

/** An ArrayBuffer over `bytes` of the mapping at `address`; it must not outlive segmentUnmap. */
export function bufferAt(address: number, bytes: number): ArrayBuffer {
  return toArrayBuffer(address as Pointer, 0, bytes);
}

/** Where a view's first byte is in this process's memory. */
export function addressOf(view: ArrayBufferView): number {
  return view.byteLength === 0 ? -1 : ptr(view as DataView);
}

export function segmentUnmap(seg: number): void {
  if (c.pstore_segment_unmap(seg, errBuffer) !== OK) throw failure("cannot unmap the segment");
}

export function setName(seg: number, firstPage: number, pageCount: number, name: Uint8Array): void {
  const bytes = name.length > 0 ? name : noBytes;
  if (c.pstore_set_name(seg, firstPage, pageCount, bytes, name.length, errBuffer) !== OK) {
    throw failure("cannot name the pages");
  }
}

export function protect(seg: number, firstPage: number, pageCount: number, mode: number): void {
  if (c.pstore_protect(seg, firstPage, pageCount, mode, errBuffer) !== OK) {
    throw failure("cannot change the protection");
  }
}

/** Page i of the run is at bytes[i * stride]. */
export function writePages(seg: number, firstPage: number, pageCount: number, bytes: Uint8Array, stride: number): void {
  if (pageCount === 0) return;
  if (c.pstore_write_pages(seg, firstPage, pageCount, bytes, stride, errBuffer) !== OK) {
    throw failure("cannot write the pages");
  }
}

/** Makes the pages zeros whatever their protection (kept); dirty bits unchanged. */
export function zeroPages(seg: number, firstPage: number, pageCount: number): void {
  if (pageCount === 0) return;
  if (c.pstore_zero_pages(seg, firstPage, pageCount, errBuffer) !== OK) throw failure("cannot zero the pages");
}

/** Marks write-held pages dirty (written through another process's mapping of a shared segment). */
export function markDirty(seg: number, pages: Uint32Array): void {
  if (pages.length === 0) return;
  if (c.pstore_mark_dirty(seg, pages, pages.length, errBuffer) !== OK) throw failure("cannot mark the pages dirty");
}

/** Fills `out` (room for pageCount entries) with the dirty page indices; returns how many. */
export function dirtyPages(seg: number, firstPage: number, pageCount: number, out: Uint32Array): number {
  const found = c.pstore_dirty_pages(seg, firstPage, pageCount, out, errBuffer);
  if (found < 0) throw failure("cannot list the dirty pages");
  return found;
}

export type FaultCounts = {
  /** First writes under a write hold that made their page writable. */
  upgraded: number;
  /** Faults outside every segment, passed on to JavaScriptCore's handler. */
  forwarded: number;
  /** First writes that, short of mappings (vm.max_map_count), dirtied their whole write-held run. */
  widened: number;
  /** First reads of write-held pages, which open them read-only. */
  opened: number;
};

/** Counters since start-up, for tests and benchmarks. */
export function faultCounts(): FaultCounts {
  return {
    upgraded: c.pstore_faults_upgraded(),
    forwarded: c.pstore_faults_forwarded(),
    widened: c.pstore_faults_widened(),
    opened: c.pstore_faults_opened(),
  };
}

/**
 * The kernel sends this process SIGTERM when its parent dies (prctl
 * PR_SET_PDEATHSIG), so a server started by a test or by `pstore local` does
 * not outlive it. If the parent is already gone (ppid no longer
 * `expectedParent`), SIGTERM is sent at once.
 */
export function dieWithParent(expectedParent: number = process.ppid): void {
  if (c.pstore_die_with_parent(expectedParent, errBuffer) !== OK) {
    throw failure("cannot follow the parent");
  }
}

const BUSY = 1;

/** An exclusive flock on an open file: true when taken, false when another process holds it. */
export function lockFd(fd: number): boolean {
  const result = c.pstore_lock_fd(fd, errBuffer);
  if (result === BUSY) return false;
  if (result !== OK) throw failure("cannot lock the file");
  return true;
}

/** Maps `bytes` of the open file `fd` from `offset`, shared read-write; returns its address. */
export function sharedMap(fd: number, offset: number, bytes: number): Pointer {
  const p = c.pstore_shared_map(fd, offset, bytes, errBuffer);
  if (p === null) throw failure("cannot map the shared table");
  return p as Pointer;
}

export function sharedUnmap(p: Pointer, bytes: number): void {
  if (c.pstore_shared_unmap(p, bytes, errBuffer) !== OK) throw failure("cannot unmap the shared table");
}

/** A view of `bytes` at `p`, for the fields another process reads only after an atomic word says so. */
export function sharedBuffer(p: Pointer, bytes: number): ArrayBuffer {
  return toArrayBuffer(p, 0, bytes);
}

export const sharedLoad32 = (p: Pointer, offset: number): number => c.pstore_shared_load32(p, offset);
export const sharedStore32 = (p: Pointer, offset: number, value: number): void => c.pstore_shared_store32(p, offset, value);
/** Returns the value found: equal to `expected` when it swapped. */
export const sharedCas32 = (p: Pointer, offset: number, expected: number, desired: number): number => c.pstore_shared_cas32(p, offset, expected, desired);
export const sharedStore64 = (p: Pointer, offset: number, value: number): void => c.pstore_shared_store64(p, offset, value);
/** CLOCK_MONOTONIC, the clock every process of the host shares, in ms. */
export const monotonicMs = (): number => c.pstore_monotonic_ms();

const largeCapacity = new Float64Array(1);
const largeFree = c.pstore_large_free_fn() as Pointer;

/**
 * A buffer of `bytes` for a large frame, mapped apart from the allocator (c/pstore_large.h):
 * once collected, its memory goes back to the system, but for one buffer of at most
 * `keepBytesMax` kept (pages in) for the next large frame. Null if it cannot be mapped.
 */
export function largeBuffer(bytes: number, keepBytesMax: number): Uint8Array | null {
  const p = c.pstore_large_alloc(bytes, keepBytesMax, largeCapacity, errBuffer);
  if (p === null) {
    errBuffer.fill(0);
    return null;
  }
  // The capacity rides as the deallocator's context: what pstore_large_free unmaps or keeps.
  const capacity = largeCapacity[0]!;
  const withDeallocator = toArrayBuffer as unknown as (p: Pointer, offset: number, bytes: number, context: number, free: Pointer) => ArrayBuffer;
  return new Uint8Array(withDeallocator(p as Pointer, 0, capacity, capacity, largeFree), 0, bytes);
}

/** Unmaps the large-frame buffer kept for the next frame, if any, and keeps none until the next largeBuffer. */
export const releaseKeptLargeBuffer = (): void => c.pstore_large_release_kept();

/** Large-frame buffers mapped and unmapped so far, the bytes of the one kept, and how many are in use (not yet collected). */
export function largeBufferCounts(): { mapped: number; unmapped: number; keptBytes: number; inUse: number } {
  const mapped = c.pstore_large_mapped();
  const unmapped = c.pstore_large_unmapped();
  const keptBytes = c.pstore_large_kept_bytes();
  return { mapped, unmapped, keptBytes, inUse: mapped - unmapped - (keptBytes > 0 ? 1 : 0) };
}
