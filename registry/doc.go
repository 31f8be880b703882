// Package registry is adaptrec's model registry on S3: immutable model
// versions, the aliases serving reads (production, previous, shadow and a
// weighted canary), the full history of every alias change, and a
// ModelLifecycleEvent for every change (decisions: docs/adr/011).
//
// Layout, per model name (e.g. ranker):
//
//	models/<model>/versions/<version>/<artifact>        ranker.onnx, embeddings, index, ...: create-only
//	models/<model>/versions/<version>/manifest.json     written last: the version exists once it does
//	models/<model>/ALIASES.json                         production, previous, shadow, canary(+weight), revision
//	models/<model>/history/<revision>.json              the aliases as every revision left them
//
// A version is "<created, 20060102T150405Z>-<8 hex digits>": versions sort
// by creation time, and the digits are a hash of the manifest's content
// (artifact checksums, schema, training set, code version, parameters,
// metrics), so two versions created in the same second differ. Every object
// of a version is written create-only (If-None-Match: *): a version, once
// its manifest exists, never changes, and registering it again fails with
// ErrExists.
//
// Register validates before it writes anything: required fields, an ONNX
// ranker that parses as a model graph whose input width (and adaptrec
// metadata, when the exporter wrote it) matches the feature schema, finite
// metrics, the schema against the serving feature definitions
// (Client.Features), then the caller's Validator (which loads the ranker
// and scores a probe batch). A refused version leaves no object
// behind. Readers (Get, Verify, ReadArtifact) check the manifest and every
// artifact's size and SHA-256 and refuse a mismatch with ErrCorrupt.
//
// The aliases object is replaced only with conditional writes (create-only
// the first time, then compare-and-swap on its ETag), and its revision
// grows by one with every change, so the same bytes never come back and an
// ETag read once can never match again: of two concurrent changes from the
// same state exactly one wins and the other gets ErrConflict. A change is
// never retried on a state the caller did not see; Change.ExpectProduction
// makes a promotion conditional on the production version its author
// looked at.
//
// The event for a change is published after the compare-and-swap. If
// publishing fails the change stands and the error wraps ErrUnpublished;
// applying the same change again is a no-op that publishes the event again
// with the same id, which consumers dedupe. Serving also polls the aliases
// object, so a lost event delays a switch but cannot lose it.
package registry
