// Package job runs training jobs: one Trainer interface, two
// implementations that produce the same artifact layout (decisions:
// docs/adr/014-training-jobs.md).
//
// GoTrainer trains in process, in pure Go: it reads a point-in-time
// training set (features/offline), splits it by event time into a training
// part and a later validation part, trains the ranker (trainer/ranker) on
// the training part only, measures AUC and log loss on the validation part,
// trains implicit-ALS user and item embeddings and the items' IVF index
// (trainer/retrieval) from the positive interactions of the event log before
// the split's cutoff, keeps the user vectors by user id, builds an HNSW
// index over the same item vectors (serving/ann) and a co-visitation table
// from the same positives (serving/covisit), exports the ranker to ONNX and
// writes the layout.
//
// Command runs a configured external program (a GPU host's PyTorch script,
// a container launcher) with --input <uri of input.json> --output <uri of
// the output folder> --params <json>, reads its progress from JSON lines on
// stdout and stderr, and after it exits completes the layout it wrote
// (deriving items.ann, covisit.bin and users.emb when it lacks them, see
// below) and
// checks it (CheckLayout). RunCommand is the protocol's reference
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
//	users.emb       trainer/retrieval's user vectors: the ALS vectors of the
//	                users with a positive in the same event range, by user
//	                id, from the same run as items.ivf's item vectors (of
//	                its dims), CRC-checked; serving retrieves with them for
//	                a user without recent items. Role "user_vectors"
//	                (UsersRole). Optional: layouts written before it lack it,
//	                and serving loads versions without it
//	metadata.json   written last: Metadata (metrics, schema hash and model
//	                schema, training set, params, split, embeddings, ANN index,
//	                co-visitation table and user vectors, code version, and the
//	                size and SHA-256 of every artifact)
//
// A folder without metadata.json is an unfinished job. CheckLayout reads a
// finished one back and refuses anything that disagrees with its metadata,
// or an items.ann, covisit.bin or users.emb that disagrees with items.ivf.
//
// # What an external trainer writes, and what the runner derives
//
// An external program must write ranker.onnx (trainer/ranker's graph,
// standardization clipped to ±ranker.ClipZ by a Clip node, and its
// metadata keys), items.ivf and metadata.json, format 1 or 2, listing
// those two artifacts with their sizes and SHA-256 and filling every
// section but ann, covisit and user_vectors: split (its cutoff), and
// embeddings (the event range read, its positives, items and dims).
// items.ann, covisit.bin and users.emb are serving artifacts over what it
// already produced, so it may leave them out (trainer/reference/ranker.py
// does). When any is missing, Command derives it in Go, with the job's
// parameters and seed: items.ann from items.ivf's vectors and covisit.bin
// from the positives of the job's event range, read from the store,
// exactly as GoTrainer builds them, and users.emb by folding every user of
// those positives in from their own positives against items.ivf's vectors
// with its fold-in parameters (for the Go trainer's items.ivf this gives
// its trained user vectors bit for bit). It first checks that items.ivf
// has the listed bytes and loads and, when it reads the positives, that
// the embeddings' range is the job's (the input's events up to the split's
// cutoff), that they counted the same positives, and that those positives
// name exactly items.ivf's items; any disagreement refuses the layout
// (ErrInvalidLayout) and nothing is written. It then writes the derived
// artifacts and rewrites metadata.json as format 2 with their sections,
// marked "built_by": "runner" (BuiltByRunner), their parameters and
// timings, keeping every field the program wrote. A program that writes
// the whole layout, as RunCommand does, is left untouched.
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
// exit status decides success; "error" only carries the reason. When
// Command derives artifacts, its own embeddings (users.emb), ann, covisit
// and write stages follow the program's on Command.Progress.
package job
