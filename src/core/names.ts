/** Validation of datum names and sizes, shared by the state machine and the client. */
import { DATUM_BYTES_MAX, NAME_BYTES_MAX } from "../constants";

const encoder = new TextEncoder();

/** Why `name` is not a valid datum name, or null when it is. */
export function nameProblem(name: string): string | null {
  if (typeof name !== "string" || name.length === 0) return "a name must not be empty";
  const bytes = encoder.encode(name).length;
  if (bytes > NAME_BYTES_MAX) return `a name is at most ${NAME_BYTES_MAX} bytes of UTF-8 (got ${bytes})`;
  // Control characters would garble logs, fault messages and the shell's output.
  if (/[\u0000-\u001f\u007f]/.test(name)) return "a name must not contain control characters";
  // A lone surrogate travels as U+FFFD: two different names would reach the servers as one.
  if (/\p{Cs}/u.test(name)) return "a name must be valid Unicode (it has a lone surrogate)";
  return null;
}

/** Why `size` is not a valid datum size for a segment of `segmentSize` bytes, or null. */
export function sizeProblem(size: number, segmentSize: number): { code: "EINVAL" | "ENOSPC"; message: string } | null {
  if (!Number.isSafeInteger(size) || size <= 0) {
    return { code: "EINVAL", message: `a size is a whole number of bytes above 0 (got ${size})` };
  }
  if (size > segmentSize) {
    return { code: "ENOSPC", message: `${formatBytes(size)} does not fit in the ${formatBytes(segmentSize)} segment` };
  }
  if (size > DATUM_BYTES_MAX) {
    return { code: "EINVAL", message: `a datum is at most ${DATUM_BYTES_MAX} bytes (got ${size})` };
  }
  return null;
}

/** "256 MiB", "4 KiB", "1035 B": whole binary units when exact, else bytes (for messages). */
export function formatBytes(bytes: number): string {
  const units = ["TiB", "GiB", "MiB", "KiB"];
  for (let i = 0; i < units.length; i++) {
    const unit = 1024 ** (4 - i);
    if (bytes >= unit && bytes % unit === 0) return `${bytes / unit} ${units[i]}`;
  }
  return `${bytes} B`;
}
