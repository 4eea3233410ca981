import { readFileSync } from "node:fs";
import { BadBinaryError, UserError } from "../errors.ts";
import { elfLoadProblem } from "./elf.ts";
import { discoverGoTarget, type GoTarget } from "./go-target.ts";

/** The Go target behind a command, or why there is none. Non-Go programs still run. */
export async function targetForCommand(path: string): Promise<{ target?: GoTarget; why?: string }> {
  try {
    return { target: await discoverGoTarget(path) };
  } catch (e) {
    if (!(e instanceof BadBinaryError)) throw e;
    // A binary oomprof cannot read may still run (a packed one, say); one the kernel
    // cannot load would only fail after arming, with a second, vaguer error.
    const problem = elfLoadProblem(readFileOrEmpty(path));
    if (problem) throw new UserError(`${path}: corrupt ELF file, it cannot run: ${problem}`, 126);
    return { why: e.message };
  }
}

function readFileOrEmpty(path: string): Uint8Array {
  try {
    return readFileSync(path);
  } catch {
    return new Uint8Array();
  }
}
