package workflows

import (
	"path/filepath"
	"testing"

	"go.temporal.io/sdk/worker"
)

// TestRetrainReplay replays histories of real RetrainWorkflow runs,
// recorded from the dev server by TestRetrainOnDevServer (see
// envRecordHistory): the first run of a model (GPU fallback to the CPU
// queue, promotion without live gates) and a run aborted in shadow
// (signal, compensation). A change to the workflow that would make a
// running workflow take another path fails here; such a change needs
// workflow.GetVersion.
func TestRetrainReplay(t *testing.T) {
	t.Parallel()
	for _, file := range []string{"retrain_first.json", "retrain_abort.json"} {
		t.Run(file, func(t *testing.T) {
			t.Parallel()
			r := worker.NewWorkflowReplayer()
			r.RegisterWorkflow(RetrainWorkflow)
			if err := r.ReplayWorkflowHistoryFromJSONFile(nil, filepath.Join("testdata", file)); err != nil {
				t.Fatal(err)
			}
		})
	}
}
