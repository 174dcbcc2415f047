/** The shell's commands by name, one file each, and their aliases. */
import { acquireRead } from "./acquire-read.ts";
import { acquireWrite } from "./acquire-write.ts";
import { bench } from "./bench.ts";
import { checkpoint } from "./checkpoint.ts";
import { clear } from "./clear.ts";
import { create } from "./create.ts";
import { deleteDatum } from "./delete.ts";
import { dump } from "./dump.ts";
import { get } from "./get.ts";
import { help } from "./help.ts";
import { kill } from "./kill.ts";
import { list } from "./list.ts";
import { quit } from "./quit.ts";
import { read } from "./read.ts";
import { release } from "./release.ts";
import { restart } from "./restart.ts";
import { set } from "./set.ts";
import type { CommandSpec } from "./spec.ts";
import { stat } from "./stat.ts";
import { status } from "./status.ts";
import { version } from "./version.ts";
import { write } from "./write.ts";

export type { CommandSpec, ShellContext, ShellHold, ShellOutput } from "./spec.ts";

export const SHELL_COMMANDS: Record<string, CommandSpec> = {
  create,
  write,
  read,
  "acquire-read": acquireRead,
  "acquire-write": acquireWrite,
  get,
  set,
  release,
  dump,
  list,
  stat,
  delete: deleteDatum,
  status,
  checkpoint,
  bench,
  kill,
  restart,
  help,
  clear,
  version,
  quit,
};

export const ALIASES: Record<string, string> = { exit: "quit", ls: "list", rm: "delete", "?": "help", "-v": "version", "--version": "version" };
