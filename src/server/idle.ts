/**
 * Client connections that went silent. A client heartbeats every quarter of
 * its session timeout on each of its connections (head and tail), so one on
 * which nothing arrived for a whole timeout is dead or hostile: its sessions
 * expire at the head anyway, and its slot is better given to a live client.
 */
import type { Link } from "../net/link";

/** The client links among `links` on which nothing arrived for longer than `silenceMsMax(link)` allows. */
export function silentClientLinks(
  links: Iterable<Link>,
  nowMs: number,
  silenceMsMax: (link: Link) => number | null,
): Link[] {
  const silent: Link[] = [];
  for (const link of links) {
    const limitMs = silenceMsMax(link);
    if (limitMs !== null && nowMs - link.lastReceivedMs > limitMs) silent.push(link);
  }
  return silent;
}
