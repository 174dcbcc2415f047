/**
 * `segment.json`: the segment size and page size a data dir's data belongs
 * to. They are part of what the log means: replaying a `create` in a smaller
 * segment refuses it (ENOSPC), in a larger one may grant what was refused, so
 * a server started with another --segment-size served a different state from
 * the same log, without a word (an acknowledged datum missing). The file is
 * written once, after the first recovery that checked out, and every start
 * compares it with the flags. A dir from before it had the file gets it then,
 * from the flags (its newest checkpoint, if any, was already compared).
 */
import { join } from "node:path";
import { formatBytes } from "../core/names";
import { RecoveryError } from "./errors";
import { loadJsonFile, saveJsonFile } from "./files";
import type { StoreFs } from "./fs";

const FILE = "segment.json";

export interface SegmentShape {
  segmentSize: number;
  pageSize: number;
}

/** The shape recorded in `dir`, or null when the dir has no record (new, or from before the file). */
export function loadSegmentShape(fs: StoreFs, dir: string): SegmentShape | null {
  const file = join(dir, FILE);
  const parsed = loadJsonFile(fs, file);
  if (parsed === undefined) return null;
  const shape = parsed as SegmentShape;
  const whole = (value: unknown) => Number.isSafeInteger(value) && (value as number) > 0;
  if (typeof shape !== "object" || shape === null || !whole(shape.segmentSize) || !whole(shape.pageSize)) {
    throw new RecoveryError(`${file}: not a segment size and a page size`);
  }
  return { segmentSize: shape.segmentSize, pageSize: shape.pageSize };
}

/** Throws a RecoveryError saying which --segment-size to start with when `dir`'s data has another shape. */
export function checkSegmentShape(recorded: SegmentShape | null, dir: string, wanted: SegmentShape): void {
  if (recorded === null) return;
  if (recorded.segmentSize === wanted.segmentSize && recorded.pageSize === wanted.pageSize) return;
  const pages = recorded.pageSize === wanted.pageSize ? "" : ` and pages of ${recorded.pageSize} bytes, not ${wanted.pageSize}`;
  throw new RecoveryError(
    `${dir} holds the data of a segment of ${formatBytes(recorded.segmentSize)}${pages}, not ${formatBytes(wanted.segmentSize)}: ` +
      `start with --segment-size ${formatBytes(recorded.segmentSize).replace(" ", "")} (a data dir keeps the segment size it was created with, ` +
      "and every server of a cluster has the same)",
  );
}

export function saveSegmentShape(fs: StoreFs, dir: string, shape: SegmentShape): void {
  saveJsonFile(fs, dir, FILE, { segmentSize: shape.segmentSize, pageSize: shape.pageSize });
}
