/** The caller's options checked before use: a bad one is EINVAL naming it, never a timer that fires at once or never. */
import { SESSION_TIMEOUT_MS_MAX, SESSION_TIMEOUT_MS_MIN, TIMER_MS_MAX } from "../constants";
import { PStoreError } from "../errors";
import type { AccessOptions, ConnectOptions } from "./types";

export function checkConnectOptions(options: ConnectOptions): void {
  checkMs(options.connectTimeoutMs, "connectTimeoutMs", 1, TIMER_MS_MAX);
  checkMs(options.failoverTimeoutMs, "failoverTimeoutMs", 1, TIMER_MS_MAX);
  checkMs(options.sessionTimeoutMs, "sessionTimeoutMs", SESSION_TIMEOUT_MS_MIN, SESSION_TIMEOUT_MS_MAX);
}

/** EINVAL for a bad timeoutMs (0 is allowed: a hold granted at once, or ETIMEDOUT), else null. */
export function accessOptionsProblem(options: AccessOptions): PStoreError | null {
  if (options.timeoutMs === undefined) return null; // the usual case, on the cached access's path
  try {
    checkMs(options.timeoutMs, "timeoutMs", 0, TIMER_MS_MAX);
    return null;
  } catch (error) {
    return error as PStoreError;
  }
}

function checkMs(value: number | undefined, name: string, min: number, max: number): void {
  if (value === undefined) return;
  if (typeof value !== "number" || !Number.isFinite(value) || value < min || value > max) {
    throw new PStoreError("EINVAL", `${name} must be a number of milliseconds from ${min} to ${max} (got ${String(value)})`);
  }
}
