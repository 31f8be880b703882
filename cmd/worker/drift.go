package main

import (
	"go.temporal.io/sdk/worker"

	"github.com/adaptrec/adaptrec/activities"
	"github.com/adaptrec/adaptrec/registry"
	"github.com/adaptrec/adaptrec/workflows"
)

// Alias changes made through Temporal (`adaptrec models promote|rollback`)
// and the drift trigger of the retraining pipeline, which its Schedule
// (`adaptrec pipeline schedule`) runs.
func init() {
	register(activities.TaskQueueDefault, func(w worker.Worker, d *deps) {
		reg, _, err := d.registryWriter()
		if err != nil {
			d.errs = append(d.errs, err)
			return
		}
		w.RegisterWorkflow(workflows.ModelChange)
		w.RegisterActivity(&activities.ModelChange{Registry: reg, Temporal: d.temporal})
		w.RegisterWorkflow(workflows.DriftCheck)
		w.RegisterActivity(&activities.Drift{Store: d.store, Registry: &registry.Client{Store: d.store}})
	})
}
