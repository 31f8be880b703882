package ranker

import (
	"fmt"
	"math"
	"slices"
)

// probClip bounds probabilities away from 0 and 1 in LogLoss, so one
// confident miss costs about 16 nats instead of infinity. It is the float32
// rounding step near 1, the finest a float32 score can resolve.
const probClip = 1e-7

// LogLoss returns the mean binary cross-entropy of predicted click
// probabilities against labels in [0, 1], in nats, with probabilities
// clipped to [1e-7, 1-1e-7].
func LogLoss(probs, labels []float32) (float64, error) {
	if err := checkPairs(probs, labels); err != nil {
		return 0, fmt.Errorf("log loss: %w", err)
	}
	var sum float64
	for i, p := range probs {
		q := min(max(float64(p), probClip), 1-probClip)
		y := float64(labels[i])
		sum -= y*math.Log(q) + (1-y)*math.Log(1-q)
	}
	return sum / float64(len(probs)), nil
}

// AUC returns the area under the ROC curve of scores for labels (a label
// >= 0.5 is a positive): the probability that a random positive scores
// above a random negative, ties counting half. It is NaN when the labels
// are all positive or all negative.
func AUC(scores, labels []float32) (float64, error) {
	if err := checkPairs(scores, labels); err != nil {
		return 0, fmt.Errorf("AUC: %w", err)
	}
	idx := make([]int, len(scores))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int {
		sa, sb := scores[a], scores[b]
		switch {
		case sa < sb:
			return -1
		case sa > sb:
			return 1
		}
		return 0
	})
	// Mann-Whitney U: the sum of the positives' ranks, tied runs sharing
	// their average rank.
	var rankSum float64
	var pos int
	for start := 0; start < len(idx); {
		end := start + 1
		for end < len(idx) && scores[idx[end]] == scores[idx[start]] {
			end++
		}
		avgRank := float64(start+end+1) / 2 // ranks start..end-1 counted from 1
		for _, i := range idx[start:end] {
			if labels[i] >= 0.5 {
				rankSum += avgRank
				pos++
			}
		}
		start = end
	}
	neg := len(idx) - pos
	if pos == 0 || neg == 0 {
		return math.NaN(), nil
	}
	p := float64(pos)
	return (rankSum - p*(p+1)/2) / (p * float64(neg)), nil
}

func checkPairs(scores, labels []float32) error {
	switch {
	case len(scores) != len(labels):
		return fmt.Errorf("%d scores for %d labels", len(scores), len(labels))
	case len(scores) == 0:
		return fmt.Errorf("no scores")
	}
	if i := firstNonFinite(scores); i >= 0 {
		return fmt.Errorf("score %d is %v", i, scores[i])
	}
	return nil
}
