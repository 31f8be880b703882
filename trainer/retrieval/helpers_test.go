package retrieval

import "github.com/adaptrec/adaptrec/internal/artifact"

// Names the tests use for what moved to internal/artifact.
const indexHeaderSize = artifact.HeaderSize

// crcOf is the artifact checksum of a header's first 60 bytes and a
// payload, for tests that reseal edited bytes.
func crcOf(header, payload []byte) uint32 { return artifact.Checksum(header, payload) }
