import { describe, expect, test } from "bun:test";
import { AssertionError, assert, present, unreachable } from "../src/assert";
import * as limits from "../src/constants";

describe("assert", () => {
  test("passes when the condition holds and throws its message when not", () => {
    expect(() => assert(1 + 1 === 2, "arithmetic")).not.toThrow();
    expect(() => assert(false, "chain is empty")).toThrow(new AssertionError("chain is empty"));
  });
  test("present returns the value and throws on undefined or null, not on falsy values", () => {
    expect(present(0, "zero")).toBe(0);
    expect(present("", "empty")).toBe("");
    expect(() => present(undefined, "no view of peer 3")).toThrow("no view of peer 3");
    expect(() => present(null, "no listener")).toThrow("no listener");
  });
  test("unreachable always throws", () => {
    expect(() => unreachable("mode")).toThrow("unreachable: mode");
  });
});

describe("limits", () => {
  test("the local-cluster and duration limits are the single ones of src/constants.ts", () => {
    expect(limits.LOCAL_SERVERS_MAX).toBeLessThan(limits.SERVERS_MAX);
    expect(limits.BENCH_DURATION_MS_MAX).toBeLessThanOrEqual(limits.TIMER_MS_MAX);
    expect(limits.SESSION_TIMEOUT_MS_MAX).toBeLessThanOrEqual(limits.TIMER_MS_MAX);
  });
});
