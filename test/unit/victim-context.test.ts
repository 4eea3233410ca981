import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { cgroupPathFromNames, CaptureAssembler } from "../../src/capture/walk-capture.ts";
import { parseBtf, type BtfStruct } from "../../src/host/kernel-btf.ts";
import { memorySubsysId, victimContextLayout } from "../../src/host/victim-context.ts";
import { parseRecord } from "../../src/stream/records.ts";

/** /proc/cgroups as Debian 12's 6.1 and this VM's 6.18 print it (the order is the kernel's subsystem ids). */
const PROC_CGROUPS_6_1 = `#subsys_name\thierarchy\tnum_cgroups\tenabled
cpuset\t0\t120\t1
cpu\t0\t120\t1
cpuacct\t0\t120\t1
blkio\t0\t120\t1
memory\t0\t120\t1
devices\t0\t120\t1
freezer\t0\t120\t1
net_cls\t0\t120\t1
perf_event\t0\t120\t1
net_prio\t0\t120\t1
hugetlb\t0\t120\t1
pids\t0\t120\t1
rdma\t0\t120\t1
misc\t0\t120\t1
`;
const NO_MEMORY = "#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpuset\t0\t1\t1\ncpu\t0\t1\t1\n";

const struct = (size: number, members: Record<string, number>): BtfStruct => ({
  size,
  members: new Map(Object.entries(members).map(([name, offset]) => [name, { name, offset }])),
});

describe("the victim-context layout", () => {
  test("memory's subsystem id is its line in /proc/cgroups", () => {
    expect(memorySubsysId(PROC_CGROUPS_6_1)).toBe(4);
    expect(memorySubsysId(PROC_CGROUPS_6_1.replace("cpuacct\t0\t120\t1\n", ""))).toBe(3);
    expect(memorySubsysId(NO_MEMORY)).toBeUndefined();
    expect(memorySubsysId("#subsys_name\nnot a table at all\n")).toBeUndefined();
  });

  test("kernfs_node's parent is __parent from 6.15 and parent before; numbers[] and upid from BTF", () => {
    const structs = (parent: string) => ({
      structs: new Map([
        ["kernfs_node", struct(128, { count: 0, [parent]: 8, name: 16 })],
        ["pid", struct(112, { count: 0, level: 4, numbers: 96 })],
        ["upid", struct(16, { nr: 0, ns: 8 })],
      ]),
      enumerators: new Map<string, number>(),
    });
    expect(victimContextLayout(PROC_CGROUPS_6_1, structs("parent"))).toEqual({
      memorySubsysId: 4,
      kernfsParent: "parent",
      pidNumbers: 96,
      upidSize: 16,
      upidNr: 0,
    });
    expect(victimContextLayout(PROC_CGROUPS_6_1, structs("__parent"))?.kernfsParent).toBe("__parent");
    // Without BTF, or a memory controller, the probe reads nothing and /proc is the fallback.
    expect(victimContextLayout(PROC_CGROUPS_6_1, undefined)).toBeUndefined();
    expect(victimContextLayout(NO_MEMORY, structs("parent"))).toBeUndefined();
    expect(victimContextLayout(PROC_CGROUPS_6_1, structs("parent_node"))).toBeUndefined();
  });

  test("memory_cgrp_id from BTF wins: a kernel without CONFIG_MEMCG_V1 leaves memory out of /proc/cgroups", () => {
    // Debian's 7.2 (found in a guest): no memory, cpuset or io lines; memory_cgrp_id is 4.
    const without = PROC_CGROUPS_6_1.replace(/^(memory|cpuset|blkio)\t.*\n/gm, "");
    expect(memorySubsysId(without)).toBeUndefined();
    const types = {
      structs: new Map([
        ["kernfs_node", struct(128, { __parent: 8, name: 16 })],
        ["pid", struct(144, { level: 4, numbers: 144 })],
        ["upid", struct(16, { nr: 0, ns: 8 })],
      ]),
      enumerators: new Map([["memory_cgrp_id", 4]]),
    };
    const layout = victimContextLayout(without, types);
    expect(layout?.memorySubsysId).toBe(4);
  });

  test("this kernel's BTF: struct pid, upid and kernfs_node are found, a blob that is not BTF is refused", () => {
    expect(parseBtf(new Uint8Array(64), new Set(["pid"]), new Set())).toBeUndefined();
    if (!existsSync("/sys/kernel/btf/vmlinux")) return;
    const found = parseBtf(readFileSync("/sys/kernel/btf/vmlinux"), new Set(["pid", "upid", "kernfs_node"]), new Set())!.structs;
    expect(found.get("upid")).toEqual(struct(16, { nr: 0, ns: 8 }));
    const pid = found.get("pid")!;
    expect(pid.members.get("level")?.offset).toBe(4);
    // numbers[] is the flexible array at the end.
    expect(pid.members.get("numbers")?.offset).toBe(pid.size);
    expect(found.get("kernfs_node")!.members.has("name")).toBe(true);
    // This VM's /proc/cgroups puts memory 5th (index 4), as its BTF says.
    const types = parseBtf(readFileSync("/sys/kernel/btf/vmlinux"), new Set(), new Set(["memory_cgrp_id"]))!;
    expect(types.enumerators.get("memory_cgrp_id")).toBe(memorySubsysId(readFileSync("/proc/cgroups", "utf8")));
  });
});

describe("the victim's cgroup path from Y, Z and W records", () => {
  const ID = "0123456789abcdef".repeat(4);
  const names = (...levels: Array<[string, string?]>) => new Map(levels.map(([head, tail], level) => [level, tail === undefined ? { head } : { head, tail }]));

  test("root first, a long name's tail joined after a full 63-byte head", () => {
    const libpod = `libpod-${ID}`;
    const head = libpod.slice(0, 63);
    const tail = `${libpod.slice(63)}\\x00\\x00\\x7f\\x01garbage`;
    expect(cgroupPathFromNames(names([head, tail], ["libpod_parent"]), 2, false)).toBe(`/libpod_parent/${libpod}`);
  });

  test("a tail after a short name is other memory, and ignored; a missing level gives no path", () => {
    expect(cgroupPathFromNames(names(["oomtest", "P@B\\xe7xo"]), 1, false)).toBe("/oomtest");
    expect(cgroupPathFromNames(names(["a"]), 2, false)).toBeUndefined();
  });

  test("the root cgroup, and a path deeper than the probe follows", () => {
    expect(cgroupPathFromNames(new Map(), 0, false)).toBe("/");
    expect(cgroupPathFromNames(names(["leaf"], ["mid"]), 2, true)).toBe("/.../mid/leaf");
  });

  test("records as bpftrace prints them, through the assembler", () => {
    const a = new CaptureAssembler();
    const kube = `cri-containerd-${ID}.scope`;
    for (const line of [
      `Y 77 0 ${kube.slice(0, 63)}`,
      `Z 77 0 ${kube.slice(63)}\\x00\\x00\\xff`,
      "Y 77 1 kubepods-burstable-pod0d3e2f7a_1b2c_4d5e_8f90_a1b2c3d4e5f6.slice",
      "Y 77 2 kubepods-burstable.slice",
      "Y 77 3 kubepods.slice",
      "W 77 4 0 1 65536",
    ])
      a.add(parseRecord(line));
    const c = a.capture(77);
    expect(c.cgroupPath).toBe(`/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0d3e2f7a_1b2c_4d5e_8f90_a1b2c3d4e5f6.slice/${kube}`);
    expect(c.nsPid).toBe(1);
    expect(c.limitPages).toBe(65536);
    expect(() => parseRecord("W 77 4 0 1")).toThrow();
    // No limit anywhere up the hierarchy: PAGE_COUNTER_MAX, which is no limit.
    const unlimited = new CaptureAssembler();
    unlimited.add(parseRecord("W 78 0 0 78 2251799813685247"));
    expect(unlimited.capture(78).limitPages).toBeUndefined();
    expect(() => parseRecord("Y 77 x name")).toThrow();
  });
});
