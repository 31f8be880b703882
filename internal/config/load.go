package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// EnvPrefix starts every environment override.
const EnvPrefix = "ADAPTREC_"

// Load builds a Config from Default, the YAML file at path (skipped when path
// is empty) and environ (KEY=VALUE pairs; os.Environ() when nil),
// then validates it. Unknown keys in the file and unknown ADAPTREC_ variables
// are errors, so a typo never silently falls back to a default.
func Load(path string, environ []string) (Config, error) {
	cfg := Default()
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return Config{}, fmt.Errorf("read config file: %w", err)
		}
		if err := checkRenamed(data); err != nil {
			return Config{}, fmt.Errorf("config file %s: %w", path, err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		// An empty file decodes to io.EOF and means "no overrides".
		if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
			return Config{}, fmt.Errorf("config file %s: %w", path, err)
		}
	}
	if environ == nil {
		environ = os.Environ()
	}
	if err := applyEnv(&cfg, environ); err != nil {
		return Config{}, err
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// EnvKeys lists every supported environment variable with its YAML key, in
// struct order; `adaptrec config keys` prints it.
func EnvKeys() [][2]string {
	var out [][2]string
	walk(reflect.ValueOf(&Config{}).Elem(), nil, func(path []string, _ reflect.Value) error {
		out = append(out, [2]string{envName(path), strings.Join(path, ".")})
		return nil
	})
	return out
}

func envName(path []string) string {
	return EnvPrefix + strings.ToUpper(strings.Join(path, "_"))
}

func applyEnv(cfg *Config, environ []string) error {
	env := make(map[string]string)
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if ok && strings.HasPrefix(k, EnvPrefix) {
			env[k] = v
		}
	}
	known := make(map[string]bool)
	var errs []error
	_ = walk(reflect.ValueOf(cfg).Elem(), nil, func(path []string, field reflect.Value) error {
		name := envName(path)
		known[name] = true
		raw, ok := env[name]
		if !ok {
			return nil
		}
		if err := setField(field, raw); err != nil {
			errs = append(errs, fmt.Errorf("environment %s (config key %s): %w", name, strings.Join(path, "."), err))
		}
		return nil
	})
	for name := range env {
		switch {
		case known[name] || notConfig[name]:
		case renamedEnv[name] != "":
			to := renamedEnv[name]
			errs = append(errs, fmt.Errorf("environment %s is no longer a configuration key: use %s (config key %s)",
				name, envName(strings.Split(to, ".")), to))
		default:
			errs = append(errs, fmt.Errorf("environment %s is not a configuration key (see `adaptrec config keys`)", name))
		}
	}
	return errors.Join(errs...)
}

// notConfig are ADAPTREC_ variables that select files rather than set keys.
var notConfig = map[string]bool{
	EnvPrefix + "CONFIG":    true,
	EnvPrefix + "TOOLS_DIR": true,
	EnvPrefix + "STATE_DIR": true,
	EnvPrefix + "ORT_LIB":   true,
	// internal/onnxrt.LibraryEnv: the ONNX Runtime library's path.
	EnvPrefix + "ONNXRUNTIME_LIB": true,
	// internal/testenv.EnvDatasets: where tests find the shared datasets.
	EnvPrefix + "DATASETS": true,
}

// renamed maps keys that moved to the key that replaced them, so that a
// configuration written for an older adaptrec fails with a message saying
// where the value goes now rather than only that the key is unknown.
var renamed = map[string]string{
	"consumers.nearline.features_file": "features.file",
}

// renamedEnv is renamed by environment variable.
var renamedEnv = func() map[string]string {
	m := make(map[string]string, len(renamed))
	for from, to := range renamed {
		m[envName(strings.Split(from, "."))] = to
	}
	return m
}()

// checkRenamed reports every renamed key a YAML file still sets, with its
// line. Anything else it leaves to the strict decoder.
func checkRenamed(data []byte) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil || len(doc.Content) == 0 {
		return nil // the decoder reports syntax errors
	}
	var errs []error
	var visit func(n *yaml.Node, path []string)
	visit = func(n *yaml.Node, path []string) {
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			p := append(append([]string(nil), path...), k.Value)
			if to, ok := renamed[strings.Join(p, ".")]; ok {
				errs = append(errs, fmt.Errorf("line %d: config key %s was renamed: set %s instead", k.Line, strings.Join(p, "."), to))
				continue
			}
			visit(n.Content[i+1], p)
		}
	}
	visit(doc.Content[0], nil)
	return errors.Join(errs...)
}

func walk(v reflect.Value, path []string, fn func([]string, reflect.Value) error) error {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if tag == "" || tag == "-" {
			continue
		}
		p := append(append([]string(nil), path...), tag)
		fv := v.Field(i)
		if fv.Kind() == reflect.Struct {
			if err := walk(fv, p, fn); err != nil {
				return err
			}
			continue
		}
		if err := fn(p, fv); err != nil {
			return err
		}
	}
	return nil
}

var durationType = reflect.TypeOf(time.Duration(0))

func setField(field reflect.Value, raw string) error {
	if field.Type() == durationType {
		d, err := time.ParseDuration(raw)
		if err != nil {
			return fmt.Errorf("%q is not a duration like 500ms or 2s", raw)
		}
		field.SetInt(int64(d))
		return nil
	}
	switch field.Kind() {
	case reflect.String:
		field.SetString(raw)
	case reflect.Bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return fmt.Errorf("%q is not true or false", raw)
		}
		field.SetBool(b)
	case reflect.Int, reflect.Int64, reflect.Int32:
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			return fmt.Errorf("%q is not an integer", raw)
		}
		field.SetInt(n)
	case reflect.Float64:
		f, err := strconv.ParseFloat(raw, 64)
		if err != nil {
			return fmt.Errorf("%q is not a number", raw)
		}
		field.SetFloat(f)
	case reflect.Slice:
		var items []string
		for _, s := range strings.Split(raw, ",") {
			if s = strings.TrimSpace(s); s != "" {
				items = append(items, s)
			}
		}
		switch field.Type().Elem().Kind() {
		case reflect.String:
			field.Set(reflect.ValueOf(items))
		case reflect.Float64:
			nums := make([]float64, len(items))
			for i, s := range items {
				f, err := strconv.ParseFloat(s, 64)
				if err != nil {
					return fmt.Errorf("%q is not a number", s)
				}
				nums[i] = f
			}
			field.Set(reflect.ValueOf(nums))
		default:
			return fmt.Errorf("unsupported list type %s", field.Type())
		}
	default:
		return fmt.Errorf("unsupported type %s", field.Type())
	}
	return nil
}
