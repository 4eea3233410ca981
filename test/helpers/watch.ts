import { expect } from "bun:test";
import { KillEvent } from "../../src/output/events.ts";
import { testCgroup } from "./cgroup.ts";
import { LineReader } from "./lines.ts";
import { oomprofArgv } from "./oomprof.ts";

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

/** A `watch` started for a test file, ready: its events (stdout) and log (stderr). */
export interface RunningWatch {
  events: LineReader;
  stderr: LineReader;
  /** SIGTERM, then waits for it to exit. */
  stop(): Promise<void>;
}

/** Starts `oomprof watch --out dir --events -` with args and env added, and waits for its ready event. */
export async function startWatch(dir: string, args: string[] = [], env: Record<string, string> = {}): Promise<RunningWatch> {
  const watch = Bun.spawn([...oomprofArgv(), "watch", "--out", dir, "--events", "-", ...args], {
    env: { ...process.env, ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
  const events = new LineReader(watch.stdout as ReadableStream<Uint8Array>);
  const stderr = new LineReader(watch.stderr as ReadableStream<Uint8Array>);
  await events.waitFor((l) => l.includes('"event":"ready"'), 60_000);
  return {
    events,
    stderr,
    async stop() {
      watch.kill("SIGTERM");
      await watch.exited;
    },
  };
}
