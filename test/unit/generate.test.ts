import { beforeAll, describe, expect, test } from "bun:test";
import { fillTemplate, generateScript } from "../../src/probes/generate.ts";
import type { BpftraceHost } from "../../src/probes/bpftrace-host.ts";
import { parseBpftraceVersion } from "../../src/probes/bpftrace-host.ts";
import { discoverGoTarget, type GoTarget } from "../../src/gobinary/go-target.ts";
import { buildGoProgram } from "../helpers/go.ts";

const host = (version: string, kprobes: boolean): BpftraceHost => ({ path: "bpftrace", version: parseBpftraceVersion(`bpftrace v${version}`), hasOomKillProcessKprobe: kprobes, exitKeepsMm: true });

describe("fillTemplate", () => {
  test("fills numbers and refuses anything that could change the script", () => {
    expect(fillTemplate("a {{X}} b {{Y}}", { X: 5, Y: 0x400000n })).toBe("a 5 b 0x400000");
    expect(() => fillTemplate("{{X}}", {})).toThrow("no value");
    expect(() => fillTemplate("{{X}}", { X: 'x"; system("rm -rf /")' })).toThrow("unsafe");
    expect(() => fillTemplate("{{X}}", { X: 1.5 })).toThrow("integer");
  });
});

describe("generateScript", () => {
  let target: GoTarget;
  beforeAll(async () => {
    target = await discoverGoTarget(await buildGoProgram("leaker"));
  });

  test("no kprobe where the host has none, kprobe:oom_kill_process where it is listed", () => {
    expect(generateScript({ host: host("0.17.0", false), targets: [target] }).text).not.toContain("kprobe:");
    const withK = generateScript({ host: host("0.17.0", true), targets: [target] }).text;
    expect(withK).toContain("kprobe:oom_kill_process");
    expect(withK).toContain("struct oom_control");
  });

  test("the script names the target by inode and carries its runtime addresses, nothing unfilled", () => {
    const s = generateScript({ host: host("0.17.0", false), targets: [target] }).text;
    expect(s).toContain("tracepoint:oom:mark_victim");
    expect(s).toContain("tracepoint:signal:signal_deliver");
    expect(s).toContain(`@target_id[(uint64)${target.inode}] = 0 + 1;`);
    expect(s).toContain(`0x${target.vars.mbuckets.toString(16)}`);
    expect(s).not.toContain("{{");
    expect(s).not.toContain(target.path); // no user-controlled text in the script
  });

  test("one walk serves every binary: a second target adds a table row, not a probe", () => {
    const other = { ...target, inode: target.inode + 1 };
    const one = generateScript({ host: host("0.17.0", false), targets: [target] }).text;
    const two = generateScript({ host: host("0.17.0", false), targets: [target, other] }).text;
    const walks = (s: string) => s.split("\n").filter((l) => l === "tracepoint:signal:signal_deliver").length;
    expect(walks(two)).toBe(walks(one));
    expect(two).toContain(`@target_id[(uint64)${other.inode}] = 1 + 1;`);
    expect(two.length - one.length).toBeLessThan(1000);
  });

  test("the 0.17 script is accepted by this host's bpftrace", async () => {
    const s = generateScript({ host: host("0.17.0", false), targets: [target] }).text;
    // Loaded into the kernel (so verified), then ends at once.
    const p = Bun.spawn(["bpftrace", "-e", `${s}\ninterval:ms:1 { exit(); }`], { stdout: "pipe", stderr: "pipe" });
    const code = await p.exited;
    const err = await new Response(p.stderr).text();
    expect(err).not.toContain("ERROR: Error loading");
    expect(code).toBe(0);
  }, 60_000);
});
