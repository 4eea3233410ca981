import { BadBinaryError } from "../errors.ts";
import type { GoTarget } from "../gobinary/go-target.ts";
import { GoSymbolizer } from "./pclntab.ts";
import type { Symbolizer } from "./types.ts";

/**
 * The symbolizer for a target's binary (Go's own .gopclntab, which survives
 * stripping), or undefined when its tables cannot be read: the profile then carries
 * addresses and the mapping, and `go tool pprof` symbolizes from the binary.
 */
export function loadSymbolizer(target: GoTarget, warn: (message: string) => void): Symbolizer | undefined {
  try {
    return GoSymbolizer.fromElf(target.readElf());
  } catch (e) {
    if (!(e instanceof BadBinaryError)) throw e;
    warn(`${target.path}: cannot read its symbol tables (${e.message}); the profile will carry addresses only`);
    return undefined;
  }
}
