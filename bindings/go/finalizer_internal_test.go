package fieldcrypt

import (
	"os"
	"runtime"
	"testing"
	"time"
)

// A codec that is never closed is freed by its finalizer once unreachable.
func TestFinalizerFrees(t *testing.T) {
	policy, err := os.ReadFile("../../schemas/policies/demo.json")
	if err != nil {
		t.Fatal(err)
	}
	before := live.Load()
	for i := 0; i < 20; i++ {
		c, err := NewCodecJSON(policy, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Stats(); err != nil {
			t.Fatal(err)
		}
	}
	if live.Load() < before+20 {
		t.Fatalf("live %d, before %d", live.Load(), before)
	}
	deadline := time.Now().Add(10 * time.Second)
	for live.Load() > before {
		if time.Now().After(deadline) {
			t.Fatalf("%d codecs not freed", live.Load()-before)
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	// A closed codec has no finalizer left: closing it again by hand is harmless.
	c, err := NewCodecJSON(policy, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	c.Close()
	if live.Load() != before {
		t.Fatalf("live %d, want %d", live.Load(), before)
	}
}
