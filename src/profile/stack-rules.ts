/**
 * A heap sample's stack as runtime/pprof writes it (Go's runtime/pprof/protomem.go,
 * writeHeapProto, and proto.go, appendLocsForStack): the runtime's own frames at the top
 * (its allocator, map growth, ...) are hidden unless no other frame is left, and nothing
 * is kept from runtime.goexit on, the frame every goroutine starts from. The runtime's
 * frames are `runtime.*`, and from Go 1.24, whose maps live in internal/runtime/maps,
 * `internal/runtime/*` too (hiding those for older releases changes nothing: none of
 * their code there allocates). `innermost` names the function at a return PC (undefined
 * without symbols, when the stack is left whole). Stacks are leaf first.
 */
export function pprofStack(stack: readonly number[], innermost: (returnPc: number) => string | undefined): number[] {
  let start = 0;
  while (start < stack.length && isRuntime(innermost(stack[start]!))) start++;
  // Only runtime frames: runtime/pprof shows them all.
  if (start === stack.length) start = 0;
  const out: number[] = [];
  for (let i = start; i < stack.length; i++) {
    if (innermost(stack[i]!) === "runtime.goexit") break;
    out.push(stack[i]!);
  }
  return out;
}

function isRuntime(fn: string | undefined): boolean {
  return fn !== undefined && (fn.startsWith("runtime.") || fn.startsWith("internal/runtime/"));
}
