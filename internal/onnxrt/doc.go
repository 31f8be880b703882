// Package onnxrt scores rows with ONNX models through ONNX Runtime
// (github.com/yalue/onnxruntime_go, cgo).
//
//	s, err := onnxrt.Load(modelBytes, onnxrt.Options{})
//	scores, err := s.Score(rows, n) // n rows of s.Width() float32 values
//
// The runtime is a shared library found by FindLibrary (configuration, then
// $ADAPTREC_ONNXRUNTIME_LIB, then .tools/bin where `make tools` installs
// the pinned, checksum-verified release) and initialised once per process
// by Init. A missing library is a *MissingLibraryError whose message names
// the fix.
//
// A Session holds one ONNX Runtime session shared by every goroutine that
// scores with it, on one intra-op thread by default. Load accepts only
// scoring models (Info.CheckScorer): one float32 input [N, width] with a
// dynamic N and one float32 output [N, 1] or [N]. Inspect and Info expose
// a model's inputs, outputs and metadata for validation; what the metadata
// means belongs to the exporter (trainer/ranker.ParseMetadata). See
// docs/adr/010-ranker-onnx.md.
package onnxrt
