/** One source-level frame for a PC; inlined callees come before their caller. */
export interface SourceFrame {
  /** As runtime.Frame.Function shows it: generic shapes printed as "[...]". */
  function: string;
  /**
   * The linker's full name, where the binary's runtime/pprof names the function by it
   * and it differs from `function`: since Go 1.21 (runtime_FrameSymbolName), so that
   * two instantiations of one generic function stay two functions.
   */
  symbolName?: string;
  file: string;
  line: number;
  /** Line of the `func` keyword; only recorded by Go 1.20+. */
  startLine?: number;
  inlined: boolean;
}

export interface Symbolizer {
  /** Frames for a look-up address (a return PC minus one), innermost first. */
  frames(pc: bigint): SourceFrame[];
  /** False once the binary's bytes no longer hold its file (see mapFile): load it again. */
  unchanged?(): boolean;
}

/** The function's name as the binary's own runtime/pprof would write it in a profile. */
export function pprofFunctionName(f: SourceFrame): string {
  return f.symbolName ?? f.function;
}
