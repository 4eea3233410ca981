import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BpftraceSession } from "../../src/stream/bpftrace-session.ts";

const dir = mkdtempSync(join(tmpdir(), "oomprof-session-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A stand-in for bpftrace that notes the LD_BIND_NOW it was given, then says its probe is attached. */
const fake = join(dir, "bpftrace");
writeFileSync(fake, `#!/bin/sh\nprintf '%s' "\${LD_BIND_NOW-unset}" > "$OOMPROF_TEST_NOTE"\necho '{"type": "attached_probes", "data": {"probes": 1}}'\n`, {
  mode: 0o755,
});

async function bindingGiven(callerValue: string | undefined): Promise<string> {
  const note = join(dir, `note-${callerValue ?? "unset"}`);
  const saved = { bind: process.env.LD_BIND_NOW, note: process.env.OOMPROF_TEST_NOTE };
  if (callerValue === undefined) delete process.env.LD_BIND_NOW;
  else process.env.LD_BIND_NOW = callerValue;
  process.env.OOMPROF_TEST_NOTE = note;
  try {
    const session = new BpftraceSession({ bpftracePath: fake, script: "" }, { onRecord: () => {} });
    expect(await session.attached).toBe(1);
    await session.exited;
    return readFileSync(note, "utf8");
  } finally {
    if (saved.bind === undefined) delete process.env.LD_BIND_NOW;
    else process.env.LD_BIND_NOW = saved.bind;
    if (saved.note === undefined) delete process.env.OOMPROF_TEST_NOTE;
    else process.env.OOMPROF_TEST_NOTE = saved.note;
  }
}

describe("bpftrace's symbol binding", () => {
  test("is at load (LD_BIND_NOW=1): its first output at a kill must not look symbols up in paged-out pages", async () => {
    expect(await bindingGiven(undefined)).toBe("1");
  });

  test("stays lazy when the caller sets LD_BIND_NOW empty", async () => {
    expect(await bindingGiven("")).toBe("");
  });
});
