// noprof leaks like leaker but links no runtime/pprof, so the Go linker turns memory
// profiling off (runtime.disableMemoryProfiling): there are no buckets unless oomprof
// turns it back on.
package main

import (
	"fmt"
	"time"
)

var retained [][]byte

//go:noinline
func leakStep(n int) {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i)
	}
	retained = append(retained, b)
}

func main() {
	fmt.Println("noprof: started")
	for {
		leakStep(64 << 10)
		time.Sleep(100 * time.Microsecond)
	}
}
