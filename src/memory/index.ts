/** The memory layer: the mapped segment, its page protections and dirty pages; memory shared with a C program. */
export { MappedSegment, faultCounts, type FaultCounts, type HoldMode } from "./segment.ts";
export { SharedRegion, monotonicMs } from "./shared.ts";
export { dieWithParent, largeBuffer, largeBufferCounts, lockFd, releaseKeptLargeBuffer } from "./native.ts";
