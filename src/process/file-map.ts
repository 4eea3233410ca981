import { fstatSync } from "node:fs";
import { mapReadOnly } from "./libc.ts";

/**
 * A file's bytes mapped read-only (mmap, MAP_PRIVATE) rather than read into the heap. A
 * Go binary's tables are read a few pages at a time: reading a whole 2.4 MB test binary
 * took 14-16 ms, most of it faulting in fresh heap pages, where mapping it takes well
 * under 1 ms and adds no anonymous memory (the pages are the page cache's, shared with
 * the program's own text, and reclaimable). The mapping goes when its ArrayBuffer is
 * collected (see mapReadOnly).
 *
 * A mapped file that is truncated faults (SIGBUS) on a read past its new end, which no
 * JavaScript can catch. A running executable cannot be opened for writing, but a
 * binary whose processes are gone can be rewritten in place (`cp new old`), so whoever
 * keeps the bytes must ask unchanged() before reading them again.
 */
export interface MappedFile {
  bytes: Uint8Array;
  /** The file still has the size and times it had when mapped. */
  unchanged(): boolean;
}

/** fd's whole file, mapped; undefined where it cannot be (no libc, an empty file, a file system without mmap). */
export function mapFile(fd: number): MappedFile | undefined {
  const st = fstatSync(fd, { bigint: true });
  const size = Number(st.size);
  if (size === 0 || !Number.isSafeInteger(size)) return undefined;
  const buffer = mapReadOnly(fd, size);
  if (!buffer) return undefined;
  return {
    bytes: new Uint8Array(buffer),
    unchanged() {
      try {
        const now = fstatSync(fd, { bigint: true });
        return now.size === st.size && now.mtimeNs === st.mtimeNs && now.ctimeNs === st.ctimeNs;
      } catch {
        return false;
      }
    },
  };
}
