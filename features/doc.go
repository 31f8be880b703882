// Package features holds adaptrec's feature definitions and the code that
// turns feature values into model inputs, shared by training and serving.
//
// The definitions live in one YAML file (features/features.yaml); Load and
// Parse read and validate it into a FeatureSet. Every feature has an entity
// (user, item, user×item pair, request), a type (float, int, vector[n], list,
// map), a lane (batch, nearline, request), a default used whenever a value is
// missing, and a freshness contract.
//
// Three pieces keep training and serving consistent:
//   - FeatureSet.SchemaHash identifies the definitions a model's inputs
//     depend on; ModelSchema records it, with the features a model consumes,
//     next to every training set and model, and FeatureSet.Satisfies is the
//     check serving runs before it accepts a model.
//   - Layout flattens per-entity Records into the []float32 rows a ranker
//     reads. Training rows and serving requests go through the same Layout,
//     so defaults, vector expansion and int conversion cannot drift apart.
//   - FillRequest computes the request-lane features from a RequestContext,
//     built by serving from a RecommendRequest (RequestFromRecommend) and by
//     training from an archived event (RequestFromEvent).
package features
