package main

import (
	"fmt"
	"log/slog"
	"os"

	"go.temporal.io/sdk/worker"

	"github.com/adaptrec/adaptrec/activities"
	"github.com/adaptrec/adaptrec/events"
	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/registry"
	"github.com/adaptrec/adaptrec/registry/onnxcheck"
	"github.com/adaptrec/adaptrec/trainer/job"
	"github.com/adaptrec/adaptrec/workflows"
)

func init() {
	// The CPU queue runs the retraining workflow, its activities, and the
	// Go trainer for runs no GPU worker picks up.
	register(activities.TaskQueueDefault, func(w worker.Worker, d *deps) {
		reg, fs, err := d.registryWriter()
		if err != nil {
			d.errs = append(d.errs, err)
			return
		}
		w.RegisterWorkflow(workflows.RetrainWorkflow)
		w.RegisterActivity(&activities.Retrain{Store: d.store, Registry: reg, Features: fs, Online: activities.FeedbackReader{Kafka: d.cfg.Kafka}})
		w.RegisterActivity(&activities.Training{Store: d.store, S3: d.cfg.S3, Signal: d.temporal.SignalWorkflow})
	})
	// A GPU host polls only this queue and runs pipeline.gpu_command (or
	// the Go trainer when it is empty).
	register(activities.TaskQueueGPUTraining, func(w worker.Worker, d *deps) {
		w.RegisterActivity(&activities.Training{
			Store: d.store, S3: d.cfg.S3, Command: activities.SplitCommand(d.cfg.Pipeline.GPUCommand),
			Signal: d.temporal.SignalWorkflow, Log: prefixed{"trainer: "},
		})
	})
}

// registryWriter builds the registry client retraining registers and
// promotes with: it checks schemas against the feature definitions, runs
// ONNX Runtime on every version before writing it, and publishes
// lifecycle events.
func (d *deps) registryWriter() (*registry.Client, *features.FeatureSet, error) {
	fs, err := features.Load(d.cfg.Features.File)
	if err != nil {
		return nil, nil, fmt.Errorf("feature definitions (config key features.file): %w", err)
	}
	producer, err := events.NewProducer(d.cfg.Kafka, events.ProducerOptions{})
	if err != nil {
		return nil, nil, err
	}
	d.closers = append(d.closers, func() { producer.Close() })
	reg := &registry.Client{
		Store: d.store, Events: producer, Features: fs,
		Validator:       &onnxcheck.Validator{},
		RequiredMetrics: []string{job.MetricAUC, job.MetricLogLoss},
		Logf:            func(format string, args ...any) { slog.Info(fmt.Sprintf(format, args...)) },
	}
	return reg, fs, nil
}

// prefixed writes an external trainer's log lines to stderr.
type prefixed struct{ prefix string }

func (p prefixed) Write(b []byte) (int, error) {
	if _, err := fmt.Fprintf(os.Stderr, "%s%s", p.prefix, b); err != nil {
		return 0, err
	}
	return len(b), nil
}
