package cli

import (
	"strings"
	"testing"

	"go.temporal.io/sdk/client"

	"github.com/adaptrec/adaptrec/internal/testenv"
)

// TestFeaturesSchedule creates, updates and deletes the daily batch-lane
// schedule on a real Temporal dev server.
func TestFeaturesSchedule(t *testing.T) {
	env := testenv.New(t, testenv.Temporal)
	cfg := env.Config()
	ctx := t.Context()
	var out strings.Builder
	if err := featuresSchedule(ctx, &out, cfg, featuresScheduleOptions{at: "25:00"}); err == nil || !strings.Contains(err.Error(), `--at "25:00"`) {
		t.Fatalf("bad --at accepted: %v", err)
	}
	if err := featuresSchedule(ctx, &out, cfg, featuresScheduleOptions{at: "02:30"}); err != nil {
		t.Fatal(err)
	}
	if err := featuresSchedule(ctx, &out, cfg, featuresScheduleOptions{at: "03:15"}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "created schedule "+BatchFeaturesScheduleID) || !strings.Contains(out.String(), "updated schedule "+BatchFeaturesScheduleID) {
		t.Fatalf("output:\n%s", out.String())
	}
	tc, err := client.Dial(client.Options{HostPort: cfg.Temporal.HostPort, Namespace: cfg.Temporal.Namespace})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	desc, err := tc.ScheduleClient().GetHandle(ctx, BatchFeaturesScheduleID).Describe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cal := desc.Schedule.Spec.Calendars
	if len(cal) != 1 || cal[0].Hour[0].Start != 3 || cal[0].Minute[0].Start != 15 {
		t.Fatalf("schedule spec %+v, want daily at 03:15", desc.Schedule.Spec)
	}
	act, ok := desc.Schedule.Action.(*client.ScheduleWorkflowAction)
	if !ok || act.Workflow != "BatchFeatures" {
		t.Fatalf("schedule action %+v, want the BatchFeatures workflow", desc.Schedule.Action)
	}
	out.Reset()
	if err := featuresSchedule(ctx, &out, cfg, featuresScheduleOptions{at: "02:00", delete: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := tc.ScheduleClient().GetHandle(ctx, BatchFeaturesScheduleID).Describe(ctx); err == nil {
		t.Fatal("schedule still exists after --delete")
	}
}
