package devstack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fakeTool returns a LookupTool that runs script (a /bin/sh body) for every
// component.
func fakeTool(t *testing.T, script string) func(string) (string, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fake")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+script), 0o755); err != nil {
		t.Fatal(err)
	}
	return func(string) (string, error) { return path, nil }
}

func TestStartReportsEarlyExitWithLog(t *testing.T) {
	t.Parallel()
	_, err := Start(t.Context(), Options{
		StateDir:   t.TempDir(),
		Components: []Component{Redis},
		LookupTool: fakeTool(t, "echo 'FATAL: bad config line 3' >&2\nexit 3\n"),
	})
	if err == nil {
		t.Fatal("Start succeeded with a server that exits")
	}
	for _, want := range []string{"redis exited during startup (exit status 3)", "FATAL: bad config line 3", "redis.log"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}

func TestStartTimesOutAndKillsProcessGroup(t *testing.T) {
	t.Parallel()
	pids := filepath.Join(t.TempDir(), "pids")
	// The server and a child it starts both ignore SIGTERM: only the group
	// SIGKILL ends them.
	script := fmt.Sprintf("trap '' TERM\nsleep 300 &\necho $$ $! > %s\necho still starting\nwait\n", pids)
	start := time.Now()
	_, err := Start(t.Context(), Options{
		StateDir:     t.TempDir(),
		Components:   []Component{Kafka},
		ReadyTimeout: 300 * time.Millisecond,
		LookupTool:   fakeTool(t, script),
	})
	if err == nil || !strings.Contains(err.Error(), "kafka did not answer on") || !strings.Contains(err.Error(), "still starting") {
		t.Fatalf("Start error = %v, want a timeout quoting the log", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("Start took %s to give up", d)
	}
	data, err := os.ReadFile(pids)
	if err != nil {
		t.Fatal(err)
	}
	// The orphaned child is reaped by init a moment after the kill.
	deadline := time.Now().Add(5 * time.Second)
	for _, f := range strings.Fields(string(data)) {
		pid, _ := strconv.Atoi(f)
		for alive(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("process %d survived the failed start", pid)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	i := strings.LastIndexByte(string(stat), ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] != 'Z'
}

func TestStartNamesComponentAndPortInUse(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	_, err = Start(t.Context(), Options{
		StateDir:   t.TempDir(),
		Components: []Component{Redis},
		Ports:      Ports{Redis: port},
		LookupTool: fakeTool(t, "exit 1\n"),
	})
	want := fmt.Sprintf("redis: port 127.0.0.1:%d is already in use", port)
	if !errors.Is(err, ErrPortInUse) || !strings.Contains(err.Error(), want) {
		t.Fatalf("Start error = %v, want ErrPortInUse saying %q", err, want)
	}
}

func TestStartUnknownComponentAndMissingTool(t *testing.T) {
	t.Parallel()
	if _, err := Start(t.Context(), Options{StateDir: t.TempDir(), Components: []Component{"zookeeper"}}); err == nil || !strings.Contains(err.Error(), `unknown component "zookeeper"`) {
		t.Fatalf("unknown component: %v", err)
	}
	_, err := Start(t.Context(), Options{
		StateDir:   t.TempDir(),
		Components: []Component{Temporal, S3},
		LookupTool: func(name string) (string, error) { return "", &MissingToolError{Tool: name} },
	})
	for _, want := range []string{"temporal: temporal not found", "s3: versitygw not found", "make tools"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing tools: error %v does not contain %q", err, want)
		}
	}
}

func TestParseComponent(t *testing.T) {
	t.Parallel()
	for _, c := range All() {
		got, err := ParseComponent(" " + strings.ToUpper(string(c)))
		if err != nil || got != c {
			t.Errorf("ParseComponent(%q) = %q, %v", c, got, err)
		}
	}
	if _, err := ParseComponent("minio"); err == nil {
		t.Error("ParseComponent(minio) succeeded")
	}
}

func TestDevPortsMatchConfigDefaults(t *testing.T) {
	t.Parallel()
	p := DevPorts()
	got := []int{p.Kafka, p.Redis, p.S3, p.Temporal, p.TemporalUI}
	want := []int{19092, 16379, 19000, 7233, 8233}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("DevPorts = %+v, want kafka/redis/s3/temporal/ui %v", p, want)
		}
	}
}

func TestStopOnExitedProcessIsNoop(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p, err := startProcess(Redis, []string{"/bin/sh", "-c", "exit 0"}, dir, filepath.Join(dir, "log"), nil)
	if err != nil {
		t.Fatal(err)
	}
	<-p.done
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	if err := p.stop(ctx, time.Second); err != nil {
		t.Fatalf("stop after exit: %v", err)
	}
	if err := p.kill(); err != nil {
		t.Fatalf("kill after exit: %v", err)
	}
}
