package events

import (
	"fmt"
	"testing"
)

func TestDedupeWindow(t *testing.T) {
	type step struct {
		id   string
		off  int64
		want bool
	}
	tests := []struct {
		name  string
		size  int
		steps []step
	}{
		{"disabled", 0, []step{{"a", 0, false}, {"a", 1, false}}},
		{"adjacent repeat", 3, []step{{"a", 0, false}, {"a", 1, true}, {"b", 2, false}}},
		{"at the edge", 3, []step{{"a", 10, false}, {"b", 11, false}, {"c", 12, false}, {"a", 13, true}}},
		{"just beyond", 3, []step{{"a", 10, false}, {"b", 11, false}, {"c", 12, false}, {"d", 13, false}, {"a", 14, false}}},
		{"gaps in offsets count", 3, []step{{"a", 10, false}, {"a", 14, false}, {"a", 17, true}}},
		{"a repeat refreshes the id", 2, []step{{"a", 0, false}, {"a", 2, true}, {"a", 4, true}, {"a", 7, false}}},
		{"grows past the initial ring", 100, func() []step {
			var s []step
			for i := range 150 {
				s = append(s, step{fmt.Sprint(i), int64(i), false})
			}
			return append(s, step{"60", 150, true}, step{"49", 151, false})
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := NewDedupeWindow(tt.size)
			for _, s := range tt.steps {
				if got := w.Seen(s.id, s.off); got != s.want {
					t.Fatalf("seen(%s, %d) = %v, want %v", s.id, s.off, got, s.want)
				}
			}
			if tt.size > 0 && w.Len() > tt.size+1 {
				t.Fatalf("window holds %d ids, more than its size %d", w.Len(), tt.size)
			}
		})
	}
}
