package rerank

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var actionsTotal = promauto.NewCounterVec(prometheus.CounterOpts{
	Name: "adaptrec_rerank_actions_total",
	Help: "Items the re-ranking rules acted on, by rule and action: removed (filtered out, held back or displaced), " +
		"skipped (passed over by a full cap), inserted (placed by a relaxed cap, as a seen fill or for the fresh minimum), " +
		"boosted (promoted items returned with a raised score), short (fresh items missing from the minimum).",
}, []string{"rule", "action"})

// actionCounters holds the children of actionsTotal for the pairs in
// validActions, resolved once so that Record does no label lookup, and
// created at start so that every series exists (at 0) before its first
// event and rate() sees the first increase.
var actionCounters [numRules][numActions]prometheus.Counter

func init() {
	for r, actions := range validActions {
		for _, a := range actions {
			actionCounters[r][a] = actionsTotal.WithLabelValues(Rule(r).String(), a.String())
		}
	}
}

// Record adds s to adaptrec_rerank_actions_total. It is not called by
// Apply: the caller records each Result's Stats, or adds many up with
// Stats.Add and records them at once.
func Record(s *Stats) {
	for r := range s.n {
		for a, v := range s.n[r] {
			if v <= 0 {
				continue
			}
			c := actionCounters[r][a]
			if c == nil {
				c = actionsTotal.WithLabelValues(Rule(r).String(), Action(a).String())
			}
			c.Add(float64(v))
		}
	}
}
