/** A server's data dir, or the parent of several (`pstore local` puts server n in <dir>/n). */
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";

export function serverDataDirs(dir: string): string[] {
  if (!existsSync(dir)) throw new Error(`${dir} does not exist`);
  const children = readdirSync(dir)
    .filter((name) => /^\d+$/.test(name) && statSync(join(dir, name)).isDirectory())
    .sort((a, b) => Number(a) - Number(b))
    .map((name) => join(dir, name));
  return children.length > 0 ? children : [dir];
}
