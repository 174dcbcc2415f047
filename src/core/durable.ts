/**
 * Which updates a server must fsync before anything that depends on them
 * leaves it (--fsync always). The others (acquire, open_session, expiry) may
 * be lost by a crash of every server at once: a lost acquire's grant is
 * refused at release (fenced hold ids), a lost session is reported ESESSION,
 * a lost expiry happens again. Losing a release or a cancel would bring a
 * hold back to life that nobody will release, so those are synced.
 */
import type { Update } from "../wire";

export function needsSync(update: Update): boolean {
  switch (update.op.type) {
    case "create":
    case "delete":
    case "release":
    case "cancel":
    case "close_session":
    case "checkpoint":
    case "barrier": // the replies to a pulled history wait for it (core/flow.ts, endPull)
    case "refused": // its number must not go missing from the session's sequence
      return true;
    default:
      return false;
  }
}
