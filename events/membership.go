package events

import (
	"context"
	"fmt"
	"sync"
)

// GroupMembership records whether a consumer has joined its Kafka consumer
// group, and the last error of the group or of a partition, for the
// consumer's readiness check. The zero value is not joined; it is safe for
// concurrent use.
type GroupMembership struct {
	// Group names the consumer group in Ready's message.
	Group string

	mu      sync.Mutex
	joined  bool
	lastErr error
}

// Set records whether the consumer is in its group and the last error
// (nil for none).
func (m *GroupMembership) Set(joined bool, err error) {
	m.mu.Lock()
	m.joined, m.lastErr = joined, err
	m.mu.Unlock()
}

// SetErr records the last error and leaves the membership as it is.
func (m *GroupMembership) SetErr(err error) {
	m.mu.Lock()
	m.lastErr = err
	m.mu.Unlock()
}

// Ready reports nil once the consumer has joined its group, and otherwise
// an error naming the group and the last error; /readyz serves it.
func (m *GroupMembership) Ready(context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.joined {
		if m.lastErr != nil {
			return fmt.Errorf("not in consumer group %s yet: %w", m.Group, m.lastErr)
		}
		return fmt.Errorf("not in consumer group %s yet", m.Group)
	}
	return nil
}
