/** One source-level frame for a PC; inlined callees come before their caller. */
export interface SourceFrame {
  function: string;
  file: string;
  line: number;
  /** Line of the `func` keyword; only recorded by Go 1.20+. */
  startLine?: number;
  inlined: boolean;
}

export interface Symbolizer {
  /** Frames for a look-up address (a return PC minus one), innermost first. */
  frames(pc: bigint): SourceFrame[];
}
