// Package job runs training jobs: one Trainer interface, two
// implementations that produce the same artifact layout (decisions:
// docs/adr/014-training-jobs.md).
//
// GoTrainer trains in process, in pure Go: it reads a point-in-time
// training set (features/offline), splits it by event time into a training
// part and a later validation part, trains the ranker (trainer/ranker) on
// the training part only, measures AUC and log loss on the validation part,
// trains implicit-ALS item embeddings and their IVF index
// (trainer/retrieval) from the positive interactions of the event log before
// the split's cutoff, builds an HNSW index over the same item vectors
// (serving/ann) and a co-visitation table from the same positives
// (serving/covisit), exports the ranker to ONNX and writes the layout.
//
// Command runs a configured external program (a GPU host's PyTorch script,
// a container launcher) with --input <uri of input.json> --output <uri of
// the output folder> --params <json>, reads its progress from JSON lines on
// stdout and stderr, and after it exits checks that it wrote the same
// layout (CheckLayout). RunCommand is the protocol's reference
// implementation on the program's side: it runs GoTrainer, and
// `adaptrec train job` exposes it.
//
// # Artifact layout
//
// A job writes one folder (a local directory or an S3 prefix):
//
//	input.json      the job's Input, written first by whoever starts the job
//	ranker.onnx     the ranker: ONNX opset 17, input "features" float32 [N, width],
//	                output "score" float32 [N, 1], with trainer/ranker's metadata_props
//	items.ivf       the item index: trainer/retrieval's IVF artifact (item ids,
//	                vectors, lists, fold-in parameters), CRC-checked; registry
//	                role "index"
//	items.ann       serving/ann's HNSW index over the same ALS item vectors,
//	                CRC-checked; its int32 ids are items.ivf's item indexes
//	                (0..items-1), so serving maps a hit to an item id through
//	                items.ivf's id table; role "ann_index" (ANNRole)
//	covisit.bin     serving/covisit's co-visitation table, built from the same
//	                positives as the embeddings (the event range before the
//	                cutoff), CRC-checked; its items are items.ivf's, in the
//	                same order, so one index names one item in both; role
//	                "covisit" (CovisitRole)
//	metadata.json   written last: Metadata (metrics, schema hash and model
//	                schema, training set, params, split, embeddings, ANN index
//	                and co-visitation table, code version, and the size and
//	                SHA-256 of every artifact)
//
// A folder without metadata.json is an unfinished job. CheckLayout reads a
// finished one back and refuses anything that disagrees with its metadata,
// or an items.ann or covisit.bin that disagrees with items.ivf. An
// external trainer writes all four artifacts: items.ann and covisit.bin
// are serving/ann's and serving/covisit's artifact formats, which
// `adaptrec train job` (RunCommand) produces.
//
// # Progress protocol
//
// An external trainer reports progress as JSON lines on stdout or stderr,
// each one object with "event" set:
//
//	{"event":"progress","stage":"ranker","step":3,"steps":8,"message":"epoch 3/8","metrics":{"loss":0.31},"elapsed_s":41.2}
//	{"event":"done","metadata":"s3://bucket/training-jobs/<id>/metadata.json"}
//	{"event":"error","message":"CUDA out of memory"}
//
// Stages are those of the Stage constants; step and steps count within a
// stage. Any other line is the program's log and is passed through. The
// exit status decides success; "error" only carries the reason.
package job
