package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/adaptrec/adaptrec/internal/bench"
	"github.com/adaptrec/adaptrec/internal/config"
)

func TestBenchPipelineFlagErrors(t *testing.T) {
	t.Parallel()
	noTools := func(name string) (string, error) { return "", fmt.Errorf("test must not start %s", name) }
	_, _, err := runBench(t, noTools, "pipeline", "--events", "0", "--instances", "0", "--days", "2", "--users-per-instance", "0", "--think-time", "-1s")
	if err == nil {
		t.Fatal("bad flags were accepted")
	}
	for _, want := range []string{"--events must be in 1..", "--instances must be in 1..8, got 0", "--days must be in 3..365",
		"--users-per-instance must be >= 1, got 0", "--think-time must be >= 0, got -1s"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

// TestStackEnv checks that the environment the benchmark gives its
// services loads into the configuration it was made from.
func TestStackEnv(t *testing.T) {
	t.Parallel()
	cfg := config.Default()
	cfg.Kafka.Brokers = []string{"127.0.0.1:40001", "127.0.0.1:40002"}
	cfg.Kafka.Partitions = 3
	cfg.Redis.Addr = "127.0.0.1:40003"
	cfg.S3.Endpoint, cfg.S3.Bucket = "http://127.0.0.1:40004", "bench"
	cfg.Temporal.HostPort = "127.0.0.1:40005"
	cfg.Worker.HTTPAddr, cfg.Consumers.HTTPAddr = "127.0.0.1:40006", "127.0.0.1:40007"
	env := append(stackEnv(cfg), loopConsumersEnv()...)
	got, err := config.Load("", env)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got.Kafka.Brokers, ",") != "127.0.0.1:40001,127.0.0.1:40002" || got.Kafka.Partitions != 3 ||
		got.Redis.Addr != cfg.Redis.Addr || got.S3 != cfg.S3 || got.Temporal.HostPort != cfg.Temporal.HostPort ||
		got.Worker.HTTPAddr != cfg.Worker.HTTPAddr || got.Consumers.HTTPAddr != cfg.Consumers.HTTPAddr {
		t.Errorf("loaded %+v from %q", got, env)
	}
	if fb := got.Consumers.Feedback; fb.Window != loopFeedbackWindow || fb.EmitDelay != loopFeedbackEmitDelay {
		t.Errorf("feedback window %s, emit delay %s", fb.Window, fb.EmitDelay)
	}
}

func TestFreeAddrs(t *testing.T) {
	t.Parallel()
	addrs, err := freeAddrs(4)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, a := range addrs {
		if !strings.HasPrefix(a, "127.0.0.1:") || seen[a] {
			t.Errorf("addresses %q", addrs)
		}
		seen[a] = true
	}
}

// TestBenchPipelineReport checks the JSON line the benchmark prints: one
// object, last line, with the fields the issue names.
func TestBenchPipelineReport(t *testing.T) {
	t.Parallel()
	r := bench.PipelineResult{Bench: "pipeline", Events: 1_000_000, TotalSeconds: 150,
		Stages:  map[string]float64{"validate": 2, "train": 50, "shadow": 6, "canary": 42, "cutover": 0.1, "watch": 10},
		Outcome: "Succeeded", PreviousVersion: "a", NewVersion: "b", RolledBackTo: "a", CutoverMs: 120, RollbackMs: 3100,
		RollbackWorkflowMs: 240, Instances: 2, Mode: "self-contained"}
	r.Evaluate()
	var out bytes.Buffer
	fmt.Fprintln(&out, "progress goes to stderr, but a first line must not matter")
	if err := benchReport(&out, true, r); err != nil {
		t.Fatal(err)
	}
	m := lastJSONLine(t, out.String())
	for _, k := range []string{"total_seconds", "stages", "cutover_ms", "rollback_ms", "rollback_workflow_ms", "failed_requests_cutover",
		"failed_requests_rollback", "events", "new_version", "meets_target"} {
		if _, ok := m[k]; !ok {
			t.Errorf("result lacks %q: %s", k, out.String())
		}
	}
	if m["meets_target"] != false || !strings.Contains(fmt.Sprint(m["missed"]), "rollback_ms 3100") {
		t.Errorf("a 3.1 s rollback met the target: %v, missed %v", m["meets_target"], m["missed"])
	}
	var back bench.PipelineResult
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &back); err != nil {
		t.Fatal(err)
	}
	if back.Stages["canary"] != 42 || back.RollbackWorkflowMs != 240 {
		t.Errorf("round trip: stages %v, rollback_workflow_ms %v", back.Stages, back.RollbackWorkflowMs)
	}
}

func TestLoopPipeline(t *testing.T) {
	t.Parallel()
	p := loopPipeline(config.Default().Pipeline)
	if err := p.Check(); err != nil {
		t.Fatalf("the demo's pipeline settings are invalid: %v", err)
	}
	if p.CanarySteps[len(p.CanarySteps)-1] >= 1 {
		t.Errorf("canary steps %v end at all traffic: the promotion would move none", p.CanarySteps)
	}
	long := p.ShadowMaxDuration + time.Duration(len(p.CanarySteps))*p.CanaryHold + p.PostCutoverWatch + p.GPUScheduleToStart
	if long > 3*time.Minute {
		t.Errorf("shadow, canary, watch and GPU wait take up to %s", long)
	}
	keys := map[string]bool{}
	for _, kv := range loopSettings(p) {
		keys[kv[0]] = true
		if kv[1] == "" {
			t.Errorf("setting %s has no value", kv[0])
		}
	}
	for _, k := range []string{"pipeline.gpu_schedule_to_start", "pipeline.canary_steps", "pipeline.canary_hold", "consumers.feedback.window"} {
		if !keys[k] {
			t.Errorf("settings printed lack %s", k)
		}
	}
}
