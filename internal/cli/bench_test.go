package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/adaptrec/adaptrec/events"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/bench"
	"github.com/adaptrec/adaptrec/internal/config"
	"github.com/adaptrec/adaptrec/internal/devstack"
	"github.com/adaptrec/adaptrec/internal/objstore"
	"github.com/adaptrec/adaptrec/internal/testenv"
)

// benchTestLookup finds the servers a self-contained benchmark starts, with
// the broker built from this checkout as testenv does.
func benchTestLookup(t *testing.T) func(string) (string, error) {
	return func(name string) (string, error) {
		if name == devstack.Kafka.Tool() {
			return testenv.Binary(t, "./devtools/kafkabroker"), nil
		}
		return devstack.FindTool(name)
	}
}

// runBench runs `bench args...` as the command line would.
func runBench(t *testing.T, lookup func(string) (string, error), args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := benchCommand(lookup)
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err = cmd.ExecuteContext(t.Context())
	return out.String(), errOut.String(), err
}

func TestBenchIngestFlagErrors(t *testing.T) {
	t.Parallel()
	noTools := func(name string) (string, error) { return "", fmt.Errorf("test must not start %s", name) }
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"--events", "0"}, []string{"--events must be in 1..4294967295, got 0"}},
		{[]string{"--producers", "0", "--rate", "-5", "--batch", "200000"}, []string{
			"--producers must be in 1..64, got 0", "--rate must be >= 0 events/s (0: as fast as possible), got -5",
			"--batch must be in 0..100000 (0: automatic), got 200000"}},
		{[]string{"--flush-interval", "1ms", "--flush-events", "0", "--durable-timeout", "0s"}, []string{
			"--flush-interval must be >= 10ms, got 1ms", "--flush-events must be >= 1, got 0", "--durable-timeout must be > 0, got 0s"}},
		{[]string{"--keep"}, []string{"--keep only applies with --external"}},
		{[]string{"--rate", "fast"}, []string{`invalid argument "fast" for "--rate" flag`}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			t.Parallel()
			stdout, _, err := runBench(t, noTools, append([]string{"ingest", "--json"}, tt.args...)...)
			if err == nil {
				t.Fatalf("bench ingest %v succeeded", tt.args)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if stdout != "" {
				t.Errorf("a failed run printed to stdout: %q", stdout)
			}
		})
	}
}

func TestBenchReport(t *testing.T) {
	t.Parallel()
	v := struct {
		Bench string  `json:"bench"`
		Rate  float64 `json:"throughput_per_s"`
		Ok    bool    `json:"meets_target"`
	}{"ingest", 51234.5, true}
	var js, text bytes.Buffer
	if err := benchReport(&js, true, v); err != nil {
		t.Fatal(err)
	}
	if got, want := js.String(), `{"bench":"ingest","throughput_per_s":51234.5,"meets_target":true}`+"\n"; got != want {
		t.Errorf("JSON report = %q, want %q", got, want)
	}
	if err := benchReport(&text, false, v); err != nil {
		t.Fatal(err)
	}
	if got, want := text.String(), "bench             ingest\nthroughput_per_s  51234.5\nmeets_target      true\n"; got != want {
		t.Errorf("text report = %q, want %q", got, want)
	}
}

// lastJSONLine decodes the last line of stdout.
func lastJSONLine(t *testing.T, stdout string) map[string]any {
	t.Helper()
	lines := strings.Split(strings.TrimRight(stdout, "\n"), "\n")
	last := lines[len(lines)-1]
	var m map[string]any
	if err := json.Unmarshal([]byte(last), &m); err != nil {
		t.Fatalf("last line of stdout is not a JSON object: %v\n%s", err, stdout)
	}
	return m
}

// TestBenchIngest runs the self-contained benchmark end to end on a small
// load and checks the JSON line, the progress on stderr and that the stack
// and its directory are gone afterwards.
func TestBenchIngest(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: starts real servers; run without -short (make test)")
	}
	t.Parallel()
	const n = 20000
	stdout, stderr, err := runBench(t, benchTestLookup(t), "ingest", "--json", "--events", fmt.Sprint(n))
	if err != nil {
		t.Fatalf("bench ingest: %v\nstderr:\n%s", err, stderr)
	}
	m := lastJSONLine(t, stdout)
	for _, k := range []string{"bench", "events", "throughput_per_s", "produce_per_s", "p50_ms", "p95_ms", "p99_ms", "max_ms",
		"objects", "bytes", "rows_verified", "duration_s", "partitions", "target_throughput_per_s", "meets_target", "event_time"} {
		if _, ok := m[k]; !ok {
			t.Errorf("result lacks %q: %s", k, stdout)
		}
	}
	if m["bench"] != "ingest" || m["events"] != float64(n) || m["rows_verified"] != float64(n) || m["mode"] != "self-contained" {
		t.Errorf("bench %v, events %v, rows_verified %v, mode %v; want ingest, %d, %d, self-contained", m["bench"], m["events"], m["rows_verified"], m["mode"], n, n)
	}
	if m["target_throughput_per_s"] != float64(bench.IngestTargetPerS) || m["partitions"] != float64(config.Default().Kafka.Partitions) {
		t.Errorf("target %v, partitions %v", m["target_throughput_per_s"], m["partitions"])
	}
	p50, p99, maxMs, tput := m["p50_ms"].(float64), m["p99_ms"].(float64), m["max_ms"].(float64), m["throughput_per_s"].(float64)
	if !(0 < p50 && p50 <= p99 && p99 <= maxMs) || tput <= 0 || m["objects"].(float64) < 1 || m["other_rows"] != float64(0) {
		t.Errorf("implausible measurements: %s", stdout)
	}
	if meets := m["meets_target"].(bool); meets != (tput >= bench.IngestTargetPerS) {
		t.Errorf("meets_target %v with throughput %v", meets, tput)
	}
	if !strings.Contains(stderr, "published") || !strings.Contains(stderr, "all 20000 events durable") {
		t.Errorf("stderr lacks progress:\n%s", stderr)
	}

	dir := regexp.MustCompile(`free ports in (\S+)`).FindStringSubmatch(stderr)
	kafkaAddr := regexp.MustCompile(`kafka ready on (\S+)`).FindStringSubmatch(stderr)
	if dir == nil || kafkaAddr == nil {
		t.Fatalf("stderr names no state directory or broker address:\n%s", stderr)
	}
	if _, err := os.Stat(dir[1]); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state directory %s still exists (%v)", dir[1], err)
	}
	if c, err := net.DialTimeout("tcp", kafkaAddr[1], time.Second); err == nil {
		c.Close()
		t.Errorf("the benchmark's broker still listens on %s", kafkaAddr[1])
	}
}

// TestBenchIngestExternal runs the benchmark against running components
// while another producer publishes to the same topic: the run must skip the
// topic's history, count only its own events, and leave no objects or
// consumer group behind.
func TestBenchIngestExternal(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Kafka, testenv.S3)
	cfg := env.Config()
	cfg.S3.Prefix = "shared/"
	ctx := t.Context()
	if err := events.EnsureTopics(ctx, cfg.Kafka); err != nil {
		t.Fatal(err)
	}
	p, err := events.NewProducer(cfg.Kafka, events.ProducerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	other := func(i int) *adaptrecv1.Event {
		return events.NewInteraction(events.NewID(), time.Now(), "someone-else", &adaptrecv1.UserInteractionEvent{
			UserId: fmt.Sprintf("u%d", i%50), ItemId: "i1", Action: adaptrecv1.Action_ACTION_VIEW})
	}
	// History the run must not archive.
	var history []*adaptrecv1.Event
	for i := range 3000 {
		history = append(history, other(i))
	}
	if err := p.Publish(ctx, history...); err != nil {
		t.Fatal(err)
	}
	// Live traffic of another producer during the run.
	stopOther := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stopOther:
				return
			case <-time.After(5 * time.Millisecond):
			}
			if err := p.Publish(ctx, other(i)); err != nil && ctx.Err() == nil {
				t.Errorf("other producer: %v", err)
				return
			}
		}
	})

	const n = 5000
	var stdout, stderr bytes.Buffer
	o := benchIngestOptions{
		events: n, producers: 2, flushInterval: 200 * time.Millisecond, flushEvents: 50000, flushIntervalSet: true,
		durableTimeout: time.Minute, external: true, asJSON: true,
		lookupTool: func(name string) (string, error) { return "", fmt.Errorf("external mode must not start %s", name) },
	}
	err = benchIngest(ctx, &stdout, &stderr, func() (config.Config, error) { return cfg, nil }, o)
	close(stopOther)
	wg.Wait()
	if err != nil {
		t.Fatalf("bench ingest --external: %v\nstderr:\n%s", err, stderr.String())
	}
	m := lastJSONLine(t, stdout.String())
	if m["mode"] != "external" || m["rows_verified"] != float64(n) || m["flush_interval_s"] != 0.2 {
		t.Errorf("mode %v, rows_verified %v, flush_interval_s %v; want external, %d, 0.2", m["mode"], m["rows_verified"], m["flush_interval_s"], n)
	}
	if others := m["other_rows"].(float64); others < 1 || others >= 3000 {
		t.Errorf("other_rows = %v: want the other producer's live events only, not the topic's history", others)
	}
	if note, _ := m["note"].(string); !strings.Contains(note, "a running archiver included") {
		t.Errorf("note = %q", note)
	}

	// Nothing of the run is left: no objects under its prefix, no group.
	store, err := objstore.New(ctx, cfg.S3)
	if err != nil {
		t.Fatal(err)
	}
	for info, err := range store.List(ctx, "", objstore.ListOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		t.Errorf("left in the bucket: %s", info.Key)
	}
	client := &kafka.Client{Addr: kafka.TCP(cfg.Kafka.Brokers...), Timeout: 5 * time.Second}
	groups, err := client.ListGroups(context.WithoutCancel(ctx), &kafka.ListGroupsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range groups.Groups {
		if strings.HasPrefix(g.GroupID, "adaptrec-bench-ingest-") {
			t.Errorf("consumer group %s left behind", g.GroupID)
		}
	}
}
