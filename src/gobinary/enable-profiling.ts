import { closeSync, openSync, writeSync } from "node:fs";
import { UserError } from "../errors.ts";
import type { GoTarget } from "./go-target.ts";
import { loadBias, readMaps } from "../process/memory.ts";

/**
 * Turns memory profiling back on in a Go process stopped at exec, before its runtime
 * has run: clears runtime.disableMemoryProfiling (which the linker sets when
 * runtime/pprof is not linked in, and which makes the runtime zero MemProfileRate at
 * start) and sets MemProfileRate. From Go 1.21 the rate's initial value lives in the
 * data section, so `rate` holds; Go 1.19-1.20 assign the default rate in the runtime's
 * init, so there the default (512 KiB) applies.
 */
export function enableMemoryProfiling(pid: number, target: GoTarget, rate: number): void {
  const flag = target.vars.disableMemoryProfiling;
  if (flag === undefined) throw new UserError(`${target.path}: cannot find runtime.disableMemoryProfiling`);
  const bias = loadBias(target, readMaps(pid));
  const fd = openSync(`/proc/${pid}/mem`, "r+");
  try {
    writeSync(fd, Buffer.from([0]), 0, 1, Number(flag) + bias);
    const r = Buffer.alloc(8);
    r.writeBigInt64LE(BigInt(rate));
    writeSync(fd, r, 0, 8, Number(target.vars.memProfileRate) + bias);
  } finally {
    closeSync(fd);
  }
}
