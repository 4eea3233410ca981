import { readFileSync } from "node:fs";
import { z } from "zod";
import { kernelTypes, type KernelTypes } from "./kernel-btf.ts";

/**
 * What the OOM probe needs to read the victim's memory cgroup and its namespaced pid in
 * the victim's own context (probes/oom/victim-context.bt): numbers bpftrace cannot work
 * out for itself on every release.
 */
export interface VictimContextLayout {
  /** Index of the memory controller in `task->cgroups->subsys[]`: memory_cgrp_id. */
  memorySubsysId: number;
  /** kernfs_node's parent link: `__parent` from Linux 6.15, `parent` before. */
  kernfsParent: "parent" | "__parent";
  /** Byte offset of struct pid's flexible `numbers[]`, which bpftrace cannot index. */
  pidNumbers: number;
  /** sizeof(struct upid), and where its `nr` sits. */
  upidSize: number;
  upidNr: number;
}

const CgroupLine = z.tuple([z.string().min(1), z.string().regex(/^\d+$/), z.string(), z.string()]);

/**
 * Where BTF lacks the enumerator: /proc/cgroups lists the controllers in their
 * subsystem-id order, so the memory line's index is memory_cgrp_id. Not on kernels built
 * without CONFIG_MEMCG_V1 (Debian's 7.x): there it lists only v1-capable controllers, and
 * memory is not among them.
 */
export function memorySubsysId(procCgroups: string): number | undefined {
  const names = procCgroups
    .split("\n")
    .filter((l) => l.trim() && !l.startsWith("#"))
    .map((l) => CgroupLine.safeParse(l.trim().split(/\s+/)))
    .map((r) => (r.success ? r.data[0] : undefined));
  if (names.includes(undefined)) return undefined;
  const at = names.indexOf("memory");
  return at >= 0 ? at : undefined;
}

export function victimContextLayout(procCgroups: string | undefined, types: KernelTypes | undefined): VictimContextLayout | undefined {
  const structs = types?.structs;
  const subsys = types?.enumerators.get("memory_cgrp_id") ?? (procCgroups === undefined ? undefined : memorySubsysId(procCgroups));
  const kn = structs?.get("kernfs_node")?.members;
  const numbers = structs?.get("pid")?.members.get("numbers");
  const upid = structs?.get("upid");
  const nr = upid?.members.get("nr");
  const parent = kn?.has("__parent") ? "__parent" : kn?.has("parent") ? "parent" : undefined;
  if (subsys === undefined || !parent || !kn?.has("name") || !numbers || !upid || !nr) return undefined;
  return { memorySubsysId: subsys, kernfsParent: parent, pidNumbers: numbers.offset, upidSize: upid.size, upidNr: nr.offset };
}

/** This host's layout, or undefined where the kernel has no BTF or no memory controller. */
export function hostVictimContext(): VictimContextLayout | undefined {
  let procCgroups: string | undefined;
  try {
    procCgroups = readFileSync("/proc/cgroups", "utf8");
  } catch {
    procCgroups = undefined;
  }
  return victimContextLayout(procCgroups, kernelTypes());
}
