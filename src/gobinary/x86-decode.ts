/**
 * An x86-64 instruction-length decoder, for stripped-vars.ts: it walks Go
 * functions instruction by instruction (Go puts no data inside functions) and
 * reports what the runtime-variable patterns need: opcode, ModRM fields,
 * RIP-relative targets and immediates.
 */

/**
 * One decoded instruction: enough to measure it and to read the operands the
 * patterns need. Opcode maps: 0 one-byte, 1 0F, 2 0F38, 3 0F3A (VEX/EVEX map
 * numbers are the same).
 */
export interface Insn {
  /** Offset within the decoded buffer. */
  at: number;
  length: number;
  map: number;
  op: number;
  /** VEX/EVEX encoded. */
  vex: boolean;
  rexW: boolean;
  /** 66 operand-size prefix. */
  opsize16: boolean;
  modrmMod?: number;
  /** ModRM.reg without the REX.R extension (the /digit of group opcodes). */
  modrmReg?: number;
  /** Target address of a RIP-relative memory operand. */
  rip?: bigint;
  /** Sign-extended immediate (unsigned for 64-bit mov imm64). */
  imm?: bigint;
}

const MAX_INSN_LENGTH = 15;

// One-byte opcode map properties (64-bit mode). M: has ModRM. Immediates: b imm8,
// z imm16/32 (operand size), w imm16, v imm16/32/64 (mov r, imm), e ENTER (imm16 + imm8),
// o moffs (8 bytes), x invalid in 64-bit mode. Prefixes, REX, VEX/EVEX and 0F are
// handled before the table is consulted.
const ONE_BYTE: string[] = (() => {
  const t: string[] = new Array(256).fill("");
  for (let row = 0; row < 0x40; row += 8) {
    t[row] = t[row + 1] = t[row + 2] = t[row + 3] = "M";
    t[row + 4] = "b";
    t[row + 5] = "z";
    t[row + 6] = t[row + 7] = "x";
  }
  // 26, 2E, 36, 3E are prefixes; 0F is the escape: both handled earlier.
  for (const op of [0x60, 0x61, 0x82, 0x9a, 0xc4, 0xc5, 0xce, 0xd4, 0xd5, 0xd6, 0xea]) t[op] = "x";
  t[0x63] = "M";
  t[0x68] = "z";
  t[0x69] = "Mz";
  t[0x6a] = "b";
  t[0x6b] = "Mb";
  for (let op = 0x70; op <= 0x7f; op++) t[op] = "b";
  t[0x80] = "Mb";
  t[0x81] = "Mz";
  t[0x83] = "Mb";
  for (let op = 0x84; op <= 0x8f; op++) t[op] = "M";
  for (let op = 0xa0; op <= 0xa3; op++) t[op] = "o";
  t[0xa8] = "b";
  t[0xa9] = "z";
  for (let op = 0xb0; op <= 0xb7; op++) t[op] = "b";
  for (let op = 0xb8; op <= 0xbf; op++) t[op] = "v";
  t[0xc0] = t[0xc1] = "Mb";
  t[0xc2] = t[0xca] = "w";
  t[0xc6] = "Mb";
  t[0xc7] = "Mz";
  t[0xc8] = "e";
  t[0xcd] = "b";
  for (let op = 0xd0; op <= 0xd3; op++) t[op] = "M";
  for (let op = 0xd8; op <= 0xdf; op++) t[op] = "M";
  for (let op = 0xe0; op <= 0xe7; op++) t[op] = "b";
  t[0xe8] = t[0xe9] = "z";
  t[0xeb] = "b";
  t[0xf6] = t[0xf7] = "M"; // immediate only for /0 and /1: see below
  t[0xfe] = t[0xff] = "M";
  return t;
})();

/** 0F map: opcodes without ModRM, and those with an imm8 after it. */
const TWO_BYTE_NO_MODRM = new Set([
  0x05, 0x06, 0x07, 0x08, 0x09, 0x0b, 0x0e, 0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x37, 0x77, 0xa0, 0xa1, 0xa2, 0xa8, 0xa9, 0xaa,
]);
const TWO_BYTE_INVALID = new Set([0x04, 0x0a, 0x0c, 0x36, 0x39, 0x3b, 0x3c, 0x3d, 0x3e, 0x3f]);
const TWO_BYTE_IMM8 = new Set([0x0f, 0x70, 0x71, 0x72, 0x73, 0xa4, 0xac, 0xba, 0xc2, 0xc4, 0xc5, 0xc6]);

/**
 * Decodes the instruction at `at` (x86-64, 64-bit mode); `base` is the address
 * of code[0]. Undefined if the bytes are not a valid instruction or run past
 * the buffer. Covers legacy prefixes, REX, the one-byte, 0F, 0F38 and 0F3A
 * maps, VEX and EVEX: everything the Go toolchain emits.
 */
export function decodeX86(code: Uint8Array, at: number, base: bigint): Insn | undefined {
  const limit = Math.min(code.length, at + MAX_INSN_LENGTH);
  let p = at;
  const byte = (): number | undefined => (p < limit ? code[p++] : undefined);
  let opsize16 = false;
  let addr32 = false;
  let rex = 0;
  let b: number | undefined;
  // Legacy prefixes, then an optional REX (a REX before a legacy prefix is ignored by the CPU).
  for (;;) {
    b = byte();
    if (b === undefined) return undefined;
    if (b === 0x66) opsize16 = true;
    else if (b === 0x67) addr32 = true;
    else if (b === 0xf0 || b === 0xf2 || b === 0xf3 || b === 0x26 || b === 0x2e || b === 0x36 || b === 0x3e || b === 0x64 || b === 0x65) {
      // lock, rep, segment: no effect on length
    } else if (b >= 0x40 && b <= 0x4f) {
      rex = b;
    } else break;
    if (b < 0x40 || b > 0x4f) rex = 0;
  }
  let rexW = (rex & 8) !== 0;
  let map = 0;
  let op = b;
  let vex = false;
  let hasModrm: boolean;
  let immBytes = 0;
  let immSigned = true;

  if (op === 0xc4 || op === 0xc5 || op === 0x62) {
    // VEX (C4 3-byte, C5 2-byte) and EVEX (62): always these in 64-bit mode.
    vex = true;
    if (op === 0xc5) {
      if (byte() === undefined) return undefined;
      map = 1;
    } else if (op === 0xc4) {
      const p0 = byte();
      const p1 = byte();
      if (p0 === undefined || p1 === undefined) return undefined;
      map = p0 & 0x1f;
      rexW = (p1 & 0x80) !== 0;
    } else {
      const p0 = byte();
      const p1 = byte();
      const p2 = byte();
      if (p0 === undefined || p1 === undefined || p2 === undefined) return undefined;
      map = p0 & 0x07;
      rexW = (p1 & 0x80) !== 0;
    }
    if (map < 1 || map > 3) return undefined;
    const o = byte();
    if (o === undefined) return undefined;
    op = o;
    // vzeroupper/vzeroall (VEX 0F 77) are the only ModRM-less VEX instructions.
    hasModrm = !(map === 1 && op === 0x77);
    if (map === 3 || (map === 1 && (TWO_BYTE_IMM8.has(op) || op === 0x0f))) immBytes = 1;
  } else if (op === 0x0f) {
    const o = byte();
    if (o === undefined) return undefined;
    if (o === 0x38 || o === 0x3a) {
      map = o === 0x38 ? 2 : 3;
      const o2 = byte();
      if (o2 === undefined) return undefined;
      op = o2;
      hasModrm = true;
      immBytes = map === 3 ? 1 : 0;
    } else {
      map = 1;
      op = o;
      if (TWO_BYTE_INVALID.has(op)) return undefined;
      if (op >= 0x80 && op <= 0x8f) {
        hasModrm = false;
        immBytes = 4; // jcc rel32
      } else if (op >= 0xc8 && op <= 0xcf) {
        hasModrm = false; // bswap
      } else {
        hasModrm = !TWO_BYTE_NO_MODRM.has(op);
        if (TWO_BYTE_IMM8.has(op)) immBytes = 1;
      }
    }
  } else {
    const kind = ONE_BYTE[op]!;
    if (kind === "x") return undefined;
    hasModrm = kind.startsWith("M");
    const imm = hasModrm ? kind.slice(1) : kind;
    if (imm === "b") immBytes = 1;
    else if (imm === "z") immBytes = opsize16 && op !== 0xe8 && op !== 0xe9 ? 2 : 4;
    else if (imm === "w") immBytes = 2;
    else if (imm === "e") immBytes = 3;
    else if (imm === "v") {
      immBytes = rexW ? 8 : opsize16 ? 2 : 4;
      immSigned = false;
    } else if (imm === "o") {
      immBytes = addr32 ? 4 : 8;
      immSigned = false;
    }
  }

  let modrmMod: number | undefined;
  let modrmReg: number | undefined;
  let dispAt = -1;
  let dispBytes = 0;
  let ripRelative = false;
  if (hasModrm) {
    const m = byte();
    if (m === undefined) return undefined;
    modrmMod = m >> 6;
    modrmReg = (m >> 3) & 7;
    const rm = m & 7;
    if (modrmMod !== 3) {
      if (rm === 4) {
        const sib = byte();
        if (sib === undefined) return undefined;
        if (modrmMod === 0 && (sib & 7) === 5) dispBytes = 4;
      } else if (modrmMod === 0 && rm === 5) {
        dispBytes = 4;
        ripRelative = !addr32;
      }
      if (modrmMod === 1) dispBytes = 1;
      else if (modrmMod === 2) dispBytes = 4;
    }
    // Group 3 (test r/m, imm) is the only one-byte ModRM opcode whose immediate depends on /reg.
    if (map === 0 && !vex && (op === 0xf6 || op === 0xf7) && modrmReg <= 1) {
      immBytes = op === 0xf6 ? 1 : opsize16 ? 2 : 4;
    }
  }
  dispAt = p;
  p += dispBytes;
  const immAt = p;
  p += immBytes;
  if (p > limit) return undefined;

  const length = p - at;
  const insn: Insn = { at, length, map, op, vex, rexW, opsize16 };
  if (modrmMod !== undefined) insn.modrmMod = modrmMod;
  if (modrmReg !== undefined) insn.modrmReg = modrmReg;
  if (ripRelative) insn.rip = base + BigInt(at + length) + littleEndian(code, dispAt, 4, true);
  if (immBytes === 3)
    insn.imm = littleEndian(code, immAt, 2, false); // ENTER: the frame size
  else if (immBytes > 0) insn.imm = littleEndian(code, immAt, immBytes, immSigned);
  return insn;
}

/** A little-endian integer of `size` bytes at `at` (already bounds-checked by the caller). */
function littleEndian(code: Uint8Array, at: number, size: number, signed: boolean): bigint {
  let v = 0n;
  for (let i = size - 1; i >= 0; i--) v = (v << 8n) | BigInt(code[at + i]!);
  return signed ? BigInt.asIntN(size * 8, v) : v;
}
