// Package ranker trains the click-probability ranking model over the
// feature store's input rows (features.Layout) and exports it to ONNX for
// serving.
//
// A Model is logistic regression (no hidden layers) or an MLP (hidden
// layers with ReLU), reading rows of a fixed width. Inputs are standardized
// with per-column means and scales computed from the training rows and
// clipped to ±ClipZ; the standardization is part of the model and of the exported graph, so
// callers always pass raw rows. The output is sigmoid(logit), the
// probability of a click.
//
// Train fits a model with mini-batch Adam on binary cross-entropy, optional
// L2 and optional early stopping on a validation split. It uses every core
// (Config.Workers) yet is bit-for-bit deterministic for a seed: each
// mini-batch is cut into fixed-size chunks whose gradients are computed in
// parallel and summed in chunk order, so neither scheduling nor the number
// of workers changes a single bit.
//
// ExportONNX writes the model as an ONNX graph (opset 17, input "features"
// [N, width] float32 with a dynamic N, output "score" [N, 1] float32) using
// the Go types generated from onnx.proto (gen/onnx), with metadata that lets
// serving refuse a model whose feature schema it cannot satisfy (see
// Metadata and ReadMetadata). Predict is the Go forward pass of the same
// graph; tests hold ONNX Runtime's outputs to it within 1e-5. See
// docs/adr/010-ranker-onnx.md.
package ranker
