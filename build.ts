/**
 * Builds pstore: the C helpers into dist/libpstore_mem.so and the C API into
 * dist/libpstore.so (+ dist/pstore.h) with the system C compiler, then the single executable dist/pstore with `bun build --compile`,
 * which embeds the library (src/memory/native.ts imports it as a file).
 *
 *   bun run build.ts          both
 *   bun run build.ts --lib    only the library (enough for `bun test`)
 *
 * CC names another C compiler than the system `cc`.
 */
import { copyFileSync, existsSync, mkdirSync, statSync } from "node:fs";
import { join } from "node:path";

const ROOT = import.meta.dir;
const DIST = join(ROOT, "dist");
const LIBRARY = join(DIST, "libpstore_mem.so");
const LIBRARY_SOURCES = ["c/pstore_mem.c", "c/pstore_fault.c", "c/pstore_shared.c", "c/pstore_large.c"];
/** The C API (pstore.h): the client library, with the same page-fault code compiled in. */
const CLIENT_LIBRARY = join(DIST, "libpstore.so");
const CLIENT_LIBRARY_SOURCES = ["c/pstore.c", "c/pstore_agent.c", "c/pstore_lend.c", "c/pstore_mem.c", "c/pstore_fault.c"];
const HEADER = "c/pstore.h";
const ENTRY = join(ROOT, "src/cli/main.ts");
const EXECUTABLE = join(DIST, "pstore");

function fail(message: string): never {
  console.error(`build: ${message}`);
  process.exit(1);
}

function humanSize(path: string): string {
  const bytes = statSync(path).size;
  return bytes < 1024 * 1024 ? `${(bytes / 1024).toFixed(1)} KiB` : `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

/** Runs a command in the repository, its output on ours; true when it exits 0. */
function run(command: string[]): boolean {
  console.log(`$ ${command.join(" ")}`);
  const result = Bun.spawnSync(command, { cwd: ROOT, stdout: "inherit", stderr: "inherit" });
  return result.exitCode === 0;
}

function buildLibrary(): void {
  const name = process.env.CC || "cc";
  const cc = Bun.which(name);
  if (cc === null) {
    fail(`no C compiler: \`${name}\` is not on PATH. Install one (Debian/Ubuntu: apt-get install gcc; Alpine: apk add build-base) or set CC.`);
  }
  const flags = ["-O2", "-Wall", "-Wextra", "-fPIC", "-shared", "-pthread"];
  if (!run([cc, ...flags, "-o", LIBRARY, ...LIBRARY_SOURCES])) fail("the C library did not compile (see above)");
  console.log(`built ${LIBRARY} (${humanSize(LIBRARY)})`);
  // Hidden by default: a program sees pstore.h's functions, not our helpers (put, take, …).
  const clientFlags = [...flags, "-fvisibility=hidden", "-Wl,-soname,libpstore.so", "-pthread"];
  if (!run([cc, ...clientFlags, "-o", CLIENT_LIBRARY, ...CLIENT_LIBRARY_SOURCES])) fail("libpstore.so did not compile (see above)");
  copyFileSync(join(ROOT, HEADER), join(DIST, "pstore.h"));
  console.log(`built ${CLIENT_LIBRARY} (${humanSize(CLIENT_LIBRARY)}) and ${join(DIST, "pstore.h")}`);
}

function buildExecutable(): void {
  if (!existsSync(ENTRY)) fail(`${ENTRY} is missing: the CLI entry point is needed for the executable`);
  // process.execPath is the bun running this script, the version package.json pins.
  if (!run([process.execPath, "build", "--compile", ENTRY, "--outfile", EXECUTABLE])) {
    fail("bun build --compile failed (see above)");
  }
  console.log(`built ${EXECUTABLE} (${humanSize(EXECUTABLE)})`);
}

const libraryOnly = process.argv.includes("--lib");
const unknown = process.argv.slice(2).filter((arg) => arg !== "--lib");
if (unknown.length > 0) fail(`unknown argument ${unknown[0]}; usage: bun run build.ts [--lib]`);

mkdirSync(DIST, { recursive: true });
buildLibrary();
if (!libraryOnly) buildExecutable();
