import { fstatSync } from "node:fs";
import { dlopen, FFIType, toArrayBuffer } from "bun:ffi";

/**
 * A file's bytes mapped read-only (mmap, MAP_PRIVATE) rather than read into the heap. A
 * Go binary's tables are read a few pages at a time: reading a whole 2.4 MB test binary
 * took 14-16 ms, most of it faulting in fresh heap pages, where mapping it takes well
 * under 1 ms and adds no anonymous memory (the pages are the page cache's, shared with
 * the program's own text, and reclaimable). The mapping goes when its ArrayBuffer is
 * collected: munmap is the buffer's deallocator, with the length as its context.
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

function openMmap() {
  return dlopen("libc.so.6", {
    mmap: { args: [FFIType.u64, FFIType.u64, FFIType.i32, FFIType.i32, FFIType.i32, FFIType.i64], returns: FFIType.u64 },
    munmap: { args: [FFIType.u64, FFIType.u64], returns: FFIType.i32 },
  });
}

/** bun:ffi's toArrayBuffer with its deallocator, called as deallocator(ptr, context) once the buffer is collected (not in bun-types). */
type ToArrayBufferFreed = (ptr: number, byteOffset: number, byteLength: number, context: number, deallocator: unknown) => ArrayBuffer;

let libc: ReturnType<typeof openMmap> | null | undefined;

const PROT_READ = 1;
const MAP_PRIVATE = 2;
const MAP_FAILED = 0xffffffffffffffffn;

/** fd's whole file, mapped; undefined where it cannot be (no libc, an empty file, a file system without mmap). */
export function mapFile(fd: number): MappedFile | undefined {
  if (libc === undefined) {
    try {
      libc = openMmap();
    } catch {
      libc = null;
    }
  }
  if (!libc) return undefined;
  const st = fstatSync(fd, { bigint: true });
  const size = Number(st.size);
  if (size === 0 || !Number.isSafeInteger(size)) return undefined;
  const addr = BigInt(libc.symbols.mmap(0, size, PROT_READ, MAP_PRIVATE, fd, 0));
  if (addr === MAP_FAILED) return undefined;
  const buffer = (toArrayBuffer as ToArrayBufferFreed)(Number(addr), 0, size, size, (libc.symbols.munmap as unknown as { ptr: number }).ptr);
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
