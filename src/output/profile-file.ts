import { closeSync, constants, mkdirSync, openSync, renameSync, statSync, unlinkSync, writeSync } from "node:fs";
import { open } from "node:fs/promises";
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

/** fsyncs started by writeFileAtomic and not yet finished. */
const syncing = new Set<Promise<void>>();

/**
 * Writes a file atomically: a private temp file in the same directory (never
 * following a planted symlink), written whole, then renamed into place. A full disk
 * leaves no truncated profile behind, only the error.
 *
 * The file is fsynced after the rename, off the event loop: a reader never sees it
 * partial either way, and the fsync of a fresh file took 2-6 ms here, sometimes 50 ms
 * (a journal commit), between a kill and its profile. `onSyncFailed` hears if the
 * data could not be made durable; writesSynced() waits for every sync started.
 */
export function writeFileAtomic(dir: string, name: string, data: Uint8Array, onSyncFailed?: (message: string) => void): string {
  const final = join(dir, name);
  const tmp = join(dir, `.${name}.${process.pid}.tmp`);
  let fd: number | undefined;
  try {
    fd = openSync(tmp, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY | constants.O_NOFOLLOW, 0o600);
    let off = 0;
    while (off < data.length) off += writeSync(fd, data, off);
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, final);
  } catch (e) {
    if (fd !== undefined) closeSync(fd);
    try {
      unlinkSync(tmp);
    } catch {
      /* nothing to clean */
    }
    throw new UserError(`cannot write profile ${final}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const sync = syncFile(final).catch((e: NodeJS.ErrnoException) =>
    onSyncFailed?.(`profile ${final} may not survive a crash: fsync failed (${e.code ?? e.message})`),
  );
  syncing.add(sync);
  void sync.finally(() => syncing.delete(sync));
  return final;
}

async function syncFile(path: string): Promise<void> {
  const handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Resolves once every file written so far is fsynced (or its failure was told). */
export async function writesSynced(): Promise<void> {
  await Promise.all(syncing);
}
