package pace

import (
	"testing"
	"time"
)

func TestPacerKeepsTheDutyCycle(t *testing.T) {
	p := New(0.5)
	start := time.Now()
	var worked time.Duration
	for worked < 20*time.Millisecond {
		t0 := time.Now()
		for time.Since(t0) < 50*time.Microsecond {
		}
		worked += time.Since(t0)
		p.Yield()
	}
	total := time.Since(start)
	// Half the time working, half resting: the rests sum to about the
	// work (sleeps overshoot, never undershoot).
	if r := p.Rested(); r < 15*time.Millisecond {
		t.Fatalf("rested %v over %v of work, want about as long as the work", r, worked)
	}
	if total < 35*time.Millisecond {
		t.Fatalf("20ms of work at duty 0.5 took %v, want >= 35ms", total)
	}
}

func TestNilAndFullDutyNeverRest(t *testing.T) {
	for _, duty := range []float64{1, 0, -1} {
		p := New(duty)
		if p != nil {
			t.Fatalf("New(%v) = %+v, want nil (never rests)", duty, p)
		}
		p.Yield()
		if p.Rested() != 0 {
			t.Fatalf("nil pacer rested")
		}
	}
}
