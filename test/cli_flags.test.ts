import { describe, expect, test } from "bun:test";
import type { ArgsDef } from "citty";
import {
  checkFlags,
  formatBytes,
  parseAddressList,
  parseCount,
  parseDurationMs,
  parseHostPort,
  parseList,
  parseSegmentSize,
  parseSize,
  requireNonEmpty,
  UsageError,
} from "../src/cli/flags.ts";
import { SEGMENT_SIZE_MAX } from "../src/constants.ts";

const ARGS: ArgsDef = {
  listen: { type: "string", required: true, valueHint: "host:port" },
  "data-dir": { type: "string" },
  fsync: { type: "enum", options: ["always", "batch", "off"], default: "always" },
  verbose: { type: "boolean" },
};

function usageMessage(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(UsageError);
    return (error as Error).message;
  }
  throw new Error("expected a UsageError");
}

describe("checkFlags", () => {
  test("accepts known flags in every spelling citty accepts", () => {
    checkFlags(["--listen", "a:1", "--data-dir", "d", "--fsync=off", "--verbose"], ARGS, "serve");
    checkFlags(["--listen=a:1", "--dataDir", "d", "--no-verbose", "--verbose=false"], ARGS, "serve");
    checkFlags(["--listen", "a:1", "--help"], ARGS, "serve");
  });

  test("rejects an unknown flag, naming it and suggesting the near one", () => {
    expect(usageMessage(() => checkFlags(["--listen", "a:1", "--dta-dir", "x"], ARGS, "pstore serve"))).toBe(
      'unknown flag --dta-dir for "pstore serve" (did you mean --data-dir?)',
    );
    expect(usageMessage(() => checkFlags(["--listen", "a:1", "--zzzzzz"], ARGS, "pstore serve"))).toBe(
      'unknown flag --zzzzzz for "pstore serve"',
    );
    expect(usageMessage(() => checkFlags(["--listen", "a:1", "-x"], ARGS, "s"))).toContain("unknown flag -x");
  });

  test("rejects a missing or empty value", () => {
    expect(usageMessage(() => checkFlags(["--listen"], ARGS, "s"))).toBe("--listen needs a value (host:port)");
    expect(usageMessage(() => checkFlags(["--listen", "--verbose"], ARGS, "s"))).toBe("--listen needs a value (host:port)");
    expect(usageMessage(() => checkFlags(["--listen="], ARGS, "s"))).toBe("--listen needs a value, got an empty one");
    expect(usageMessage(() => checkFlags(["--listen", "  "], ARGS, "s"))).toBe("--listen needs a value, got an empty one");
  });

  test("rejects an enum value out of its set and a value given to a switch", () => {
    expect(usageMessage(() => checkFlags(["--listen", "a:1", "--fsync", "sometimes"], ARGS, "s"))).toBe(
      '--fsync must be one of always, batch, off (got "sometimes")',
    );
    expect(usageMessage(() => checkFlags(["--listen", "a:1", "--verbose=yes"], ARGS, "s"))).toBe(
      '--verbose is a switch and takes no value (got "yes")',
    );
  });

  test("requires required flags and refuses stray arguments", () => {
    expect(usageMessage(() => checkFlags([], ARGS, "s"))).toBe("--listen is required (host:port)");
    expect(usageMessage(() => checkFlags(["--listen", "a:1", "extra"], ARGS, "pstore serve"))).toBe(
      '"pstore serve" takes no arguments, only flags (unexpected "extra")',
    );
  });
});

describe("parseSize", () => {
  test("bytes and binary units", () => {
    expect(parseSize("4096", "x")).toBe(4096);
    expect(parseSize("4096B", "x")).toBe(4096);
    expect(parseSize("4KiB", "x")).toBe(4096);
    expect(parseSize("64k", "x")).toBe(65536);
    expect(parseSize("256MiB", "x")).toBe(256 * 1024 * 1024);
    expect(parseSize("256M", "x")).toBe(256 * 1024 * 1024);
    expect(parseSize("1GiB", "x")).toBe(1024 ** 3);
    expect(parseSize("1g", "x")).toBe(1024 ** 3);
    expect(parseSize("2TiB", "x")).toBe(2 * 1024 ** 4);
    expect(parseSize(" 12 ", "x")).toBe(12);
  });

  test("rejects junk, decimals, negative numbers and ambiguous units", () => {
    expect(usageMessage(() => parseSize("abc", "--segment-size"))).toStartWith('--segment-size: "abc" is not a size; use');
    expect(usageMessage(() => parseSize("1.5MiB", "SIZE"))).toContain("is not a size");
    expect(usageMessage(() => parseSize("-4", "SIZE"))).toContain("is not a size");
    expect(usageMessage(() => parseSize("", "SIZE"))).toContain("is not a size");
    expect(usageMessage(() => parseSize("4MB", "SIZE"))).toBe('SIZE: "4MB" is ambiguous (1000 or 1024?); write 4MiB');
    expect(usageMessage(() => parseSize("4XiB", "SIZE"))).toBe('SIZE: unknown unit "XiB" in "4XiB"; use B, KiB, MiB, GiB or TiB');
    expect(usageMessage(() => parseSize("99999999999TiB", "SIZE"))).toBe('SIZE: "99999999999TiB" is too large');
  });

  test("segment sizes are whole pages within the limit", () => {
    expect(parseSegmentSize("256MiB")).toBe(256 * 1024 * 1024);
    expect(parseSegmentSize("4096")).toBe(4096);
    expect(usageMessage(() => parseSegmentSize("4097"))).toContain("not a whole number of 4096-byte pages");
    expect(usageMessage(() => parseSegmentSize("0"))).toContain("not a whole number of 4096-byte pages");
    expect(usageMessage(() => parseSegmentSize("1TiB"))).toBe(
      `--segment-size: 1TiB is over the limit of ${formatBytes(SEGMENT_SIZE_MAX)}`,
    );
  });
});

describe("parseDurationMs and parseCount", () => {
  test("positive whole milliseconds", () => {
    expect(parseDurationMs("10000", "--session-timeout-ms")).toBe(10000);
    expect(parseDurationMs("1", "x")).toBe(1);
    expect(usageMessage(() => parseDurationMs("0", "--heartbeat-ms"))).toBe("--heartbeat-ms: must be at least 1 ms (got 0)");
    expect(usageMessage(() => parseDurationMs("1.5", "x"))).toContain("not a whole number of milliseconds");
    expect(usageMessage(() => parseDurationMs("10s", "x"))).toContain("not a whole number of milliseconds");
    expect(usageMessage(() => parseDurationMs("-3", "x"))).toContain("not a whole number of milliseconds");
    expect(usageMessage(() => parseDurationMs("99999999999", "x"))).toContain("over the limit");
  });

  test("counts", () => {
    expect(parseCount("3", "--servers", 16)).toBe(3);
    expect(usageMessage(() => parseCount("0", "--servers", 16))).toBe('--servers: "0" is not a whole number from 1 to 16');
    expect(usageMessage(() => parseCount("17", "--servers", 16))).toContain("from 1 to 16");
    expect(usageMessage(() => parseCount("two", "--servers", 16))).toContain("from 1 to 16");
  });
});

describe("addresses and lists", () => {
  test("host:port", () => {
    expect(parseHostPort("127.0.0.1:7401", "--listen")).toEqual({ host: "127.0.0.1", port: 7401 });
    expect(parseHostPort("localhost:1", "--listen")).toEqual({ host: "localhost", port: 1 });
    expect(parseHostPort("[::1]:7401", "--listen")).toEqual({ host: "::1", port: 7401 });
    expect(parseHostPort("127.0.0.1:0", "--listen", { allowPortZero: true }).port).toBe(0);
    expect(usageMessage(() => parseHostPort("127.0.0.1:0", "--peers"))).toBe(
      '--peers: port 0 in "127.0.0.1:0" is not from 1 to 65535',
    );
    expect(usageMessage(() => parseHostPort("127.0.0.1:70000", "--listen"))).toContain("not from 1 to 65535");
    expect(usageMessage(() => parseHostPort("127.0.0.1", "--listen"))).toBe(
      '--listen: "127.0.0.1" is not host:port (e.g. 127.0.0.1:7401)',
    );
    expect(usageMessage(() => parseHostPort(":7401", "--listen"))).toContain("is not host:port");
    expect(usageMessage(() => parseHostPort("a:b", "--listen"))).toContain("is not host:port");
  });

  test("comma lists reject empty items and duplicates", () => {
    expect(parseList("a, b ,c", "x")).toEqual(["a", "b", "c"]);
    expect(usageMessage(() => parseList("a,,b", "--peers"))).toBe('--peers: "a,,b" has an empty item; write a,b,c with no empty entries');
    expect(usageMessage(() => parseList("a,", "--peers"))).toContain("empty item");
    expect(parseAddressList("127.0.0.1:1,127.0.0.1:2", "--peers")).toEqual(["127.0.0.1:1", "127.0.0.1:2"]);
    expect(parseAddressList("[::1]:5", "--peers")).toEqual(["[::1]:5"]);
    expect(usageMessage(() => parseAddressList("127.0.0.1:1, 127.0.0.1:1", "--peers"))).toBe(
      "--peers: 127.0.0.1:1 is listed twice",
    );
  });

  test("empty values and byte formatting", () => {
    expect(requireNonEmpty("x", "--secret")).toBe("x");
    expect(usageMessage(() => requireNonEmpty("", "--secret"))).toBe("--secret needs a value");
    expect(usageMessage(() => requireNonEmpty(undefined, "--secret"))).toBe("--secret needs a value");
    expect(formatBytes(256 * 1024 * 1024)).toBe("256 MiB");
    expect(formatBytes(4096)).toBe("4 KiB");
    expect(formatBytes(4097)).toBe("4097 B");
  });
});
