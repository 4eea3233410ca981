import { closeSync, openSync, readFileSync, readSync } from "node:fs";
import { z } from "zod";
import { UserError } from "../errors.ts";
import { pageSize } from "./libc.ts";

/** One line of /proc/PID/maps. */
export const MapsLine = z.object({
  // Kernel addresses (the vsyscall page) exceed 2^53: kept as approximate numbers.
  start: z.number().nonnegative(),
  end: z.number().nonnegative(),
  perms: z.string().regex(/^[r-][w-][x-][ps]$/),
  offset: z.number().int().nonnegative(),
  inode: z.number().int().nonnegative(),
  path: z.string(),
});
export type MapsLine = z.infer<typeof MapsLine>;

export function readMaps(pid: number): MapsLine[] {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/maps`, "utf8");
  } catch (e) {
    throw new UserError(
      `pid ${pid}: ${(e as NodeJS.ErrnoException).code === "ENOENT" ? "no such process" : `cannot read its memory map (${(e as NodeJS.ErrnoException).code})`}`,
    );
  }
  return text
    .split("\n")
    .filter(Boolean)
    .map((line) => {
      const m = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) ([0-9a-f]+) \S+ (\d+)\s*(.*)$/.exec(line);
      return MapsLine.parse(
        m ? { start: parseInt(m[1]!, 16), end: parseInt(m[2]!, 16), perms: m[3], offset: parseInt(m[4]!, 16), inode: Number(m[5]), path: m[6] ?? "" } : {},
      );
    });
}

/** What loadBias needs to know of a binary: where its text segment sits in the file and in memory. */
export interface MappedBinary {
  path: string;
  inode: number;
  text: { vaddr: bigint | number; offset: number };
}

/**
 * The load bias of a target in a live process: where its executable text segment is
 * mapped minus where the ELF says it goes (0 for non-PIE Go binaries).
 */
export function loadBias(target: MappedBinary, maps: MapsLine[]): number {
  const pageVaddr = Number(target.text.vaddr) - (Number(target.text.vaddr) % 4096);
  const pageOffset = target.text.offset - (target.text.offset % 4096);
  const text = maps.find((m) => m.inode === target.inode && m.perms[2] === "x" && m.offset === pageOffset);
  if (!text) throw new UserError(`${target.path}: its text segment is not mapped in this process`);
  return text.start - pageVaddr;
}

/** /proc/PID/statm: sizes in pages; only the first two fields are read. */
const Statm = z.tuple([z.coerce.number().int().nonnegative(), z.coerce.number().int().nonnegative()]);

/** pid's resident set in bytes (one small read), or undefined when it is gone. */
export function residentBytes(pid: number): number | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/statm`, "utf8");
  } catch {
    return undefined;
  }
  const r = Statm.safeParse(text.trim().split(/\s+/).slice(0, 2));
  return r.success ? r.data[1] * pageSize() : undefined;
}

/** Reads another process's memory through /proc/PID/mem without stopping it. */
export class ProcessMemory {
  private fd: number;

  constructor(readonly pid: number) {
    try {
      this.fd = openSync(`/proc/${pid}/mem`, "r");
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new UserError(`pid ${pid}: cannot read its memory (${code}${code === "EACCES" || code === "EPERM" ? ": run as root" : ""})`);
    }
  }

  /** Reads len bytes at addr; returns undefined if the range is not mapped (or the process is gone). */
  read(addr: number, len: number): Buffer | undefined {
    const buf = Buffer.alloc(len);
    try {
      const n = readSync(this.fd, buf, 0, len, addr);
      return n === len ? buf : undefined;
    } catch {
      return undefined;
    }
  }

  u64(addr: number): number | undefined {
    const b = this.read(addr, 8);
    return b ? Number(b.readBigUInt64LE(0)) : undefined;
  }

  close(): void {
    closeSync(this.fd);
  }
}
