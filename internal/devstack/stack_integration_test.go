package devstack_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"
	"go.temporal.io/sdk/client"

	"github.com/adaptrec/adaptrec/internal/config"
	"github.com/adaptrec/adaptrec/internal/devstack"
	"github.com/adaptrec/adaptrec/internal/testenv"
)

// lookup builds the broker from source and finds the other servers like
// `adaptrec dev up` does.
func lookup(t *testing.T) func(string) (string, error) {
	return func(name string) (string, error) {
		if name == devstack.Kafka.Tool() {
			return testenv.Binary(t, "./devtools/kafkabroker"), nil
		}
		return devstack.FindTool(name)
	}
}

// TestFullStackPersistsAcrossRestart runs what `adaptrec dev up` runs (every
// component, persisted, with the Web UI), writes to each, stops the stack and
// starts it again on the same ports and state directory.
func TestFullStackPersistsAcrossRestart(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	opts := devstack.Options{
		StateDir:   t.TempDir(),
		Persist:    true,
		LookupTool: lookup(t),
		Logf:       t.Logf,
	}
	st, err := devstack.Start(ctx, opts)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() { st.Stop(context.WithoutCancel(ctx)) })
	cfg := st.Config()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("stack config invalid: %v", err)
	}
	if cfg.Kafka.Brokers[0] == config.DevKafkaAddr {
		t.Fatalf("free ports were not used: %v", cfg.Kafka.Brokers)
	}
	for _, ep := range st.URLs() {
		t.Logf("%-17s %s", ep.Name, ep.URL)
	}
	ui, err := http.Get(cfg.Temporal.UIURL)
	if err != nil {
		t.Fatalf("temporal UI: %v", err)
	}
	ui.Body.Close()
	if ui.StatusCode != http.StatusOK {
		t.Fatalf("temporal UI answered %s", ui.Status)
	}

	// Write something to every component.
	rdb := redis.NewClient(&redis.Options{Addr: cfg.Redis.Addr})
	defer rdb.Close()
	if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("redis SET: %v", err)
	}
	s3c := s3.New(s3.Options{
		Region: cfg.S3.Region, BaseEndpoint: aws.String(cfg.S3.Endpoint), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(cfg.S3.AccessKeyID, cfg.S3.SecretAccessKey, ""),
	})
	if _, err := s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(cfg.S3.Bucket), Key: aws.String("a/b"), Body: strings.NewReader("obj")}); err != nil {
		t.Fatalf("s3 put: %v", err)
	}
	w := &kafka.Writer{Addr: kafka.TCP(cfg.Kafka.Brokers...), Topic: "t", BatchTimeout: time.Millisecond, AllowAutoTopicCreation: true}
	if err := w.WriteMessages(ctx, kafka.Message{Value: []byte("rec")}); err != nil {
		t.Fatalf("kafka produce: %v", err)
	}
	w.Close()
	tc, err := client.DialContext(ctx, client.Options{HostPort: cfg.Temporal.HostPort})
	if err != nil {
		t.Fatalf("temporal dial: %v", err)
	}
	// No worker: the run stays open, and must still be there after restart.
	run, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "survivor", TaskQueue: "nobody"}, "noop")
	if err != nil {
		t.Fatalf("temporal start workflow: %v", err)
	}
	tc.Close()

	if err := st.Stop(ctx); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if err := st.Stop(ctx); err != nil {
		t.Fatalf("second stop: %v", err)
	}
	for _, c := range devstack.All() {
		if err := devstack.Probe(ctx, c, cfg); err == nil {
			t.Errorf("%s still answers after Stop", c)
		}
	}

	opts.Ports = st.Ports()
	st2, err := devstack.Start(ctx, opts)
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	t.Cleanup(func() { st2.Stop(context.WithoutCancel(ctx)) })
	if cfg2 := st2.Config(); cfg2.Kafka.Brokers[0] != cfg.Kafka.Brokers[0] || cfg2.Temporal.HostPort != cfg.Temporal.HostPort {
		t.Fatalf("restart moved the stack: %+v vs %+v", cfg2, cfg)
	}

	if v, err := rdb.Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Errorf("redis after restart: %q, %v", v, err)
	}
	obj, err := s3c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(cfg.S3.Bucket), Key: aws.String("a/b")})
	if err != nil {
		t.Errorf("s3 after restart: %v", err)
	} else {
		b, _ := io.ReadAll(obj.Body)
		obj.Body.Close()
		if string(b) != "obj" {
			t.Errorf("s3 object after restart = %q", b)
		}
	}
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: cfg.Kafka.Brokers, Topic: "t", Partition: 0, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if m, err := r.ReadMessage(rctx); err != nil || string(m.Value) != "rec" {
		t.Errorf("kafka after restart: %q, %v", m.Value, err)
	}
	tc2, err := client.DialContext(ctx, client.Options{HostPort: cfg.Temporal.HostPort})
	if err != nil {
		t.Fatalf("temporal dial after restart: %v", err)
	}
	defer tc2.Close()
	if _, err := tc2.DescribeWorkflow(ctx, "survivor", run.GetRunID()); err != nil {
		t.Errorf("temporal workflow after restart: %v", err)
	}
}

func TestWaitReportsCrashAndPausedComponentStops(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	st, err := devstack.Start(ctx, devstack.Options{
		StateDir:   t.TempDir(),
		Components: []devstack.Component{devstack.Redis, devstack.Kafka},
		LookupTool: lookup(t),
		StopGrace:  time.Minute,
	})
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() { st.Stop(context.WithoutCancel(ctx)) })

	// A paused server still stops gracefully, not after StopGrace.
	if err := syscall.Kill(st.PID(devstack.Kafka), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := st.StopComponent(ctx, devstack.Kafka); err != nil {
		t.Fatalf("stop paused broker: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("stopping a paused broker took %s", d)
	}
	if st.Running(devstack.Kafka) || st.PID(devstack.Kafka) != 0 {
		t.Fatal("broker still running after StopComponent")
	}
	if log, _ := st.LogTail(devstack.Kafka, 5); !strings.Contains(log, "kafkabroker: stopped") {
		t.Fatalf("broker did not stop cleanly; log ends:\n%s", log)
	}

	// Nothing crashed yet: Wait returns when its context ends.
	wctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := st.Wait(wctx); err != nil {
		t.Fatalf("Wait with nothing crashed: %v", err)
	}
	// A crash behind the stack's back is reported with the component's name.
	if err := syscall.Kill(st.PID(devstack.Redis), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err = st.Wait(ctx)
	if err == nil || !strings.Contains(err.Error(), "redis exited unexpectedly (signal: killed)") {
		t.Fatalf("Wait after a crash: %v", err)
	}
	// The crashed component can be started again.
	if err := st.StartComponent(ctx, devstack.Redis); err != nil {
		t.Fatalf("restart crashed redis: %v", err)
	}
	if err := st.StartComponent(ctx, devstack.Redis); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Fatalf("starting a running component: %v", err)
	}
	if err := devstack.Probe(ctx, devstack.Redis, st.Config()); err != nil {
		t.Fatalf("redis after restart: %v", err)
	}
	if err := st.StopComponent(ctx, devstack.S3); err == nil || !strings.Contains(err.Error(), "not part of this stack") {
		t.Fatalf("stopping a component outside the stack: %v", err)
	}
}
