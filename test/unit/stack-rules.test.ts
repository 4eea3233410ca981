import { describe, expect, test } from "bun:test";
import { pprofStack } from "../../src/profile/stack-rules.ts";

/** Return PCs named by the function at each, leaf first, as the symbolizer would name them. */
const names = new Map<number, string>([
  [1, "runtime.mallocgc"],
  [2, "runtime.makeBucketArray"],
  [3, "runtime.mapassign_fast64"],
  [4, "main.fill"],
  [5, "runtime.doInit"],
  [6, "main.main"],
  [7, "runtime.main"],
  [8, "runtime.goexit"],
  [9, "runtime.malg"],
  [10, "runtime.newproc1"],
  [11, "runtime.systemstack"],
  [12, "internal/runtime/maps.newarray"],
  [13, "internal/runtime/maps.(*table).grow"],
]);
const fn = (pc: number) => names.get(pc);

describe("stacks as runtime/pprof writes them", () => {
  test("the runtime's frames at the top are hidden; ones below the program's are kept; goexit and what follows go", () => {
    expect(pprofStack([1, 2, 3, 4, 5, 6, 7, 8], fn)).toEqual([4, 5, 6, 7]);
  });

  test("Go 1.24+: the maps of internal/runtime/maps are the runtime's too", () => {
    expect(pprofStack([1, 12, 13, 4, 6, 7, 8], fn)).toEqual([4, 6, 7]);
  });

  test("a stack of runtime frames only is shown whole, but for goexit", () => {
    expect(pprofStack([9, 10, 11, 8], fn)).toEqual([9, 10, 11]);
  });

  test("without symbols nothing can be told apart: the stack is left whole", () => {
    expect(pprofStack([1, 2, 3, 8], () => undefined)).toEqual([1, 2, 3, 8]);
  });

  test("a program frame at the top stays; an empty stack stays empty", () => {
    expect(pprofStack([4, 6, 7, 8], fn)).toEqual([4, 6, 7]);
    expect(pprofStack([], fn)).toEqual([]);
  });
});
