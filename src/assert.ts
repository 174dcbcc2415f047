/**
 * Assertions that stay on in production (TigerBeetle's style): an invariant
 * that does not hold is a bug, and crashing with a message that names it beats
 * running on with corrupt state. Not for bad input: that gets a clear error.
 * In hot paths pass a plain string: a template literal is built on every call.
 */

export class AssertionError extends Error {
  override name = "AssertionError";
}

/** Throws an AssertionError with `message` unless `condition` holds. */
export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new AssertionError(message);
}

/** The value, asserted present: for a lookup an invariant says cannot miss. */
export function present<T>(value: T | undefined | null, message: string): T {
  if (value === undefined || value === null) throw new AssertionError(message);
  return value;
}

/** For a branch the types or the protocol make impossible. */
export function unreachable(message: string): never {
  throw new AssertionError(`unreachable: ${message}`);
}
