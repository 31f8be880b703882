package main

import (
	"go.temporal.io/sdk/worker"

	"github.com/adaptrec/adaptrec/activities"
	"github.com/adaptrec/adaptrec/workflows"
)

// Batch predictions: the workflow ranks users with the production model
// (ONNX Runtime, like cmd/server) and writes them to the online store.
func init() {
	register(activities.TaskQueueDefault, func(w worker.Worker, d *deps) {
		w.RegisterWorkflow(workflows.BatchPredictions)
		w.RegisterActivity(&activities.BatchPredictions{Config: d.cfg, Store: d.store, Redis: d.redis})
	})
}
