import { expect } from "bun:test";
import { KillEvent } from "../../src/output/events.ts";
import { testCgroup } from "./cgroup.ts";
import type { LineReader } from "./lines.ts";

/** The oom_kill event a running `watch` printed (on `events`) for pid. */
export async function oomKillEvent(events: LineReader, pid: number): Promise<KillEvent> {
  return KillEvent.parse(JSON.parse(await events.waitFor((l) => l.includes('"event":"oom_kill"') && l.includes(`"pid":${pid},`), 30_000)));
}

/**
 * Runs argv in a fresh memory cgroup of limitBytes until the OOM killer takes it (status
 * 137), and returns the oom_kill event a running `watch` printed for it.
 */
export async function oomKilledUnderWatch(events: LineReader, argv: string[], limitBytes: number, env: Record<string, string> = {}): Promise<KillEvent> {
  const cg = testCgroup(limitBytes);
  try {
    const p = Bun.spawn(cg.argv(argv), { stdout: "ignore", stderr: "ignore", env: { ...process.env, ...env } });
    expect(await p.exited).toBe(137);
    return await oomKillEvent(events, p.pid);
  } finally {
    cg.remove();
  }
}
