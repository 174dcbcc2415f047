import type { RunningServer, ServerOptions } from "./options";
import { Server } from "./server";

export type { FsyncMode, RunningServer, ServerOptions } from "./options";

export async function startServer(options: ServerOptions): Promise<RunningServer> {
  return new Server(options).start();
}
