import { UserError } from "../errors.ts";

export function requireRoot(): void {
  if (process.getuid?.() !== 0) {
    throw new UserError("oomprof needs root (bpftrace loads eBPF programs and reads other processes' memory): run it with sudo");
  }
}
