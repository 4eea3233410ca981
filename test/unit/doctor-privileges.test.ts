import { describe, expect, test } from "bun:test";
import { checkPrivileges, type HostView } from "../../src/host/checks.ts";
import { fakeHostView } from "../helpers/host-view.ts";

/** CapEff bits: CAP_KILL 5, CAP_DAC_READ_SEARCH 2, CAP_SYS_PTRACE 19, CAP_SYS_ADMIN 21, CAP_SYS_NICE 23, CAP_SYS_RESOURCE 24, CAP_PERFMON 38, CAP_BPF 39. */
const bits = (...caps: number[]) => caps.reduce((m, c) => m | (1n << BigInt(c)), 0n);

function rootWith(capEff: bigint): HostView {
  const status = `Name:\toomprof\nCapEff:\t${capEff.toString(16).padStart(16, "0")}\n`;
  return fakeHostView({ read: (p) => (p === "/proc/self/status" ? status : p === "/proc/sys/kernel/cap_last_cap" ? "40\n" : undefined) });
}

describe("doctor: privileges in a container with reduced capabilities", () => {
  test("the DaemonSet's list (CAP_SYS_ADMIN standing in for CAP_BPF and CAP_PERFMON) is enough", () => {
    const r = checkPrivileges(rootWith(bits(2, 5, 19, 21, 23, 24)));
    expect(r.status).toBe("ok");
    expect(r.found).toBe("root (uid 0) with CAP_SYS_ADMIN, CAP_SYS_PTRACE");
  });

  test("CAP_BPF and CAP_PERFMON without CAP_SYS_ADMIN are not: the maps cannot be opened by id", () => {
    const r = checkPrivileges(rootWith(bits(19, 38, 39)));
    expect(r.status).toBe("fail");
    expect(r.found).toContain("without CAP_SYS_ADMIN");
  });

  test("without CAP_SYS_PTRACE other processes cannot be read", () => {
    expect(checkPrivileges(rootWith(bits(21))).found).toContain("without CAP_SYS_PTRACE");
  });
});
