package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/adaptrec/adaptrec/consumers/feedback"
	"github.com/adaptrec/adaptrec/events"
	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/features/baseline"
	"github.com/adaptrec/adaptrec/features/online"
	"github.com/adaptrec/adaptrec/features/snapshot"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/config"
	"github.com/adaptrec/adaptrec/internal/objstore"
	"github.com/adaptrec/adaptrec/internal/testenv"
)

// TestDefaultKeyPrefix pins the configuration's default key prefix to the
// online store's: internal/config cannot import features/online.
func TestDefaultKeyPrefix(t *testing.T) {
	t.Parallel()
	if config.DefaultFeaturesKeyPrefix != online.DefaultKeyPrefix {
		t.Errorf("config.DefaultFeaturesKeyPrefix = %q, online.DefaultKeyPrefix = %q", config.DefaultFeaturesKeyPrefix, online.DefaultKeyPrefix)
	}
	if got := config.Default().Features.KeyPrefix; got != online.DefaultKeyPrefix {
		t.Errorf("config.Default().Features.KeyPrefix = %q, want online.DefaultKeyPrefix %q", got, online.DefaultKeyPrefix)
	}
}

// proc is one run of the consumers binary.
type proc struct {
	cmd    *exec.Cmd
	http   string
	log    string
	exited chan struct{}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// start runs the binary configured only through ADAPTREC_* variables
// (extra ones last, overriding), in a working directory without
// features/features.yaml, so that only features.file can find the
// definitions.
func start(t *testing.T, bin string, cfg config.Config, run int, extra ...string) *proc {
	t.Helper()
	addr := freeAddr(t)
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + os.Getenv("HOME"),
		"ADAPTREC_KAFKA_BROKERS=" + strings.Join(cfg.Kafka.Brokers, ","),
		"ADAPTREC_KAFKA_PARTITIONS=" + strconv.Itoa(cfg.Kafka.Partitions),
		"ADAPTREC_REDIS_ADDR=" + cfg.Redis.Addr,
		"ADAPTREC_S3_ENDPOINT=" + cfg.S3.Endpoint,
		"ADAPTREC_S3_BUCKET=" + cfg.S3.Bucket,
		"ADAPTREC_S3_REGION=" + cfg.S3.Region,
		"ADAPTREC_S3_ACCESS_KEY_ID=" + cfg.S3.AccessKeyID,
		"ADAPTREC_S3_SECRET_ACCESS_KEY=" + cfg.S3.SecretAccessKey,
		"ADAPTREC_S3_USE_PATH_STYLE=" + strconv.FormatBool(cfg.S3.UsePathStyle),
		"ADAPTREC_FEATURES_FILE=" + cfg.Features.File,
		"ADAPTREC_FEATURES_KEY_PREFIX=" + cfg.Features.KeyPrefix,
		"ADAPTREC_CONSUMERS_HTTP_ADDR=" + addr,
		"ADAPTREC_CONSUMERS_NEARLINE_ENABLED=true",
		"ADAPTREC_LOG_LEVEL=info",
	}
	env = append(env, extra...)
	logPath := filepath.Join(t.TempDir(), fmt.Sprintf("consumers-%d.log", run))
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin)
	cmd.Env, cmd.Dir = env, t.TempDir()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, http: addr, log: logPath, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("consumers run %d log:\n%s", run, b)
		}
	})
	return p
}

func (p *proc) waitReady(t *testing.T) {
	t.Helper()
	testenv.Eventually(t, 60*time.Second, func() error {
		select {
		case <-p.exited:
			t.Fatalf("consumers exited: %v", p.cmd.ProcessState)
		default:
		}
		resp, err := http.Get("http://" + p.http + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/readyz: %s", resp.Status)
		}
		return nil
	})
}

func (p *proc) logged(t *testing.T, want string) {
	t.Helper()
	b, err := os.ReadFile(p.log)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), want) {
		t.Errorf("the log lacks %q", want)
	}
}

func (p *proc) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
		if !p.cmd.ProcessState.Success() {
			t.Fatalf("consumers exited with %v after SIGTERM", p.cmd.ProcessState)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("consumers did not stop after SIGTERM")
	}
}

// TestNearlineTrendingVelocity runs the binary with the nearline consumer:
// it starts without any item snapshot, and once one is current it writes
// item_trending_velocity_30m against the snapshot's item_clicks_7d, under
// the configured key prefix.
func TestNearlineTrendingVelocity(t *testing.T) {
	t.Parallel()
	bin := testenv.Binary(t, "./cmd/consumers")
	env := testenv.New(t, testenv.Kafka, testenv.Redis, testenv.S3)
	cfg := env.Config()
	defs, err := filepath.Abs(filepath.Join("..", "..", "features", "features.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Features.File = defs
	cfg.Features.KeyPrefix = "e2e:fs:"
	ctx := t.Context()
	fs, err := features.Load(defs)
	if err != nil {
		t.Fatal(err)
	}
	store, err := objstore.New(ctx, cfg.S3)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.EnsureBucket(ctx); err != nil {
		t.Fatal(err)
	}

	// No snapshot yet: the consumers start and are ready.
	p := start(t, bin, cfg, 1)
	p.waitReady(t)
	p.logged(t, "no snapshot yet")
	p.stop(t)

	// i1 clicked 3 times per 30 minutes over the last 7 days.
	names, _, width, _, err := snapshot.Layout(fs, "item_batch")
	if err != nil {
		t.Fatal(err)
	}
	col := slices.Index(names, baseline.Feature)
	row := func(id string, clicks7d float64) snapshot.Row {
		v := make([]float64, width)
		v[col] = clicks7d
		return snapshot.Row{EntityID: id, Values: v}
	}
	m, err := snapshot.Write(ctx, store, fs, "item_batch", time.Now().Add(-2*time.Hour),
		[]snapshot.Row{row("i1", 3*baseline.HalfHoursPer7Days), row("i2", 0)}, snapshot.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := snapshot.Flip(ctx, store, "item_batch", m.Version); err != nil {
		t.Fatal(err)
	}

	p = start(t, bin, cfg, 2)
	p.waitReady(t)
	p.logged(t, m.Version)
	producer, err := events.NewProducer(cfg.Kafka, events.ProducerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	now := time.Now().UTC().Add(-5 * time.Minute)
	var evs []*adaptrecv1.Event
	for i := range 5 {
		u := fmt.Sprintf("u%d", i)
		evs = append(evs, events.NewInteraction(u+"-click", now.Add(time.Duration(i)*time.Second), "consumers-test",
			&adaptrecv1.UserInteractionEvent{UserId: u, ItemId: "i1", Action: adaptrecv1.Action_ACTION_CLICK, SessionId: "s" + u}))
	}
	evs = append(evs, events.NewInteraction("u9-click", now, "consumers-test",
		&adaptrecv1.UserInteractionEvent{UserId: "u9", ItemId: "i3", Action: adaptrecv1.Action_ACTION_CLICK, SessionId: "s9"}))
	if err := producer.Publish(ctx, evs...); err != nil {
		t.Fatal(err)
	}

	rdb := online.NewClient(cfg.Redis)
	defer rdb.Close()
	st, err := online.New(fs, rdb, online.ObjectSnapshots{Store: store}, online.Options{KeyPrefix: cfg.Features.KeyPrefix, UserReadTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"i1": fmt.Sprint(float32((5 + 1) / (3 + 1.0))), // 5 clicks over a baseline of 3
		"i3": online.SourceDefaultMissing.String(),     // not in the snapshot: no baseline
	}
	testenv.Eventually(t, 60*time.Second, func() error {
		if err := st.RefreshNearline(ctx); err != nil {
			return err
		}
		ex, err := st.Explain(ctx, "u0", []string{"i1", "i3"}, online.Request{Now: time.Now()})
		if err != nil {
			return err
		}
		got := map[string]string{}
		clicks := map[string]int64{}
		for _, v := range ex.Values {
			switch v.Feature.Name {
			case "item_trending_velocity_30m":
				got[v.EntityID] = v.Source.String()
				if v.Source == online.SourceNearline {
					got[v.EntityID] = fmt.Sprint(v.Value.Float)
				}
			case "item_clicks_1h":
				clicks[v.EntityID] = v.Value.Int
			}
		}
		if clicks["i1"] != 5 || clicks["i3"] != 1 {
			return fmt.Errorf("item_clicks_1h %v: the events are not all applied yet", clicks)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("item_trending_velocity_30m %v, want %v", got, want)
		}
		return nil
	})
	n, err := rdb.Exists(ctx, cfg.Features.KeyPrefix+"{i1}:n:item_nearline").Result()
	if err != nil || n != 1 {
		t.Errorf("key %s{i1}:n:item_nearline: exists %d, %v", cfg.Features.KeyPrefix, n, err)
	}
	p.stop(t)
}

// TestFeedbackLoop runs the binary with the feedback consumer alone next to
// the archiver: it is ready, and the predictions and clicks published come
// back as online accuracy through feedback.ReadAccuracy.
func TestFeedbackLoop(t *testing.T) {
	t.Parallel()
	bin := testenv.Binary(t, "./cmd/consumers")
	env := testenv.New(t, testenv.Kafka, testenv.S3)
	cfg := env.Config()
	p := start(t, bin, cfg, 1,
		"ADAPTREC_CONSUMERS_NEARLINE_ENABLED=false",
		"ADAPTREC_CONSUMERS_FEEDBACK_GROUP_ID=e2e-feedback",
		"ADAPTREC_CONSUMERS_FEEDBACK_WINDOW=1s",
		"ADAPTREC_CONSUMERS_FEEDBACK_EMIT_DELAY=100ms")
	p.waitReady(t)
	resp, err := http.Get("http://" + p.http + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "feedback: ok") {
		t.Errorf("/readyz lacks the feedback check: %q", body)
	}

	producer, err := events.NewProducer(cfg.Kafka, events.ProducerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	at := time.Now().UTC().Add(-time.Minute).Truncate(time.Second)
	var evs []*adaptrecv1.Event
	for i := range 4 {
		req, user := fmt.Sprintf("r%d", i), fmt.Sprintf("u%d", i)
		evs = append(evs,
			events.NewPrediction("p-"+req, at, "consumers-test", &adaptrecv1.PredictionEvent{RequestId: req, UserId: user,
				ModelVersion: "v7", ExperimentArm: "canary", LatencyMs: float64(i + 1),
				DegradationLevel: adaptrecv1.DegradationLevel_DEGRADATION_LEVEL_FULL,
				Items:            []*adaptrecv1.ServedItem{{ItemId: "i1", Position: 0}, {ItemId: "i2", Position: 1}}}))
		if i%2 == 0 {
			evs = append(evs, events.NewInteraction("c-"+req, at.Add(100*time.Millisecond), "consumers-test",
				&adaptrecv1.UserInteractionEvent{UserId: user, ItemId: "i2", Action: adaptrecv1.Action_ACTION_CLICK, RequestId: req}))
		}
	}
	if err := producer.Publish(t.Context(), evs...); err != nil {
		t.Fatal(err)
	}
	want := []feedback.ArmAccuracy{{ModelVersion: "v7", Arm: "canary", Requests: 4, Impressions: 8, Clicks: 2, CTR: 0.25,
		LatencyP99Ms: 4, Windows: 1, From: at, To: at.Add(time.Second)}}
	testenv.Eventually(t, 60*time.Second, func() error {
		got, err := feedback.ReadAccuracy(t.Context(), cfg.Kafka, at.Add(-time.Minute), at.Add(time.Minute))
		if err != nil {
			return err
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("accuracy %+v, want %+v", got, want)
		}
		return nil
	})
	p.stop(t)
}

// TestFeedbackGroupMustDiffer rejects a feedback group shared with the
// archiver or the (enabled) nearline consumer, naming the key.
func TestFeedbackGroupMustDiffer(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		group    string
		nearline bool
		wantErr  string
	}{
		{"own group", "adaptrec-feedback", true, ""},
		{"archiver's", "adaptrec-archiver", true, "archiver's group"},
		{"nearline's", "adaptrec-nearline", true, "nearline consumer's group"},
		{"nearline's, disabled", "adaptrec-nearline", false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := config.Default()
			cfg.Consumers.Feedback.GroupID = tt.group
			cfg.Consumers.Nearline.Enabled = tt.nearline
			_, err := newFeedback(cfg, nil)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("newFeedback: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), "consumers.feedback.group_id") || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("newFeedback = %v, want an error naming consumers.feedback.group_id and %q", err, tt.wantErr)
			}
		})
	}
}
