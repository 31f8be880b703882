package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/adaptrec/adaptrec/sim"
	"github.com/adaptrec/adaptrec/workflows"
)

func TestDriftReason(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 22, 21, 9, 36, 0, time.UTC)
	rep := func(version string, impressions, clicks int64) *sim.LiveReport {
		return &sim.LiveReport{Arms: []sim.ArmReport{
			{ModelVersion: version, ExperimentArm: "production", Impressions: impressions, Clicks: clicks,
				CTR: float64(clicks) / float64(max(impressions, 1))},
			{ModelVersion: "popularity", Impressions: 100, Clicks: 50, CTR: 0.5},
		}}
	}
	got := driftReason("v1", rep("v1", 1000, 80), rep("v1", 1000, 60), at, 0.7)
	want := "drift: 70% of the users' tastes shifted at 21:09:36; CTR of v1 went from 8.00% to 6.00% (-25%)"
	if got != want {
		t.Errorf("driftReason = %q, want %q", got, want)
	}
	if got := driftReason("v1", nil, rep("v2", 10, 1), at, 0.7); !strings.HasSuffix(got, "v1 served no impressions since") {
		t.Errorf("without impressions: %q", got)
	}
	if got := driftReason("v1", nil, rep("v1", 100, 5), at, 0.7); !strings.HasSuffix(got, "CTR of v1 is 5.00% since") {
		t.Errorf("without a before: %q", got)
	}
}

func TestTimingsAndCTR(t *testing.T) {
	t.Parallel()
	res := workflows.RetrainResult{Timings: []workflows.StageTiming{{Stage: "validate", Seconds: 1.5}, {Stage: "train", Seconds: 30}, {Stage: "train", Seconds: 2}}}
	if m := stageSeconds(res); m["train"] != 32 || m["validate"] != 1.5 || len(m) != 2 {
		t.Errorf("stageSeconds = %v", m)
	}
	var out bytes.Buffer
	writeTimings(&out, res)
	if !strings.Contains(out.String(), "total       33.5 s") || !strings.Contains(out.String(), "validate     1.5 s") {
		t.Errorf("timings:\n%s", out.String())
	}
	live := &sim.LiveReport{Arms: []sim.ArmReport{
		{ModelVersion: "v2", ExperimentArm: "canary", Requests: 10, Impressions: 100, Clicks: 9, CTR: 0.09, ExpectedCTR: 0.085},
		{ModelVersion: "v1", ExperimentArm: "production", Requests: 30, Impressions: 300, Clicks: 18, CTR: 0.06, ExpectedCTR: 0.061},
	}}
	if n, c, ctr := versionCTR(live, "v2"); n != 100 || c != 9 || ctr != 0.09 {
		t.Errorf("versionCTR = %d %d %v", n, c, ctr)
	}
	rows := append(liveRows("after", live), liveRows("before", live)...)
	sortRows(rows, []string{"before", "after"})
	if rows[0].Phase != "before" || rows[0].Version != "v1" || rows[3].Phase != "after" || rows[3].Version != "v2" {
		t.Errorf("sorted rows %+v", rows)
	}
	out.Reset()
	writeCTR(&out, rows)
	if !strings.Contains(out.String(), "9.00%") || !strings.Contains(out.String(), "8.50%") {
		t.Errorf("CTR table:\n%s", out.String())
	}
}
