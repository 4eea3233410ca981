import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { UserError } from "../errors.ts";
import { baseProfileName } from "../output/profile-file.ts";
import { decodeProfile, foldProfile, profileGrowth, type FlameData } from "../report/flame-data.ts";
import { renderReportHtml, type ReportPageOptions } from "../report/html.ts";
import { log } from "./log.ts";
import type { ReportFlags } from "./options.ts";

/** FILE.pb.gz → FILE.html; anything else gets .html appended. */
export function defaultReportPath(file: string): string {
  return /\.pb\.gz$/i.test(file) ? file.replace(/\.pb\.gz$/i, ".html") : `${file}.html`;
}

/**
 * `oomprof report FILE.pb.gz [-o report.html]`: one self-contained HTML page with an
 * icicle graph, a view selector for every sample type, search and a top table; and,
 * when oomprof wrote a base profile beside it, what grew since.
 */
export async function reportCommand(flags: ReportFlags): Promise<number> {
  const input = flags.file;
  const output = flags.output ?? defaultReportPath(input);
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(input);
  } catch (e) {
    throw new UserError(`${input}: ${ioReason(e)}`);
  }
  const data = foldProfile(decodeProfile(bytes, input));
  const html = renderReportHtml(data, { source: resolve(input), base: baseOf(input, data) });
  if (resolve(output) === resolve(input)) throw new UserError(`${output}: refusing to overwrite the profile itself (choose another -o)`);
  try {
    writeFileSync(output, html, { mode: 0o600 });
  } catch (e) {
    throw new UserError(`cannot write ${output}: ${ioReason(e)}`);
  }
  log.info(`wrote ${output}`);
  return 0;
}

/** The base profile oomprof wrote beside a kill's (`X.base.pb.gz` for `X.pb.gz`), and what grew since; undefined when there is none. */
function baseOf(input: string, data: FlameData): ReportPageOptions["base"] {
  if (!/\.pb\.gz$/i.test(input) || /\.base\.pb\.gz$/i.test(input)) return undefined;
  const path = resolve(join(dirname(input), baseProfileName(input)));
  if (!existsSync(path)) return undefined;
  let base: FlameData;
  try {
    base = foldProfile(decodeProfile(readFileSync(path), path));
  } catch (e) {
    log.warn(`${path}: not used as the base profile (${e instanceof Error ? e.message : String(e)})`);
    return undefined;
  }
  const growth = profileGrowth(base, data);
  return growth && { source: path, growth };
}

function ioReason(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  switch (code) {
    case "ENOENT":
      return "no such file or directory";
    case "EACCES":
    case "EPERM":
      return "permission denied";
    case "EISDIR":
      return "is a directory";
    case "ENOTDIR":
      return "a parent is not a directory";
    case "EROFS":
      return "read-only file system";
    case "ENOSPC":
      return "no space left on device";
    default:
      return code ?? (e instanceof Error ? e.message.split("\n")[0]! : String(e));
  }
}
