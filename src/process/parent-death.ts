/**
 * Prefixes a command so the kernel SIGKILLs it if oomprof dies, even by SIGKILL
 * (PR_SET_PDEATHSIG through util-linux's setpriv; it survives the exec that follows).
 * Used for the child of `run` and for bpftrace, so neither outlives oomprof: an
 * orphaned bpftrace would keep its probes attached forever.
 */
let setpriv: string | null | undefined;

export function dieWithParent(argv: string[]): string[] {
  if (setpriv === undefined) setpriv = Bun.which("setpriv");
  return setpriv ? [setpriv, "--pdeathsig", "KILL", "--", ...argv] : argv;
}
