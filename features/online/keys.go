package online

// Redis keys of the store. An entity's keys carry its id as a hash tag, so
// all keys of one user fall in one Redis Cluster slot and a request's
// reads stay one multi-key command per node.
//
//	<prefix>{<user>}:b:<group>:<version>  packed batch record (string)
//	<prefix>{<user>}:p:<group>:<version>  the user's user×item pair table (string, pairs.go)
//	<prefix>meta:<group>:<version>        JSON meta of a loaded batch version
//	<prefix>{<entity>}:n:<group>          nearline values (hash: feature → value; user×item: the user's, every item in the value)
//	<prefix>changes:<group>               items by last nearline write (sorted set)
type keys struct{ prefix string }

func (k keys) userBatch(group, version, user string) string {
	return k.prefix + "{" + user + "}:b:" + group + ":" + version
}

func (k keys) batchMeta(group, version string) string {
	return k.prefix + "meta:" + group + ":" + version
}

func (k keys) nearline(group, id string) string {
	return k.prefix + "{" + id + "}:n:" + group
}

func (k keys) changes(group string) string { return k.prefix + "changes:" + group }
