package cli

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/adaptrec/adaptrec/features/online"
	"github.com/adaptrec/adaptrec/internal/testenv"
	"github.com/adaptrec/adaptrec/predictions"
)

func TestPredictionsParams(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	p, err := predictionsParams(predictionsRunOptions{asOf: "-2h", k: 40, window: 48 * time.Hour, minCoverage: 0.8, now: now})
	if err != nil || !p.AsOf.Equal(now.Add(-2*time.Hour)) || p.K != 40 || p.ActiveWindow != 48*time.Hour || p.MinCoverage != 0.8 {
		t.Fatalf("params %+v (%v)", p, err)
	}
	if p, err := predictionsParams(predictionsRunOptions{now: now}); err != nil || !p.AsOf.IsZero() || p.K != 0 {
		t.Fatalf("no flags: %+v (%v), want the zero params (the worker's configuration)", p, err)
	}
	for _, tt := range []struct {
		o    predictionsRunOptions
		want string
	}{
		{predictionsRunOptions{k: 501}, "--k 501"},
		{predictionsRunOptions{window: time.Minute}, "--active-window 1m0s"},
		{predictionsRunOptions{minCoverage: 1.5}, "--min-coverage 1.5"},
		{predictionsRunOptions{asOf: "yesterday"}, `--as-of "yesterday"`},
		{predictionsRunOptions{asOf: "2026-11-23"}, "--as-of 2026-11-23T00:00:00Z is in the future"},
	} {
		tt.o.now = now
		if _, err := predictionsParams(tt.o); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: %v, want an error naming %q", tt.o, err, tt.want)
		}
	}
}

// TestPredictionsStatusAndRollback shows and rolls back versions written to
// a real Redis.
func TestPredictionsStatusAndRollback(t *testing.T) {
	env := testenv.New(t, testenv.Redis)
	cfg := env.Config()
	ctx := t.Context()
	var out strings.Builder
	if err := predictionsStatus(ctx, &out, cfg); err != nil || !strings.Contains(out.String(), "no batch predictions are current yet") {
		t.Fatalf("status with nothing written: %q %v", out.String(), err)
	}
	if err := predictionsRollback(ctx, &out, cfg); err == nil || !strings.Contains(err.Error(), "no batch predictions are current") {
		t.Fatalf("rollback with nothing current: %v", err)
	}
	rdb := online.NewClient(cfg.Redis)
	defer rdb.Close()
	s, err := predictions.NewStore(rdb, predictions.Options{KeyPrefix: cfg.Features.KeyPrefix})
	if err != nil {
		t.Fatal(err)
	}
	for v := 1; v <= 3; v++ {
		w, err := s.Begin(ctx, predictions.VersionInfo{Model: "ranker", ModelVersion: fmt.Sprintf("m%d", v), K: 5})
		if err != nil {
			t.Fatal(err)
		}
		for u := range 10 {
			score := float32(0.5)
			if v == 3 && u == 4 {
				score = -1
			}
			if err := w.Add(ctx, fmt.Sprintf("u%d", u), []predictions.Entry{{ItemID: "a", Score: score}, {ItemID: "b", Score: 0.1}}); err != nil {
				t.Fatal(err)
			}
		}
		m, err := w.Close(ctx, 10, predictions.Validation{MinCoverage: 0.5})
		if err != nil {
			t.Fatal(err)
		}
		if v < 3 {
			if _, err := s.Flip(ctx, m.Version); err != nil {
				t.Fatal(err)
			}
		}
	}
	out.Reset()
	if err := predictionsStatus(ctx, &out, cfg); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"current: predictions_v2 by ranker@m2, 10 users, K 5",
		"previous: predictions_v1 by ranker@m1, 10 users",
		"predictions_v3  rejected: score: user u4: item a at position 0 scores -1",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status does not say %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if err := predictionsRollback(ctx, &out, cfg); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "rolled back: predictions_v1 (by ranker@m1, 10 users) is current; predictions_v2 is the previous version") {
		t.Errorf("rollback output %q", out.String())
	}
	if p, err := s.Current(ctx); err != nil || p.Current.Version != 1 || !p.RolledBack {
		t.Errorf("pointer after the rollback: %+v %v", p, err)
	}
}
