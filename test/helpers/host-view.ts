import type { HostView } from "../../src/host/checks.ts";

/** A host for doctor's checks that has nothing but what a test gives it: root, no files, no commands. */
export function fakeHostView(over: Partial<HostView>): HostView {
  return {
    euid: 0,
    userName: () => "root",
    bpftraceOverride: undefined,
    read: () => undefined,
    stat: () => "missing",
    executable: () => false,
    which: () => undefined,
    run: () => ({ ok: false, stdout: "", stderr: "" }),
    kernelRelease: "6.18.0",
    ...over,
  };
}
