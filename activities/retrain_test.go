package activities

import (
	"strings"
	"testing"
	"time"

	"github.com/adaptrec/adaptrec/features/offline"
	"github.com/adaptrec/adaptrec/trainer/job"
	"github.com/adaptrec/adaptrec/trainer/ranker"
)

func TestDataReportCheck(t *testing.T) {
	t.Parallel()
	to := time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)
	contract := DataContract{MinRows: 1000, MaxRowChange: 0.5, MaxNullRate: 0.01, MaxPosition: 100, MaxStaleness: 2 * time.Hour}
	healthy := func() DataReport {
		return DataReport{Topic: "t", Impressions: 10000, PerHour: 100, PreviousPerHour: 90, PreviousTrainingSet: "ts-old", Newest: to.Add(-time.Minute)}
	}
	tests := []struct {
		name   string
		change func(r *DataReport)
		want   []string
	}{
		{"healthy", func(*DataReport) {}, nil},
		{"too few rows", func(r *DataReport) { r.Impressions = 999 }, []string{"rows: 999 impressions in the window, fewer than min_rows 1000"}},
		{"row count halved", func(r *DataReport) { r.PerHour = 30 }, []string{"row count: 30.0 impressions per hour against 90.0 in training set ts-old, a change of 67%, more than max_row_change 50%"}},
		{"no previous run", func(r *DataReport) { r.PerHour, r.PreviousPerHour = 1, 0 }, nil},
		{"null items", func(r *DataReport) { r.MissingItem = 200 }, []string{"null rate: item_id is empty in 200 of 10000 impressions (0.0200), above max_null_rate 0.01"}},
		{"positions", func(r *DataReport) { r.OutOfRange = 3 }, []string{"value range: 3 impressions have no position or one outside [0, max_position 100]"}},
		{"schema", func(r *DataReport) { r.BadSchema = 4 }, []string{"schema: 4 events of t are not interactions"}},
		{"stale", func(r *DataReport) { r.Newest = to.Add(-5 * time.Hour) }, []string{"freshness: the newest event is at 2026-11-21T22:00:00Z, 5h0m0s before the window's end 2026-11-22T03:00:00Z, more than max_staleness 2h0m0s"}},
		{"empty", func(r *DataReport) { r.Impressions, r.Newest = 0, time.Time{} }, []string{"rows: 0 impressions", "freshness: no events in the window"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := healthy()
			tt.change(&r)
			r.Check(contract, to)
			if len(r.Violations) != len(tt.want) {
				t.Fatalf("violations %q, want %d", r.Violations, len(tt.want))
			}
			for i, w := range tt.want {
				if !strings.Contains(r.Violations[i], w) {
					t.Errorf("violation %q does not contain %q", r.Violations[i], w)
				}
			}
		})
	}
}

func TestSumArms(t *testing.T) {
	t.Parallel()
	rep := SumArms([]ArmStats{
		{ModelVersion: "c", Arm: "canary", Requests: 100, Impressions: 1000, Clicks: 50, Errors: 1, LatencyP99Ms: 12},
		{ModelVersion: "c", Arm: "canary", Requests: 100, Impressions: 1000, Clicks: 150, Errors: 1, LatencyP99Ms: 20},
		{ModelVersion: "p", Arm: "production", Requests: 900, Impressions: 9000, Clicks: 900, LatencyP99Ms: 9},
		{ModelVersion: "other", Arm: "production", Requests: 5, Impressions: 5, Clicks: 5},
	}, "c", "p")
	c, p := rep.Canary, rep.Production
	if c.Requests != 200 || c.Clicks != 200 || c.CTR != 0.1 || c.LatencyP99Ms != 20 || c.ErrorRate() != 0.01 || c.Arm != "canary" {
		t.Errorf("canary %+v", c)
	}
	if p.Requests != 900 || p.CTR != 0.1 || p.ErrorRate() != 0 {
		t.Errorf("production %+v", p)
	}
}

func TestFractionOrdersStages(t *testing.T) {
	t.Parallel()
	prev := -1.0
	for _, p := range []job.Progress{
		{Stage: job.StageRead}, {Stage: job.StageRanker, Step: 1, Steps: 4}, {Stage: job.StageRanker, Step: 4, Steps: 4},
		{Stage: job.StageEmbeddings, Step: 2, Steps: 3}, {Stage: job.StageWrite},
	} {
		f := fraction(p)
		if f <= prev || f < 0 || f > 1 {
			t.Errorf("%+v: fraction %v after %v", p, f, prev)
		}
		prev = f
	}
}

// TestHoldoutMetrics scores two lists with a model whose score grows with
// the first feature: a perfect ranking in both gives AUC and NDCG 1, and
// reversing the labels drops both.
func TestHoldoutMetrics(t *testing.T) {
	t.Parallel()
	m := &ranker.Model{Width: 1, Mean: []float32{0}, Scale: []float32{1},
		Layers: []ranker.Layer{{In: 1, Out: 1, W: []float32{1}, B: []float32{0}}}}
	row := func(req string, x float32, label int32) offline.Row {
		return offline.Row{EventID: req + "-" + string(rune('a'+int(x))), RequestID: req, Features: []float32{x}, Label: label}
	}
	rows := []offline.Row{row("r1", 3, 1), row("r1", 2, 0), row("r1", 1, 0), row("r2", 5, 1), row("r2", 0, 0), row("r3", 1, 0)}
	got, lists, err := holdoutMetrics(m, rows, 1, 10)
	if err != nil {
		t.Fatal(err)
	}
	if got.AUC != 1 || got.NDCG != 1 || lists != 2 {
		t.Errorf("perfect ranking: %+v over %d lists", got, lists)
	}
	for i := range rows {
		rows[i].Label = 1 - rows[i].Label
	}
	bad, _, err := holdoutMetrics(m, rows, 1, 10)
	if err != nil {
		t.Fatal(err)
	}
	if bad.AUC >= 0.5 || bad.NDCG >= 1 {
		t.Errorf("reversed labels: %+v", bad)
	}
	if _, _, err := holdoutMetrics(m, rows, 2, 10); err == nil || !strings.Contains(err.Error(), "model input width 1, rows of 2 values") {
		t.Errorf("width mismatch: %v", err)
	}
}
