/** Where the agent listens; c/pstore.c (socket_path) computes the same path. */
import { join } from "node:path";

export function agentSocketPath(env: NodeJS.ProcessEnv = process.env): string {
  if (env.PSTORE_AGENT_SOCKET) return env.PSTORE_AGENT_SOCKET;
  if (env.XDG_RUNTIME_DIR) return join(env.XDG_RUNTIME_DIR, "pstore", "agent.sock");
  return `/tmp/pstore-${process.getuid?.() ?? 0}/agent.sock`;
}
