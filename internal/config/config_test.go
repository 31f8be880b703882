package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestDefaultIsValid(t *testing.T) {
	t.Parallel()
	if err := Default().Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
}

func TestLoad(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.yaml", "kafka:\n  brokers: [k1:9092, k2:9092]\nconsumers:\n  archiver:\n    flush_interval: 250ms\n")
	typo := write("typo.yaml", "kafka:\n  brokerz: [k1:9092]\n")
	badVal := write("bad.yaml", "redis:\n  addr: nohostport\nlog:\n  level: loud\n")
	empty := write("empty.yaml", "")
	feats := write("features.yaml", "features:\n  file: /etc/adaptrec/features.yaml\n  key_prefix: \"prod:fs:\"\n")
	badFeats := write("badfeatures.yaml", "features:\n  file: \"\"\n  key_prefix: \"fs:{x}:\"\n")
	oldFeats := write("old.yaml", "consumers:\n  nearline:\n    enabled: true\n    features_file: f.yaml\n")
	unknownFeats := write("unknownfeatures.yaml", "features:\n  path: f.yaml\n")

	tests := []struct {
		name    string
		path    string
		env     []string
		check   func(t *testing.T, c Config)
		wantErr []string
	}{
		{name: "defaults", env: []string{}, check: func(t *testing.T, c Config) {
			if !reflect.DeepEqual(c, Default()) {
				t.Errorf("got %+v, want defaults", c)
			}
		}},
		{name: "empty file", path: empty, env: []string{}},
		{name: "file", path: good, env: []string{}, check: func(t *testing.T, c Config) {
			if strings.Join(c.Kafka.Brokers, ",") != "k1:9092,k2:9092" || c.Consumers.Archiver.FlushInterval != 250*time.Millisecond {
				t.Errorf("file values not applied: %+v", c)
			}
		}},
		{name: "env overrides file", path: good, env: []string{
			"ADAPTREC_KAFKA_BROKERS=a:1, b:2", "ADAPTREC_REDIS_DB=3", "ADAPTREC_KAFKA_TLS=true",
			"ADAPTREC_SERVER_INGEST_TIMEOUT=2s", "PATH=/bin",
		}, check: func(t *testing.T, c Config) {
			if strings.Join(c.Kafka.Brokers, ",") != "a:1,b:2" || c.Redis.DB != 3 || !c.Kafka.TLS || c.Server.IngestTimeout != 2*time.Second {
				t.Errorf("env values not applied: %+v", c)
			}
		}},
		{name: "features section", path: feats, env: []string{}, check: func(t *testing.T, c Config) {
			if c.Features.File != "/etc/adaptrec/features.yaml" || c.Features.KeyPrefix != "prod:fs:" {
				t.Errorf("features section not applied: %+v", c.Features)
			}
		}},
		{name: "features env overrides file", path: feats, env: []string{
			"ADAPTREC_FEATURES_FILE=defs/f.yaml", "ADAPTREC_FEATURES_KEY_PREFIX=staging:fs:",
		}, check: func(t *testing.T, c Config) {
			if c.Features.File != "defs/f.yaml" || c.Features.KeyPrefix != "staging:fs:" {
				t.Errorf("features env values not applied: %+v", c.Features)
			}
		}},
		{name: "unknown file key", path: typo, env: []string{}, wantErr: []string{"brokerz"}},
		{name: "unknown features key", path: unknownFeats, env: []string{}, wantErr: []string{"field path not found"}},
		{name: "bad features values named", path: badFeats, env: []string{}, wantErr: []string{"features.file", "features.key_prefix", `"fs:{x}:"`}},
		{name: "empty key prefix", env: []string{"ADAPTREC_FEATURES_KEY_PREFIX="}, wantErr: []string{"features.key_prefix", DefaultFeaturesKeyPrefix}},
		{name: "renamed file key", path: oldFeats, env: []string{}, wantErr: []string{"line 4", "consumers.nearline.features_file", "features.file"}},
		{name: "renamed env key", env: []string{"ADAPTREC_CONSUMERS_NEARLINE_FEATURES_FILE=f.yaml"}, wantErr: []string{
			"ADAPTREC_CONSUMERS_NEARLINE_FEATURES_FILE", "ADAPTREC_FEATURES_FILE", "features.file",
		}},
		{name: "bad values named", path: badVal, env: []string{}, wantErr: []string{"redis.addr", "log.level"}},
		{name: "unknown env key", env: []string{"ADAPTREC_KAFKA_BROKER=x:1"}, wantErr: []string{"ADAPTREC_KAFKA_BROKER is not a configuration key"}},
		{name: "bad env value", env: []string{"ADAPTREC_REDIS_DB=three"}, wantErr: []string{"ADAPTREC_REDIS_DB", "redis.db", `"three"`}},
		{name: "bad duration", env: []string{"ADAPTREC_CONSUMERS_ARCHIVER_FLUSH_INTERVAL=soon"}, wantErr: []string{"consumers.archiver.flush_interval"}},
		{name: "missing file", path: filepath.Join(dir, "nope.yaml"), env: []string{}, wantErr: []string{"nope.yaml"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := Load(tt.path, tt.env)
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatalf("Load succeeded, want error mentioning %v", tt.wantErr)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not mention %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

// TestLoadAcceptsFileSelectingVariables: variables that select files, not
// keys (the ONNX Runtime library among them), must not fail the load.
func TestLoadAcceptsFileSelectingVariables(t *testing.T) {
	t.Parallel()
	for _, kv := range []string{"ADAPTREC_ONNXRUNTIME_LIB=/opt/onnxruntime/libonnxruntime.so", "ADAPTREC_TOOLS_DIR=/opt/tools"} {
		if _, err := Load("", []string{kv}); err != nil {
			t.Errorf("%s: %v", kv, err)
		}
	}
}

func TestEnvKeysCoverEveryLeaf(t *testing.T) {
	t.Parallel()
	keys := EnvKeys()
	seen := map[string]bool{}
	for _, k := range keys {
		if seen[k[0]] {
			t.Errorf("duplicate env name %s", k[0])
		}
		seen[k[0]] = true
	}
	for _, want := range []string{
		"ADAPTREC_KAFKA_BROKERS", "ADAPTREC_S3_ENDPOINT", "ADAPTREC_CONSUMERS_ARCHIVER_GROUP_ID",
		"ADAPTREC_FEATURES_FILE", "ADAPTREC_FEATURES_KEY_PREFIX",
	} {
		if !seen[want] {
			t.Errorf("EnvKeys lacks %s", want)
		}
	}
	for name := range renamedEnv {
		if seen[name] {
			t.Errorf("EnvKeys lists %s, a renamed key", name)
		}
	}
	for from, to := range renamed {
		if !seen[envName(strings.Split(to, "."))] {
			t.Errorf("renamed key %s points to %s, which is not a key", from, to)
		}
	}
}
