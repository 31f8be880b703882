package telemetry

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestServer(t *testing.T) {
	s, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- s.Serve(ctx) }()
	base := "http://" + s.Addr()

	var loaded atomic.Bool
	s.AddReadiness("model", func(context.Context) error {
		if !loaded.Load() {
			return errors.New("model not loaded")
		}
		return nil
	})
	if code, body := get(t, base+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "model not loaded") {
		t.Fatalf("/readyz = %d %q, want 503 naming the reason", code, body)
	}
	loaded.Store(true)
	if code, _ := get(t, base+"/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz = %d after ready, want 200", code)
	}
	if code, _ := get(t, base+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz = %d", code)
	}
	if code, body := get(t, base+"/metrics"); code != http.StatusOK || !strings.Contains(body, "go_goroutines") {
		t.Fatalf("/metrics = %d without Go metrics", code)
	}
	if _, err := Listen(s.Addr()); err == nil || !strings.Contains(err.Error(), s.Addr()) {
		t.Fatalf("second Listen on %s = %v, want an error naming the address", s.Addr(), err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve after cancel = %v", err)
	}
}
