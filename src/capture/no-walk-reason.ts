import { DISABLED_HINT } from "../gobinary/go-target.ts";
import type { ExecInfo } from "./binary-registry.ts";

/**
 * Why a victim watch heard of had no walk, in words that are true: a Go program is never
 * called "not a Go program", and a kill that came before oomprof had read the binary, or
 * before its walk was live, says so with the milliseconds.
 */
export interface UnwalkedVictim {
  exe: string | undefined;
  /** What reading its binary said; undefined when it was not read. */
  info: Pick<ExecInfo, "target" | "why"> | undefined;
  /** When it started, when it was killed, and when its binary's walk went live: ms since boot. */
  startedMs?: number;
  killedMs?: number;
  liveMs?: number;
}

const ms = (from: number | undefined, to: number | undefined) => (from !== undefined && to !== undefined ? Math.max(0, Math.round(to - from)) : undefined);

export function noWalkReason(v: UnwalkedVictim): string {
  const exe = v.exe ?? "its executable";
  const age = ms(v.startedMs, v.killedMs);
  const killedAt = age !== undefined ? `killed ${age} ms after it started` : "killed";
  const info = v.info;
  if (!info) return `${exe}: ${killedAt}, before oomprof had read its binary`;
  if (info.target) {
    const t = info.target;
    if (t.memProfilingDisabled) return `${exe}: ${DISABLED_HINT}`;
    const live = ms(v.startedMs, v.liveMs);
    const when = live !== undefined ? `its walk went live ${live} ms after it started` : "oomprof was still adding its walk";
    return `${exe}: a Go program (${t.buildInfo.goVersion}) ${killedAt}, before its walk was live (${when})`;
  }
  const why = info.why ?? "unknown";
  if (/^not a Go program/.test(why)) return `${exe}: ${why}`;
  if (/before it could be read/.test(why)) return `${exe}: ${killedAt}, before oomprof could read its binary (${why})`;
  return `${exe}: oomprof could not read its binary as a Go program (${why})`;
}
