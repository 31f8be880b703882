// Package events defines adaptrec's event log: topic names and keys, the
// envelope every event carries, validation, and the Kafka producer. The table
// in docs/events.md is generated from Topics; change both together.
package events

import (
	"fmt"

	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
)

// SchemaVersion is the payload schema version this build writes and the
// highest one it reads. Bump it when a payload gains a field whose absence
// older consumers must not misread; adding optional fields does not need it.
const SchemaVersion uint32 = 1

// Topic names. The .v1 suffix is the topic generation: an incompatible change
// to a payload gets a new topic and a migration, never a rewrite in place.
const (
	TopicInteractions     = "adaptrec.interactions.v1"
	TopicPredictions      = "adaptrec.predictions.v1"
	TopicFeedback         = "adaptrec.feedback.v1"
	TopicModelAccuracy    = "adaptrec.model-accuracy.v1"
	TopicModelLifecycle   = "adaptrec.model-lifecycle.v1"
	TopicFeatureSnapshots = "adaptrec.feature-snapshots.v1"
	// TopicDeadLetter receives messages a consumer could not process, with
	// the reason and their origin in the DeadLetterHeader* headers.
	TopicDeadLetter = "adaptrec.dead-letter.v1"
)

// TopicSpec documents one topic: what it carries and how it is keyed.
type TopicSpec struct {
	Name string
	// Type is the payload carried; EVENT_TYPE_UNSPECIFIED for the dead-letter
	// topic, which carries raw bytes.
	Type adaptrecv1.EventType
	// Key names the field used as the message key. Keys decide partitions,
	// so all events of one key are ordered.
	Key string
	// Purpose says who writes and who reads.
	Purpose string
}

// Topics lists every adaptrec topic.
var Topics = []TopicSpec{
	{TopicInteractions, adaptrecv1.EventType_EVENT_TYPE_INTERACTION, "user_id",
		"what users did (server Ingest, simulator); read by the archiver, nearline features, the feedback join"},
	{TopicPredictions, adaptrecv1.EventType_EVENT_TYPE_PREDICTION, "user_id",
		"what was served and with which features (server); read by the archiver, the feedback join, skew reports"},
	{TopicFeedback, adaptrecv1.EventType_EVENT_TYPE_FEEDBACK, "user_id",
		"explicit feedback (server Ingest); read by the archiver and re-ranking rules"},
	{TopicModelAccuracy, adaptrecv1.EventType_EVENT_TYPE_MODEL_ACCURACY, "model_version",
		"online accuracy per model version and arm (feedback join); read by canary guardrails"},
	{TopicModelLifecycle, adaptrecv1.EventType_EVENT_TYPE_MODEL_LIFECYCLE, "model_name",
		"registry changes (registry); read by every serving instance to swap models"},
	{TopicFeatureSnapshots, adaptrecv1.EventType_EVENT_TYPE_FEATURE_SNAPSHOT, "feature_view",
		"feature snapshots made current (batch features); read by serving caches"},
	{TopicDeadLetter, adaptrecv1.EventType_EVENT_TYPE_UNSPECIFIED, "original key",
		"messages a consumer rejected, bytes unchanged, reason in headers"},
}

// EventTopics are the topics that carry adaptrec events (all but the
// dead-letter topic).
func EventTopics() []string {
	var out []string
	for _, t := range Topics {
		if t.Type != adaptrecv1.EventType_EVENT_TYPE_UNSPECIFIED {
			out = append(out, t.Name)
		}
	}
	return out
}

// TopicFor returns the topic that carries events of type t.
func TopicFor(t adaptrecv1.EventType) (string, error) {
	for _, s := range Topics {
		if s.Type == t && t != adaptrecv1.EventType_EVENT_TYPE_UNSPECIFIED {
			return s.Name, nil
		}
	}
	return "", fmt.Errorf("no topic for event type %s", t)
}

// Key returns the message key of an event, following Topics.
func Key(e *adaptrecv1.Event) []byte {
	k, ok := keyOf(e)
	if !ok {
		return nil
	}
	return []byte(k)
}

// keyOf is Key as a string; ok is false for events without a key (nil Key),
// which the balancer spreads instead of hashing an empty one.
func keyOf(e *adaptrecv1.Event) (key string, ok bool) {
	switch p := e.GetPayload().(type) {
	case *adaptrecv1.Event_Interaction:
		return p.Interaction.GetUserId(), true
	case *adaptrecv1.Event_Prediction:
		return p.Prediction.GetUserId(), true
	case *adaptrecv1.Event_Feedback:
		return p.Feedback.GetUserId(), true
	case *adaptrecv1.Event_ModelAccuracy:
		return p.ModelAccuracy.GetModelVersion(), true
	case *adaptrecv1.Event_ModelLifecycle:
		return p.ModelLifecycle.GetModelName(), true
	case *adaptrecv1.Event_FeatureSnapshot:
		return p.FeatureSnapshot.GetFeatureView(), true
	}
	return "", false
}

// payloadName is the protobuf message carried for each event type.
var payloadName = map[adaptrecv1.EventType]string{
	adaptrecv1.EventType_EVENT_TYPE_INTERACTION:      "UserInteractionEvent",
	adaptrecv1.EventType_EVENT_TYPE_PREDICTION:       "PredictionEvent",
	adaptrecv1.EventType_EVENT_TYPE_FEEDBACK:         "FeedbackEvent",
	adaptrecv1.EventType_EVENT_TYPE_MODEL_ACCURACY:   "ModelAccuracyEvent",
	adaptrecv1.EventType_EVENT_TYPE_MODEL_LIFECYCLE:  "ModelLifecycleEvent",
	adaptrecv1.EventType_EVENT_TYPE_FEATURE_SNAPSHOT: "FeatureSnapshotEvent",
	adaptrecv1.EventType_EVENT_TYPE_UNSPECIFIED:      "raw bytes",
}

// TopicsMarkdown renders Topics as the table in docs/events.md.
func TopicsMarkdown() string {
	s := "| topic | payload | key | written by / read by |\n|---|---|---|---|\n"
	for _, t := range Topics {
		s += fmt.Sprintf("| `%s` | %s | `%s` | %s |\n", t.Name, payloadName[t.Type], t.Key, t.Purpose)
	}
	return s
}
