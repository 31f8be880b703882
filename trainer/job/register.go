package job

import (
	"context"
	"time"

	"github.com/adaptrec/adaptrec/registry"
)

// RegisterRequest returns the registration of a finished job's layout as
// a version of model: the ranker, the item indexes (items.ivf, items.ann),
// the co-visitation table, the user vectors (users.emb, when the layout
// has them), metadata.json and input.json as artifacts, each with its
// layout role, its schema, training set, code version and metrics, and its
// parameters flattened (with the job id, trainer and split). Its creation time is the job's, so registering the same layout
// again computes the same version (registry.ErrExists with the
// registered manifest).
func RegisterRequest(l *Layout, model, actor, reason string) registry.RegisterRequest {
	m := l.Metadata
	params := m.Params.Flatten()
	params["job_id"] = m.JobID
	params["trainer"] = m.Trainer
	params["split.cutoff"] = m.Split.Cutoff.UTC().Format(time.RFC3339Nano)
	params["split.train_end"] = m.Split.TrainEnd.UTC().Format(time.RFC3339Nano)
	params["embeddings.from"] = m.Embeddings.From.UTC().Format(time.RFC3339Nano)
	params["embeddings.to"] = m.Embeddings.To.UTC().Format(time.RFC3339Nano)
	req := registry.RegisterRequest{
		Model:       model,
		CreatedAt:   m.CreatedAt,
		Schema:      m.Schema,
		TrainingSet: m.TrainingSet,
		CodeVersion: m.CodeVersion,
		Parameters:  params,
		Metrics:     m.Metrics,
		Actor:       actor,
		Reason:      reason,
	}
	for _, a := range m.Artifacts {
		req.Artifacts = append(req.Artifacts, registry.Artifact{Name: a.Name, Role: a.Role, Data: l.Files[a.Name]})
	}
	for _, name := range []string{MetadataFile, InputFile} {
		if b, ok := l.Files[name]; ok {
			req.Artifacts = append(req.Artifacts, registry.Artifact{Name: name, Role: registry.RoleOther, Data: b})
		}
	}
	return req
}

// Register registers a finished job's layout (RegisterRequest) with c.
func Register(ctx context.Context, c *registry.Client, l *Layout, model, actor, reason string) (registry.Manifest, error) {
	return c.Register(ctx, RegisterRequest(l, model, actor, reason))
}
