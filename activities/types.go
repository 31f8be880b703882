// Package activities holds the Temporal activities: every piece of I/O the
// workflows in package workflows sequence. Activities needing clients are
// methods on structs that the worker fills; workflows call them through typed
// nil pointers.
package activities

import "time"

// Task queue names.
const (
	// TaskQueueDefault runs data and control activities on CPU workers.
	TaskQueueDefault = "adaptrec-default"
)

// HistoryRequest asks for a simulated world's interaction history to be
// published to the event log.
type HistoryRequest struct {
	// WorldID names the world; its catalogue is stored under worlds/<id>/.
	WorldID string
	Seed    uint64
	Events  int
	Users   int
	Items   int
	// Start and End bound the event times of the history.
	Start, End time.Time
}

// HistoryResult reports what PublishHistory wrote.
type HistoryResult struct {
	Published     int
	CatalogueKey  string
	FirstEvent    time.Time
	LastEvent     time.Time
	EventsPerSec  float64
	PublishSecond float64
}

// ArchiveWait asks AwaitArchived to wait until the offline store holds at
// least Want events of Topic written by Producer with event times in
// [From, To).
type ArchiveWait struct {
	Topic    string
	Producer string
	From, To time.Time
	Want     int64
	// WrittenAfter skips objects the store wrote before it (less a minute
	// for clock skew): they cannot hold rows published later, so a long
	// archive is not re-read on every wait.
	WrittenAfter time.Time
}

// ArchiveStatus is what the offline store holds for an ArchiveWait.
type ArchiveStatus struct {
	Rows    int64
	Objects int
	// Location is the s3:// prefix of the topic's event log.
	Location string
}
