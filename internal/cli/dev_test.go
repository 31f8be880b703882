package cli

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/adaptrec/adaptrec/internal/config"
	"github.com/adaptrec/adaptrec/internal/devstack"
	"github.com/adaptrec/adaptrec/internal/testenv"
)

func TestComponentsWithout(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		without []string
		want    []devstack.Component
		err     string
	}{
		{without: nil, want: devstack.All()},
		{without: []string{"temporal"}, want: []devstack.Component{devstack.Kafka, devstack.Redis, devstack.S3}},
		{without: []string{"Kafka", "s3"}, want: []devstack.Component{devstack.Redis, devstack.Temporal}},
		{without: []string{"zookeeper"}, err: `--without: unknown component "zookeeper"`},
		{without: []string{"kafka", "redis", "s3", "temporal"}, err: "leaves no component"},
	} {
		got, err := componentsWithout(tc.without)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("componentsWithout(%q) error = %v, want %q", tc.without, err, tc.err)
			}
			continue
		}
		if err != nil || strings.Join(toStrings(got), ",") != strings.Join(toStrings(tc.want), ",") {
			t.Errorf("componentsWithout(%q) = %v, %v; want %v", tc.without, got, err, tc.want)
		}
	}
}

func TestResolveStateDir(t *testing.T) {
	t.Parallel()
	root, err := devstack.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := resolveStateDir(""); got != root+"/.adaptrec/dev" {
		t.Errorf("default state dir = %s, want %s/.adaptrec/dev", got, root)
	}
	if got, _ := resolveStateDir("/var/tmp/x/../y"); got != "/var/tmp/y" {
		t.Errorf("explicit state dir = %s, want /var/tmp/y", got)
	}
}

// TestDevUpAndStatus runs `dev up` on free ports until its context ends and
// checks what it prints, that `dev status` sees it up, and that it stops.
func TestDevUpAndStatus(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var stdout, stderr syncBuffer
	opts := devstack.Options{
		StateDir: t.TempDir(),
		Persist:  true,
		LookupTool: func(name string) (string, error) {
			if name == devstack.Kafka.Tool() {
				return testenv.Binary(t, "./devtools/kafkabroker"), nil
			}
			return devstack.FindTool(name)
		},
	}
	done := make(chan error, 1)
	go func() { done <- devUp(ctx, &stdout, &stderr, opts) }()
	testenv.Eventually(t, 2*time.Minute, func() error {
		select {
		case err := <-done:
			t.Fatalf("dev up returned before it was stopped: %v\n%s", err, stderr.String())
		default:
		}
		if !strings.Contains(stdout.String(), "Press Ctrl-C to stop") {
			return errors.New("stack not ready yet")
		}
		return nil
	})
	out := stdout.String()
	for _, want := range []string{"Kafka bootstrap", "redis://127.0.0.1:", "S3 bucket         s3://adaptrec", "Temporal gRPC", "Temporal UI       http://127.0.0.1:", "Logs              " + opts.StateDir + "/logs"} {
		if !strings.Contains(out, want) {
			t.Errorf("dev up output lacks %q:\n%s", want, out)
		}
	}

	// dev status against the same addresses: read them back from the output.
	cfg := configFromOutput(t, out)
	var status bytes.Buffer
	if err := devStatus(t.Context(), &status, cfg); err != nil {
		t.Fatalf("dev status: %v\n%s", err, status.String())
	}
	if n := strings.Count(status.String(), "  up  "); n != 4 {
		t.Fatalf("dev status shows %d components up, want 4:\n%s", n, status.String())
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("dev up after cancel: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("dev up did not stop within a minute")
	}
	if !strings.HasSuffix(stderr.String(), "stopped\n") {
		t.Fatalf("dev up did not report a clean stop:\n%s", stderr.String())
	}
	status.Reset()
	err := devStatus(t.Context(), &status, cfg)
	if err == nil || err.Error() != "4 of 4 components down" {
		t.Fatalf("dev status after stop: %v\n%s", err, status.String())
	}
}

// configFromOutput rebuilds the stack's config from the addresses dev up
// printed.
func configFromOutput(t *testing.T, out string) (cfg config.Config) {
	t.Helper()
	cfg = config.Default()
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		last := f[len(f)-1]
		switch {
		case strings.HasPrefix(line, "  Kafka bootstrap"):
			cfg.Kafka.Brokers = []string{last}
		case strings.HasPrefix(line, "  Redis"):
			cfg.Redis.Addr = strings.TrimPrefix(last, "redis://")
		case strings.HasPrefix(line, "  S3 endpoint"):
			cfg.S3.Endpoint = last
		case strings.HasPrefix(line, "  Temporal gRPC"):
			cfg.Temporal.HostPort = last
		}
	}
	return cfg
}

func toStrings(cs []devstack.Component) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = string(c)
	}
	return out
}

// syncBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
