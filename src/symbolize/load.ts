import type { GoTarget } from "../target/go-target.ts";
import type { Symbolizer } from "./types.ts";

/** The symbolizer for a target's binary, or undefined when its tables cannot be read. */
export function loadSymbolizer(_target: GoTarget): Symbolizer | undefined {
  return undefined;
}
