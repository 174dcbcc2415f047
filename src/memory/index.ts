/** The memory layer: the mapped segment, its page protections and dirty pages. */
export { MappedSegment, faultCounts, type FaultCounts, type HoldMode } from "./segment.ts";
export { dieWithParent, lockFd } from "./native.ts";
