// Package deploy_test checks the deployment files of this folder against
// the code they deploy: the configuration loads and validates, every
// ADAPTREC_* variable they set is a configuration key, workers poll real
// task queues, and ports, probes and paths match the configuration.
package deploy_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/adaptrec/adaptrec/activities"
	"github.com/adaptrec/adaptrec/internal/config"
	"github.com/adaptrec/adaptrec/internal/devstack"
	"github.com/adaptrec/adaptrec/internal/onnxrt"
)

const (
	configPath   = "/etc/adaptrec/adaptrec.yaml"
	featuresPath = "/etc/adaptrec/features.yaml"
	binDir       = "/usr/local/bin/"
)

func production(t *testing.T) config.Config {
	t.Helper()
	cfg, err := config.Load("config/production.yaml", nil)
	if err != nil {
		t.Fatalf("config/production.yaml: %v", err)
	}
	return cfg
}

// knownEnv reports whether name is an environment variable adaptrec reads.
func knownEnv(name string) bool {
	if name == onnxrt.LibraryEnv {
		return true
	}
	for _, kv := range config.EnvKeys() {
		if kv[0] == name {
			return true
		}
	}
	return false
}

// binaries are the programs of cmd/.
func binaries(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir("../cmd")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out
}

func port(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	n, err := net.LookupPort("tcp", p)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return n
}

func TestProductionConfig(t *testing.T) {
	t.Parallel()
	cfg := production(t)
	if !cfg.Kafka.TLS || cfg.Kafka.ReplicationFactor < 3 || cfg.Kafka.SASLUsername == "" {
		t.Errorf("kafka %+v: want TLS, SASL and replication factor >= 3", cfg.Kafka)
	}
	if !cfg.Redis.TLS {
		t.Error("redis: want TLS")
	}
	for key, v := range map[string]string{
		"kafka.sasl_password": cfg.Kafka.SASLPassword, "redis.password": cfg.Redis.Password,
		"s3.access_key_id": cfg.S3.AccessKeyID, "s3.secret_access_key": cfg.S3.SecretAccessKey,
	} {
		if v != "" && !strings.HasPrefix(v, "adaptrec") { // the local stack's defaults are not secrets
			t.Errorf("%s is set in the file: secrets belong in the environment", key)
		}
	}
	if cfg.Features.File != featuresPath {
		t.Errorf("features.file %q, want %s (where deploy/Dockerfile puts the definitions)", cfg.Features.File, featuresPath)
	}
	for _, a := range []string{cfg.Server.GRPCAddr, cfg.Server.HTTPAddr, cfg.Worker.HTTPAddr, cfg.Consumers.HTTPAddr} {
		if h, _, _ := net.SplitHostPort(a); h != "0.0.0.0" && h != "" {
			t.Errorf("listen address %s is not reachable from outside the host", a)
		}
	}
}

// manifest is the part of a Kubernetes object the checks read.
type manifest struct {
	Kind     string
	Metadata struct{ Name string }
	Spec     struct {
		Template struct {
			Spec struct {
				Containers []container
				Volumes    []struct {
					Name      string
					ConfigMap *struct{ Name string } `yaml:"configMap"`
				}
			}
		}
		Ports []struct {
			Name       string
			TargetPort string `yaml:"targetPort"`
		}
	}
}

type container struct {
	Name    string
	Command []string
	Ports   []struct {
		Name          string
		ContainerPort int `yaml:"containerPort"`
	}
	Env []struct{ Name, Value string }
	// Probes: their HTTP paths and ports.
	ReadinessProbe *probe `yaml:"readinessProbe"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	VolumeMounts   []struct {
		Name      string
		MountPath string `yaml:"mountPath"`
		SubPath   string `yaml:"subPath"`
	} `yaml:"volumeMounts"`
}

type probe struct {
	HTTPGet struct{ Path, Port string } `yaml:"httpGet"`
}

type kustomization struct {
	Resources          []string
	ConfigMapGenerator []struct {
		Name  string
		Files []string
	} `yaml:"configMapGenerator"`
}

func readManifests(t *testing.T) []manifest {
	t.Helper()
	b, err := os.ReadFile("kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var k kustomization
	if err := yaml.Unmarshal(b, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	if len(k.ConfigMapGenerator) != 1 || k.ConfigMapGenerator[0].Name != "adaptrec-config" ||
		!slices.Equal(k.ConfigMapGenerator[0].Files, []string{"adaptrec.yaml=config/production.yaml"}) {
		t.Errorf("kustomization.yaml configMapGenerator %+v: want adaptrec-config from config/production.yaml", k.ConfigMapGenerator)
	}
	var out []manifest
	for _, r := range k.Resources {
		f, err := os.Open(r)
		if err != nil {
			t.Fatalf("kustomization.yaml resource: %v", err)
		}
		dec := yaml.NewDecoder(f)
		for {
			var m manifest
			if err := dec.Decode(&m); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", r, err)
			}
			out = append(out, m)
		}
		f.Close()
	}
	return out
}

func TestKubernetesManifests(t *testing.T) {
	t.Parallel()
	cfg := production(t)
	httpPorts := map[string]int{
		"server": port(t, cfg.Server.HTTPAddr), "worker": port(t, cfg.Worker.HTTPAddr), "consumers": port(t, cfg.Consumers.HTTPAddr),
	}
	bins := binaries(t)
	polled := map[string]bool{}
	deployments := 0
	for _, m := range readManifests(t) {
		if m.Kind != "Deployment" {
			continue
		}
		deployments++
		configMaps := map[string]bool{}
		for _, v := range m.Spec.Template.Spec.Volumes {
			if v.ConfigMap != nil && v.ConfigMap.Name == "adaptrec-config" {
				configMaps[v.Name] = true
			}
		}
		for _, c := range m.Spec.Template.Spec.Containers {
			where := m.Metadata.Name + "/" + c.Name
			if len(c.Command) != 3 || !strings.HasPrefix(c.Command[0], binDir) || c.Command[1] != "-config" || c.Command[2] != configPath {
				t.Errorf("%s: command %q, want [%s<binary> -config %s]", where, c.Command, binDir, configPath)
				continue
			}
			bin := strings.TrimPrefix(c.Command[0], binDir)
			if !slices.Contains(bins, bin) {
				t.Errorf("%s: runs %s, not a program of cmd/ (%v)", where, bin, bins)
			}
			mounted := false
			for _, vm := range c.VolumeMounts {
				mounted = mounted || (vm.MountPath == configPath && vm.SubPath == "adaptrec.yaml" && configMaps[vm.Name])
			}
			if !mounted {
				t.Errorf("%s: %s is not mounted from the adaptrec-config ConfigMap", where, configPath)
			}
			ports := map[string]int{}
			for _, p := range c.Ports {
				ports[p.Name] = p.ContainerPort
			}
			if want, ok := httpPorts[bin]; !ok || ports["http"] != want {
				t.Errorf("%s: http port %d, want %d (the configuration's http_addr)", where, ports["http"], want)
			}
			if bin == "server" && ports["grpc"] != port(t, cfg.Server.GRPCAddr) {
				t.Errorf("%s: grpc port %d, want server.grpc_addr's", where, ports["grpc"])
			}
			if p := c.ReadinessProbe; p == nil || p.HTTPGet.Path != "/readyz" || p.HTTPGet.Port != "http" {
				t.Errorf("%s: readiness probe %+v, want /readyz on http", where, p)
			}
			if p := c.LivenessProbe; p == nil || p.HTTPGet.Path != "/healthz" || p.HTTPGet.Port != "http" {
				t.Errorf("%s: liveness probe %+v, want /healthz on http", where, p)
			}
			for _, e := range c.Env {
				if strings.HasPrefix(e.Name, "ADAPTREC_") && !knownEnv(e.Name) {
					t.Errorf("%s: %s is not a configuration key (adaptrec config keys)", where, e.Name)
				}
				if e.Name == "ADAPTREC_WORKER_TASK_QUEUES" {
					for _, q := range strings.Split(e.Value, ",") {
						checkQueue(t, where, q)
						polled[q] = true
					}
				}
			}
		}
	}
	if deployments != 4 {
		t.Errorf("%d Deployments, want 4 (server, worker, worker-gpu, consumers)", deployments)
	}
	if !polled[activities.TaskQueueDefault] || !polled[activities.TaskQueueGPUTraining] {
		t.Errorf("task queues polled %v: want both %s and %s", polled, activities.TaskQueueDefault, activities.TaskQueueGPUTraining)
	}
}

func checkQueue(t *testing.T, where, q string) {
	t.Helper()
	if q != activities.TaskQueueDefault && q != activities.TaskQueueGPUTraining {
		t.Errorf("%s: polls %q, not a task queue of adaptrec (%s, %s)", where, q, activities.TaskQueueDefault, activities.TaskQueueGPUTraining)
	}
}

func TestSystemdUnits(t *testing.T) {
	t.Parallel()
	units, err := filepath.Glob("systemd/*.service")
	if err != nil || len(units) != 4 {
		t.Fatalf("units %v (%v), want 4", units, err)
	}
	bins := binaries(t)
	exec := regexp.MustCompile(`^ExecStart=` + regexp.QuoteMeta(binDir) + `(\w+) -config ` + regexp.QuoteMeta(configPath) + `$`)
	for _, u := range units {
		b, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		var ran string
		for line := range strings.Lines(string(b)) {
			line = strings.TrimSpace(line)
			if m := exec.FindStringSubmatch(line); m != nil {
				ran = m[1]
			}
			if v, ok := strings.CutPrefix(line, "Environment="); ok {
				name, value, _ := strings.Cut(v, "=")
				if !knownEnv(name) {
					t.Errorf("%s: %s is not a configuration key", u, name)
				}
				if name == "ADAPTREC_WORKER_TASK_QUEUES" {
					checkQueue(t, u, value)
				}
			}
		}
		if !slices.Contains(bins, ran) {
			t.Errorf("%s: ExecStart runs %q, want a program of cmd/ with -config %s", u, ran, configPath)
		}
	}
	b, err := os.ReadFile("systemd/adaptrec.env.example")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if name, _, _ := strings.Cut(line, "="); !knownEnv(name) {
			t.Errorf("adaptrec.env.example: %s is not a configuration key", name)
		}
	}
}

// TestDockerfile: the image holds every program and the ONNX Runtime the
// Makefile fetches, and its context lets them in.
func TestDockerfile(t *testing.T) {
	t.Parallel()
	df, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	ignore, err := os.ReadFile("Dockerfile.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	mk, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	version := regexp.MustCompile(`(?m)^ONNXRUNTIME_VERSION := (\S+)$`).FindSubmatch(mk)
	if version == nil {
		t.Fatal("Makefile: no ONNXRUNTIME_VERSION")
	}
	if want := "ARG ONNXRUNTIME_VERSION=" + string(version[1]) + "\n"; !bytes.Contains(df, []byte(want)) {
		t.Errorf("Dockerfile does not say %q (the Makefile's ONNX Runtime)", strings.TrimSpace(want))
	}
	for _, b := range binaries(t) {
		if !bytes.Contains(df, []byte(" bin/"+b+" ")) || !bytes.Contains(ignore, []byte("!bin/"+b+"\n")) {
			t.Errorf("Dockerfile or its .dockerignore leaves out bin/%s", b)
		}
	}
	for _, want := range []string{"COPY features/features.yaml " + featuresPath, "ENV " + onnxrt.LibraryEnv + "="} {
		if !bytes.Contains(df, []byte(want)) {
			t.Errorf("Dockerfile does not say %q", want)
		}
	}
}

// TestReadmeSearchAttributes: the namespace setup in README.md registers
// every search attribute the workflows set (those the dev server gets).
func TestReadmeSearchAttributes(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	loop := regexp.MustCompile(`for a in ([\w ]+); do`).FindSubmatch(b)
	if loop == nil {
		t.Fatal("README.md: no `for a in ...; do` loop creating the search attributes")
	}
	names := strings.Fields(string(loop[1]))
	for _, sa := range devstack.TemporalSearchAttributes {
		if !slices.Contains(names, sa[0]) || !bytes.Contains(b, []byte("--type "+sa[1])) {
			t.Errorf("README.md does not create search attribute %s of type %s (creates %v)", sa[0], sa[1], names)
		}
	}
}
