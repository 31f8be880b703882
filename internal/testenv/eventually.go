package testenv

import (
	"testing"
	"time"
)

// Eventually calls cond until it returns nil, failing the test with cond's
// last error if that does not happen within timeout. It polls quickly at
// first and backs off to every 250 ms, and stops early when the test's
// context ends.
func Eventually(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	interval := 5 * time.Millisecond
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s: %v", timeout, err)
		}
		select {
		case <-t.Context().Done():
			t.Fatalf("test ended before condition was met: %v", err)
		case <-time.After(min(interval, time.Until(deadline)+time.Millisecond)):
		}
		interval = min(2*interval, 250*time.Millisecond)
	}
}
