import { closeSync, constants, fsyncSync, mkdirSync, openSync, renameSync, statSync, unlinkSync, writeSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { UserError } from "../errors.ts";

/** Makes sure --out exists (created 0700) and is a writable directory. */
export function prepareOutDir(dir: string): string {
  const abs = resolve(dir);
  try {
    mkdirSync(abs, { recursive: true, mode: 0o700 });
    if (!statSync(abs).isDirectory()) throw new UserError(`--out ${dir} is not a directory`);
    const probe = join(abs, `.oomprof-write-test-${process.pid}`);
    closeSync(openSync(probe, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY | constants.O_NOFOLLOW, 0o600));
    unlinkSync(probe);
  } catch (e) {
    if (e instanceof UserError) throw e;
    throw new UserError(`--out ${dir} is not writable: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  return abs;
}

/** `<comm>-<pid>-<UTC timestamp>.pb.gz`, with the comm reduced to filename-safe characters. */
export function profileFileName(comm: string, pid: number, when: Date): string {
  const safe =
    comm
      .replace(/[^A-Za-z0-9._-]/g, "_")
      .replace(/^\.+/, "_")
      .slice(0, 32) || "unknown";
  const ts = when
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d+Z$/, "Z");
  return `${safe}-${pid}-${ts}.pb.gz`;
}

/** The base profile's name beside a kill's profile: `X.pb.gz` → `X.base.pb.gz`, for `go tool pprof -diff_base X.base.pb.gz X.pb.gz`. */
export function baseProfileName(profile: string): string {
  return `${basename(profile).replace(/\.pb\.gz$/, "")}.base.pb.gz`;
}

/**
 * Writes a file atomically: a private temp file in the same directory (never
 * following a planted symlink), fsync, then rename. A full disk leaves no
 * truncated profile behind, only the error.
 */
export function writeFileAtomic(dir: string, name: string, data: Uint8Array): string {
  const final = join(dir, name);
  const tmp = join(dir, `.${name}.${process.pid}.tmp`);
  let fd: number | undefined;
  try {
    fd = openSync(tmp, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY | constants.O_NOFOLLOW, 0o600);
    let off = 0;
    while (off < data.length) off += writeSync(fd, data, off);
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, final);
    return final;
  } catch (e) {
    if (fd !== undefined) closeSync(fd);
    try {
      unlinkSync(tmp);
    } catch {
      /* nothing to clean */
    }
    throw new UserError(`cannot write profile ${final}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}
