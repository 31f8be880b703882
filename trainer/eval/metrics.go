package eval

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// RecallAt returns the share of relevant items found in the first k of
// ranked: |top-k ∩ relevant| / |relevant| (0 when nothing is relevant).
// relevant must be sorted ascending.
func RecallAt(ranked, relevant []int32, k int) float64 {
	if len(relevant) == 0 {
		return 0
	}
	return float64(hits(ranked, relevant, k)) / float64(len(relevant))
}

// NDCGAt returns the normalised discounted cumulative gain of the first k
// of ranked with binary relevance: DCG = Σ_{rank r from 1} rel_r / log2(r+1),
// divided by the DCG of an ideal ranking that puts min(k, |relevant|)
// relevant items first. relevant must be sorted ascending.
func NDCGAt(ranked, relevant []int32, k int) float64 {
	if len(relevant) == 0 || k <= 0 {
		return 0
	}
	var dcg, ideal float64
	for r, item := range ranked[:min(k, len(ranked))] {
		if _, ok := slices.BinarySearch(relevant, item); ok {
			dcg += 1 / math.Log2(float64(r)+2)
		}
	}
	for r := range min(k, len(relevant)) {
		ideal += 1 / math.Log2(float64(r)+2)
	}
	return dcg / ideal
}

// hits counts the items of ranked[:k] in relevant (sorted ascending).
func hits(ranked, relevant []int32, k int) int {
	n := 0
	for _, item := range ranked[:min(max(k, 0), len(ranked))] {
		if _, ok := slices.BinarySearch(relevant, item); ok {
			n++
		}
	}
	return n
}

// Coverage returns the share of a catalogue of catalogue items that appear
// in the first k of at least one of the lists.
func Coverage(lists [][]int32, k, catalogue int) float64 {
	if catalogue <= 0 {
		return 0
	}
	seen := make(map[int32]struct{})
	for _, l := range lists {
		for _, item := range l[:min(max(k, 0), len(l))] {
			seen[item] = struct{}{}
		}
	}
	return float64(len(seen)) / float64(catalogue)
}

// probClip bounds probabilities away from 0 and 1 in LogLoss, so one
// confident miss costs about 16 nats instead of infinity.
const probClip = 1e-7

// ErrLengths is returned by AUC and LogLoss for scores and labels of
// different lengths or none at all.
var ErrLengths = errors.New("eval: scores and labels must be non-empty and of equal length")

// LogLoss returns the mean binary cross-entropy, in nats, of probabilities
// against labels in [0, 1], probabilities clipped to [1e-7, 1−1e-7].
func LogLoss(probs, labels []float32) (float64, error) {
	if len(probs) == 0 || len(probs) != len(labels) {
		return 0, fmt.Errorf("log loss of %d probabilities and %d labels: %w", len(probs), len(labels), ErrLengths)
	}
	var sum float64
	for i, p := range probs {
		if math.IsNaN(float64(p)) {
			return 0, fmt.Errorf("eval: log loss: probability %d is NaN", i)
		}
		q := min(max(float64(p), probClip), 1-probClip)
		y := float64(labels[i])
		sum -= y*math.Log(q) + (1-y)*math.Log(1-q)
	}
	return sum / float64(len(probs)), nil
}

// AUC returns the area under the ROC curve: the probability that a random
// positive (label >= 0.5) scores above a random negative, ties counting
// half. It is NaN when there are no positives or no negatives.
func AUC(scores, labels []float32) (float64, error) {
	if len(scores) == 0 || len(scores) != len(labels) {
		return 0, fmt.Errorf("AUC of %d scores and %d labels: %w", len(scores), len(labels), ErrLengths)
	}
	idx := make([]int, len(scores))
	for i := range idx {
		idx[i] = i
		if math.IsNaN(float64(scores[i])) {
			return 0, fmt.Errorf("eval: AUC: score %d is NaN", i)
		}
	}
	slices.SortFunc(idx, func(a, b int) int {
		switch sa, sb := scores[a], scores[b]; {
		case sa < sb:
			return -1
		case sa > sb:
			return 1
		}
		return 0
	})
	// Mann–Whitney U from the positives' ranks, a tied run sharing its
	// average rank.
	var rankSum float64
	pos := 0
	for lo := 0; lo < len(idx); {
		hi := lo + 1
		for hi < len(idx) && scores[idx[hi]] == scores[idx[lo]] {
			hi++
		}
		avg := float64(lo+hi+1) / 2
		for _, i := range idx[lo:hi] {
			if labels[i] >= 0.5 {
				rankSum += avg
				pos++
			}
		}
		lo = hi
	}
	neg := len(idx) - pos
	if pos == 0 || neg == 0 {
		return math.NaN(), nil
	}
	p := float64(pos)
	return (rankSum - p*(p+1)/2) / (p * float64(neg)), nil
}
