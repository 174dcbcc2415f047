#!/usr/bin/env bun
/**
 * Names for the JavaScript in `perf` profiles of pstore's processes, which show the kernel's
 * and the runtime's time beside it (`bun --cpu-prof-md`, bench/profile.ts, shows JavaScript
 * only). The compiled binary is stripped, but JavaScriptCore can log the code its JITs make
 * (BUN_JSC_useJITDump=1, one /tmp/jit-<thread>-<pid>-<random> file a process, in the jitdump
 * format). This turns each such file into the /tmp/perf-<pid>.map that `perf report` reads.
 *
 *   BUN_JSC_useJITDump=1 dist/pstore local --fsync off --data-dir /tmp/d     # servers inherit it
 *   perf record -g -p <server pid> -- sleep 3                                # while a bench runs
 *   bun bench/jit_map.ts [dump files...]                                     # default: /tmp/jit-*
 *   perf report --no-children --sort dso,sym
 *
 * Code freed and compiled again at the same address: the later function keeps the range.
 */
import { readFileSync, readdirSync, writeFileSync } from "node:fs";

const JIT_CODE_LOAD = 0;
const RECORD_HEADER_BYTES = 16; // id u32, total size u32, timestamp u64
const LOAD_FIXED_BYTES = 40; // pid u32, tid u32, vma u64, code address u64, code size u64, code index u64

interface CodeRange {
  start: bigint;
  end: bigint;
  name: string;
}

export function readJitDump(bytes: Uint8Array): CodeRange[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < 12 || view.getUint32(0, true) !== 0x4a695444) throw new Error("not a jitdump file (no JiTD magic)");
  let ranges: CodeRange[] = [];
  for (let offset = view.getUint32(8, true); offset + RECORD_HEADER_BYTES <= bytes.length; ) {
    const id = view.getUint32(offset, true);
    const size = view.getUint32(offset + 4, true);
    if (size < RECORD_HEADER_BYTES || offset + size > bytes.length) break; // the process was still writing it
    if (id === JIT_CODE_LOAD) {
      const body = offset + RECORD_HEADER_BYTES;
      const start = view.getBigUint64(body + 16, true);
      const end = start + view.getBigUint64(body + 24, true);
      const nameStart = body + LOAD_FIXED_BYTES;
      const nameEnd = bytes.indexOf(0, nameStart);
      const name = new TextDecoder().decode(bytes.subarray(nameStart, nameEnd < 0 ? nameStart : nameEnd));
      ranges = ranges.filter((range) => range.end <= start || range.start >= end);
      ranges.push({ start, end, name });
    }
    offset += size;
  }
  return ranges.sort((a, b) => (a.start < b.start ? -1 : 1));
}

if (import.meta.main) {
  const given = process.argv.slice(2);
  const files = given.length > 0 ? given : readdirSync("/tmp").filter((name) => /^jit-\d+-\d+-/.test(name)).map((name) => `/tmp/${name}`);
  if (files.length === 0) throw new Error("no /tmp/jit-* dump: start the processes with BUN_JSC_useJITDump=1");
  for (const file of files) {
    const pid = /jit-\d+-(\d+)-/.exec(file)?.[1];
    if (pid === undefined) throw new Error(`${file}: not named jit-<thread>-<pid>-<random>`);
    const ranges = readJitDump(new Uint8Array(readFileSync(file)));
    const lines = ranges.map((range) => `${range.start.toString(16)} ${(range.end - range.start).toString(16)} ${range.name}`);
    writeFileSync(`/tmp/perf-${pid}.map`, `${lines.join("\n")}\n`);
    console.log(`/tmp/perf-${pid}.map: ${ranges.length} functions (from ${file})`);
  }
}
