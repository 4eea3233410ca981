// burst leaks steadily at one site for a while, then bursts at another until it is
// OOM-killed: the site that grew fastest before death is the burst, though the steady
// leak may hold as much of the heap at death.
//
// Environment: STEADY_MS, how long the steady phase lasts (default 6000);
// STEADY_KIB_PER_S and BURST_KIB_PER_S, how fast each phase leaks (defaults 4096 and
// 65536).
package main

import (
	"fmt"
	"os"
	"runtime/pprof"
	"strconv"
	"time"
)

var retained [][]byte

//go:noinline
func steadyLeak(n int) {
	b := make([]byte, n)
	touch(b)
	retained = append(retained, b)
}

//go:noinline
func burstLeak(n int) {
	b := make([]byte, n)
	touch(b)
	retained = append(retained, b)
}

// touch makes every page resident, so the leak counts against the memory limit.
func touch(b []byte) {
	for i := 0; i < len(b); i += 4096 {
		b[i] = 1
	}
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

// leak calls step with 64 KiB chunks at kibPerSecond until the deadline (forever if zero).
func leak(step func(int), kibPerSecond int, until time.Time) {
	const chunkKiB = 64
	tick := time.Second * chunkKiB / time.Duration(kibPerSecond)
	for next := time.Now(); until.IsZero() || time.Now().Before(until); next = next.Add(tick) {
		step(chunkKiB << 10)
		time.Sleep(time.Until(next.Add(tick)))
	}
}

func main() {
	// The linker keeps memory profiling only where the heap profile is reachable.
	if os.Getenv("BURST_OWN_PROFILE") != "" {
		pprof.Lookup("heap").WriteTo(os.Stderr, 1)
	}
	steadyMs := envInt("STEADY_MS", 6000)
	fmt.Println("burst: steady")
	leak(steadyLeak, envInt("STEADY_KIB_PER_S", 4096), time.Now().Add(time.Duration(steadyMs)*time.Millisecond))
	fmt.Println("burst: bursting")
	leak(burstLeak, envInt("BURST_KIB_PER_S", 65536), time.Time{})
}
