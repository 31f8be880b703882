package cli

import (
	"errors"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"

	"github.com/adaptrec/adaptrec/activities"
	"github.com/adaptrec/adaptrec/events"
	"github.com/adaptrec/adaptrec/internal/testenv"
	"github.com/adaptrec/adaptrec/registry"
	"github.com/adaptrec/adaptrec/registry/registrytest"
	"github.com/adaptrec/adaptrec/workflows"
)

// TestBenchRollbackOnDevServer runs the rollback `adaptrec bench
// pipeline` times on a real Temporal dev server, S3 and broker, with a
// worker running ModelChange as bin/worker does: production goes back to
// the previous version through a ModelChange run started after the
// moment the benchmark measures from, whose own duration is read from
// Temporal; a rollback from a version that is no longer production is
// refused by the workflow as a conflict.
func TestBenchRollbackOnDevServer(t *testing.T) {
	env := testenv.New(t, testenv.Temporal, testenv.S3, testenv.Kafka)
	cfg := env.Config()
	ctx := t.Context()
	store := testenv.EventLog(t, cfg)
	producer, err := events.NewProducer(cfg.Kafka, events.ProducerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	reg := &registry.Client{Store: store, Events: producer, Features: registrytest.Features()}
	at := time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)
	var vs []string
	for i := range 2 {
		m, err := reg.Register(ctx, registrytest.Request("ranker", i+1, at.Add(time.Duration(i)*24*time.Hour)))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := reg.Apply(ctx, "ranker", registry.Change{Action: registry.ActionPromote, Version: m.Version, Actor: "it", Reason: "setup"}); err != nil {
			t.Fatal(err)
		}
		vs = append(vs, m.Version)
	}
	a, b := vs[0], vs[1]

	tc, err := client.Dial(client.Options{HostPort: cfg.Temporal.HostPort, Namespace: cfg.Temporal.Namespace, Logger: quietTemporalLogger{}})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	w := worker.New(tc, activities.TaskQueueDefault, worker.Options{})
	w.RegisterWorkflow(workflows.ModelChange)
	w.RegisterActivity(&activities.ModelChange{Registry: reg, Temporal: tc})
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	before := time.Now()
	rb, err := benchRollback(ctx, tc, cfg, "ranker", b)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("rollback %s: started %s after the call, workflow %.1f ms, result %+v", rb.id, rb.started.Sub(before), rb.workflowMs, rb.result)
	if !rb.result.Changed || rb.result.After.Production != a || rb.result.Before.Production != b || rb.result.After.Revision != 3 {
		t.Errorf("rollback result: changed %v, production %s → %s (revision %d); want %s → %s at revision 3",
			rb.result.Changed, rb.result.Before.Production, rb.result.After.Production, rb.result.After.Revision, b, a)
	}
	if al, err := reg.Aliases(ctx, "ranker"); err != nil || al.Production != a || al.Change == nil ||
		al.Change.Actor != "adaptrec bench pipeline (workflow "+rb.id+")" || al.Change.Action != registry.ActionRollback {
		t.Errorf("registry after the rollback: %+v (change %+v), %v", al, al.Change, err)
	}
	if !strings.HasPrefix(rb.id, "models-rollback-ranker-") || rb.describeErr != nil || rb.workflowMs <= 0 {
		t.Errorf("rollback run %s: workflow %.1f ms (%v); want a ModelChange id and its duration", rb.id, rb.workflowMs, rb.describeErr)
	}
	desc, err := tc.DescribeWorkflowExecution(ctx, rb.id, "")
	if err != nil {
		t.Fatal(err)
	}
	info := desc.GetWorkflowExecutionInfo()
	start, closed := info.GetStartTime().AsTime(), info.GetCloseTime().AsTime()
	if info.GetType().GetName() != "ModelChange" || info.GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED ||
		rb.started.Before(before) || start.Before(rb.started.Add(-time.Second)) || time.Since(rb.started) < closed.Sub(start) {
		t.Errorf("%s: %s %s from %s to %s, measured from %s; want a completed ModelChange started after the moment measured from",
			rb.id, info.GetType().GetName(), info.GetStatus(), start, closed, rb.started)
	}
	if got := float64(closed.Sub(start)) / float64(time.Millisecond); got != rb.workflowMs {
		t.Errorf("workflow duration %.3f ms, Temporal records %.3f ms", rb.workflowMs, got)
	}

	// Production is no longer b: the workflow refuses a second rollback.
	_, err = benchRollback(ctx, tc, cfg, "ranker", b)
	if !errors.Is(err, registry.ErrConflict) || !strings.Contains(err.Error(), "roll ranker back from "+b) {
		t.Errorf("rollback from %s while %s is production: %v; want a conflict", b, a, err)
	}
	if al, err := reg.Aliases(ctx, "ranker"); err != nil || al.Production != a || al.Revision != 3 {
		t.Errorf("registry after the refused rollback: %+v, %v", al, err)
	}
}
