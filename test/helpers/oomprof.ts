import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { OomprofEvent } from "../../src/output/events.ts";

const ROOT = resolve(import.meta.dir, "../..");

/** The oomprof under test: $OOMPROF_BIN (the compiled single file), else the sources under bun. */
export function oomprofArgv(): string[] {
  return process.env.OOMPROF_BIN ? [resolve(process.env.OOMPROF_BIN)] : [process.execPath, join(ROOT, "src/cli/main.ts")];
}

export interface OomprofResult {
  status: number;
  stdout: string;
  stderr: string;
  events: OomprofEvent[];
}

/** Runs oomprof to completion; with `--events -` the stdout lines are parsed and schema-checked. */
export async function runOomprof(
  args: string[],
  opts: { env?: Record<string, string>; cwd?: string; stdin?: string; timeoutMs?: number } = {},
): Promise<OomprofResult> {
  const p = Bun.spawn([...oomprofArgv(), ...args], {
    stdout: "pipe",
    stderr: "pipe",
    stdin: opts.stdin !== undefined ? new Blob([opts.stdin]) : "ignore",
    cwd: opts.cwd,
    env: { ...process.env, ...opts.env },
  });
  const timer = setTimeout(() => p.kill("SIGKILL"), opts.timeoutMs ?? 120_000);
  const [stdout, stderr, status] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  clearTimeout(timer);
  const events = args.includes("-")
    ? stdout
        .split("\n")
        .filter((l) => l.trim())
        .map((l) => OomprofEvent.parse(JSON.parse(l)))
    : [];
  return { status, stdout, stderr, events };
}

export function tempDir(prefix = "oomprof-test-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/**
 * Flat values per function from `go tool pprof -top` for one sample type: Go's own
 * tool is the judge of what a profile says.
 */
export function pprofTop(file: string, sampleIndex: string, go = process.env.OOMPROF_GO ?? "go"): { total: number; flat: Map<string, number> } {
  const p = Bun.spawnSync([go, "tool", "pprof", "-top", "-nodefraction=0", "-nodecount=1000", `-sample_index=${sampleIndex}`, file], { stderr: "pipe" });
  if (p.exitCode !== 0) throw new Error(`go tool pprof failed: ${p.stderr.toString()}`);
  const text = p.stdout.toString();
  const flat = new Map<string, number>();
  const totalMatch = /of ([\d.]+)([kMGT]?B) total/.exec(text);
  const total = totalMatch ? bytes(totalMatch[1]!, totalMatch[2]!) : 0;
  for (const line of text.split("\n")) {
    const m = /^\s*([\d.]+)([kMGT]?B)\s+[\d.]+%\s+[\d.]+%\s+[\d.]+[kMGT]?B\s+[\d.]+%\s+(\S+)/.exec(line);
    if (m) flat.set(m[3]!, (flat.get(m[3]!) ?? 0) + bytes(m[1]!, m[2]!));
  }
  return { total, flat };
}

function bytes(n: string, unit: string): number {
  const mult: Record<string, number> = { B: 1, kB: 1024, MB: 1024 ** 2, GB: 1024 ** 3, TB: 1024 ** 4 };
  return Number(n) * (mult[unit] ?? 1);
}
