/**
 * How long `run` and `watch` wait for a killed process's records before reporting what
 * they have. A walk's lines stream for up to seconds (100,000 buckets), so a capture is
 * reported once nothing new has arrived for DRAIN_IDLE_MS, and never later than
 * DRAIN_MAX_MS. After the exit marker, bpftrace < 0.19 (one buffer per CPU) may still hold
 * lines from other CPUs: the stream must then be quiet for EXIT_QUIET_MS.
 */
export const DRAIN_IDLE_MS = 1500;
export const EXIT_QUIET_MS = 300;
export const DRAIN_MAX_MS = 60_000;
