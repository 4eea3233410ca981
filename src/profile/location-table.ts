import { Function as PFunction, Line, Location } from "pprof-format";
import { pprofFunctionName, type SourceFrame, type Symbolizer } from "../symbolize/types.ts";
import { pprofStack } from "./stack-rules.ts";

/** Where the executable's text is mapped in the process: location addresses inside it belong to mapping 1. */
export interface TextRange {
  start: number;
  limit: number;
}

/**
 * The Location and Function records of one process's stacks, and each stack's location
 * ids, kept from one profile to the next. A bucket's stack never changes, so the stacks
 * the live mirror read while the process lived can be symbolized before it dies
 * (prepare), and its kill's profile then only adds the samples.
 *
 * Function names and files are kept as a string list whose indices the Function records
 * use; each profile starts its own string table with this list, in this order, so the
 * indices hold there (see buildPprof).
 */
export class LocationTable {
  /** Strings of the Function records, "" first as in every pprof string table. */
  readonly strings: string[] = [""];
  readonly locations: Location[] = [];
  readonly functions: PFunction[] = [];
  private stringIds = new Map<string, number>([["", 0]]);
  private locationByPc = new Map<number, Location>();
  private functionByKey = new Map<string, PFunction>();
  private framesByPc = new Map<number, SourceFrame[]>();
  /** By stack array: the mirror's buckets keep theirs, so a prepared stack is found again at death. */
  private idsByStack = new WeakMap<readonly number[], number[]>();

  constructor(
    readonly symbolizer: Symbolizer | undefined,
    readonly text: TextRange,
  ) {}

  /** Symbolizes stacks ahead of a profile that may contain them. */
  prepare(stacks: Iterable<readonly number[]>): void {
    for (const stack of stacks) this.stackIds(stack);
  }

  /** The location ids of a bucket's stack as runtime/pprof would write it (see stack-rules.ts). */
  stackIds(stack: readonly number[]): number[] {
    let ids = this.idsByStack.get(stack);
    if (!ids) {
      ids = this.locationIdsOf(pprofStack(stack, (pc) => this.framesFor(pc)[0]?.function));
      this.idsByStack.set(stack, ids);
    }
    return ids;
  }

  private string(s: string): number {
    let id = this.stringIds.get(s);
    if (id === undefined) {
      id = this.strings.push(s) - 1;
      this.stringIds.set(s, id);
    }
    return id;
  }

  private framesFor(returnPc: number): SourceFrame[] {
    let f = this.framesByPc.get(returnPc);
    if (!f) this.framesByPc.set(returnPc, (f = this.symbolizer ? this.symbolizer.frames(BigInt(returnPc - 1)) : []));
    return f;
  }

  private functionId(f: SourceFrame): number {
    const key = `${pprofFunctionName(f)}\0${f.file}`;
    let fn = this.functionByKey.get(key);
    if (!fn) {
      const name = this.string(pprofFunctionName(f));
      fn = new PFunction({ id: this.functions.length + 1, name, systemName: name, filename: this.string(f.file), startLine: f.startLine ?? 0 });
      this.functions.push(fn);
      this.functionByKey.set(key, fn);
    }
    return fn.id as number;
  }

  /** Locations carry the call instruction's address (return PC − 1), as runtime/pprof's do. */
  private locationId(returnPc: number): number {
    let loc = this.locationByPc.get(returnPc);
    if (!loc) {
      const address = returnPc - 1;
      loc = new Location({
        id: this.locations.length + 1,
        mappingId: address >= this.text.start && address < this.text.limit ? 1 : 0,
        address,
        line: this.framesFor(returnPc).map((f) => new Line({ functionId: this.functionId(f), line: f.line })),
      });
      this.locations.push(loc);
      this.locationByPc.set(returnPc, loc);
    }
    return loc.id as number;
  }

  /**
   * The runtime records one PC per logical frame, inlined ones included, while one
   * look-up already expands a PC into its whole inline chain. So after a location
   * with k frames, the PCs of its k-1 inline parents are skipped, as runtime/pprof does.
   */
  private locationIdsOf(stack: number[]): number[] {
    const ids: number[] = [];
    for (let i = 0; i < stack.length; i++) {
      const pc = stack[i]!;
      ids.push(this.locationId(pc));
      const chain = this.framesFor(pc);
      for (let depth = 1; depth < chain.length && i + 1 < stack.length; depth++) {
        const next = this.framesFor(stack[i + 1]!);
        if (!next.length || !sameFrame(next[0]!, chain[depth]!)) break;
        i++;
      }
    }
    return ids;
  }
}

function sameFrame(a: SourceFrame, b: SourceFrame): boolean {
  return pprofFunctionName(a) === pprofFunctionName(b) && a.file === b.file;
}
