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
		{name: "unknown file key", path: typo, env: []string{}, wantErr: []string{"brokerz"}},
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
	for _, want := range []string{"ADAPTREC_KAFKA_BROKERS", "ADAPTREC_S3_ENDPOINT", "ADAPTREC_CONSUMERS_ARCHIVER_GROUP_ID"} {
		if !seen[want] {
			t.Errorf("EnvKeys lacks %s", want)
		}
	}
}
