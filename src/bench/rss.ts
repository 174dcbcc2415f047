/** Resident memory of a process, from Linux's /proc/<pid>/status (VmRSS). */
import { readFileSync } from "node:fs";

/** VmRSS of `pid` in KiB, or null when it cannot be read (not Linux, process gone). */
export function rssKiB(pid: number): number | null {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, "utf8");
  } catch {
    return null;
  }
  const match = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status);
  return match ? Number(match[1]) : null;
}

export interface ServerRss {
  /** 1-based, as people count servers. */
  server: number;
  pid: number;
  rss_kib: number;
}

/** RSS of each running server (stopped ones are left out). */
export function serversRss(pids: readonly (number | null)[]): ServerRss[] {
  const result: ServerRss[] = [];
  pids.forEach((pid, index) => {
    if (pid === null) return;
    const rss = rssKiB(pid);
    if (rss !== null) result.push({ server: index + 1, pid, rss_kib: rss });
  });
  return result;
}
