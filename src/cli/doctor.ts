import { hostReady, realHost, runChecks, type CheckResult } from "../host/checks.ts";
import type { DoctorFlags } from "./options.ts";

const LABEL: Record<CheckResult["status"], string> = { ok: "ok", warn: "warn", fail: "FAIL" };

/** One line per check: status, name, what was found, and for gaps the fix. */
export function formatCheck(r: CheckResult, nameWidth: number): string {
  const fix = r.fix && r.status !== "ok" ? ` -- fix: ${r.fix}` : "";
  return `${LABEL[r.status].padEnd(4)}  ${r.name.padEnd(nameWidth)}  ${r.found}${fix}`;
}

/**
 * `oomprof doctor`: whether this host has what oomprof needs, and how to fix each gap.
 * Exits 0 only when nothing failed (warnings are fine). The check lines go to stdout
 * (or one JSON object with --json); the verdict goes to stderr.
 */
export async function doctorCommand(flags: DoctorFlags): Promise<number> {
  const results = runChecks(realHost());
  const ready = hostReady(results);
  if (flags.json) {
    process.stdout.write(`${JSON.stringify({ ready, checks: results })}\n`);
  } else {
    const width = Math.max(...results.map((r) => r.name.length));
    process.stdout.write(results.map((r) => formatCheck(r, width)).join("\n") + "\n");
    const failed = results.filter((r) => r.status === "fail").length;
    const warned = results.filter((r) => r.status === "warn").length;
    process.stderr.write(
      ready
        ? `oomprof: this host is ready${warned ? ` (${warned} warning${warned === 1 ? "" : "s"})` : ""}\n`
        : `oomprof: this host is not ready: ${failed} check${failed === 1 ? "" : "s"} failed\n`,
    );
  }
  return ready ? 0 : 1;
}
