import { accessSync, constants, statSync } from "node:fs";
import { resolve } from "node:path";
import { UserError } from "../errors.ts";

/** PATH lookup the way a shell does it, with a shell's exit codes for failures. */
export function resolveCommand(cmd: string): string {
  const path = cmd.includes("/") ? resolve(cmd) : Bun.which(cmd);
  if (!path) throw new UserError(`${cmd}: command not found`, 127);
  try {
    if (!statSync(path).isFile()) throw new UserError(`${cmd}: not a regular file`, 126);
    accessSync(path, constants.X_OK);
  } catch (e) {
    if (e instanceof UserError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    throw new UserError(`${cmd}: ${code === "ENOENT" ? "no such file" : "not executable"}`, code === "ENOENT" ? 127 : 126);
  }
  return path;
}
