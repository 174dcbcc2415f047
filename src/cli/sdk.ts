/** `pstore sdk DIR`: writes pstore.h, libpstore.so and pstore.pc from the binary itself. */
import { chmodSync, mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { defineCommand } from "citty";
// @ts-ignore -- bun-types declares no module for "*.so"/"*.h"; Bun resolves them to paths (embedded by --compile).
import libraryPath from "../../dist/libpstore.so" with { type: "file" };
// @ts-ignore -- as above.
import headerPath from "../../dist/pstore.h" with { type: "file" };
import packageJson from "../../package.json" with { type: "json" };
import { UsageError } from "./flags.ts";

export const examples = [
  "pstore sdk ./sdk                               # ./sdk/pstore.h, ./sdk/libpstore.so, ./sdk/pstore.pc",
  "cc prog.c -I ./sdk -L ./sdk -Wl,-rpath,$PWD/sdk -lpstore -o prog",
  "PKG_CONFIG_PATH=./sdk cc prog.c $(pkg-config --cflags --libs pstore) -o prog",
];

export default defineCommand({
  meta: { name: "sdk", description: "Write pstore.h, libpstore.so and pstore.pc (for C and C FFIs) into a directory" },
  args: {
    dir: { type: "positional", required: true, valueHint: "dir", description: "Where to write the files (created if missing)" },
  },
  async run({ args }) {
    if (!args.dir) throw new UsageError("pstore sdk needs a directory");
    const dir = resolve(args.dir);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "pstore.h"), await Bun.file(headerPath as string).bytes());
    writeFileSync(join(dir, "libpstore.so"), await Bun.file(libraryPath as string).bytes());
    chmodSync(join(dir, "libpstore.so"), 0o755);
    writeFileSync(join(dir, "pstore.pc"), pkgConfig(dir));
    process.stdout.write(`wrote ${dir}/pstore.h, ${dir}/libpstore.so, ${dir}/pstore.pc\n`);
    return 0;
  },
});

function pkgConfig(dir: string): string {
  return [
    `prefix=${dir}`,
    "",
    "Name: pstore",
    "Description: pstore's persistent shared memory (the specification's C API)",
    `Version: ${packageJson.version}`,
    "Cflags: -I${prefix}",
    "Libs: -L${prefix} -Wl,-rpath,${prefix} -lpstore",
    "",
  ].join("\n");
}
