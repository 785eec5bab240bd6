package main

import (
	"bytes"
	"encoding/json"
	stdlog "log"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipsvc/sipsvc/config"
	"github.com/sipsvc/sipsvc/internal/syncbuf"
)

// TestHelpExitsCleanly: --help and -h print the usage and are not an error (issue 12:
// "sipsvc --help ends with flag: help requested").
func TestHelpExitsCleanly(t *testing.T) {
	for _, arg := range []string{"--help", "-h"} {
		var out bytes.Buffer
		if err := run([]string{arg}, &out); err != nil {
			t.Errorf("run %s: %v, want nil", arg, err)
		}
		if !strings.Contains(out.String(), "Usage: sipsvc") || !strings.Contains(out.String(), "-config") {
			t.Errorf("run %s printed %q, want the usage", arg, out.String())
		}
		if strings.Contains(out.String(), "help requested") {
			t.Errorf("run %s printed %q", arg, out.String())
		}
	}
}

// TestRunRefusesBadStart: flag and config errors stop start-up with a message naming the
// flag or field; nothing is served.
func TestRunRefusesBadStart(t *testing.T) {
	dir := t.TempDir()
	pprof := filepath.Join(dir, "pprof.yaml")
	if err := os.WriteFile(pprof, []byte("data_dir: "+dir+"\napi:\n  pprof_addr: \"0.0.0.0:6060\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown flag", []string{"--bogus"}, "bogus"},
		{"stray argument", []string{"serve"}, `unexpected argument "serve"`},
		{"pprof off loopback", []string{"--config", pprof}, "api.pprof_addr"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := run(tc.args, &out)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("run %v: %v, want an error mentioning %q", tc.args, err, tc.want)
			}
		})
	}
}

// TestInterruptStopsCleanly: Ctrl-C (SIGINT) stops sipsvc with exit status 0 and a
// "stopped" log line, so `make run` (which runs the binary) ends without an error (issue 12).
func TestInterruptStopsCleanly(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "sipsvc")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	var log syncBuffer
	cmd := exec.Command(bin)
	cmd.Stderr = &log
	cmd.Env = append(os.Environ(), "SIPSVC_DATA_DIR="+dir,
		"SIPSVC_SIP_UDP=127.0.0.1:0", "SIPSVC_SIP_TCP=127.0.0.1:0", "SIPSVC_SIP_TLS=127.0.0.1:0",
		"SIPSVC_GRPC_ADDR=127.0.0.1:0", "SIPSVC_HTTP_ADDR=127.0.0.1:0", "SIPSVC_PPROF_ADDR=")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(log.String(), "REST API listening") {
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-done
			t.Fatalf("sipsvc did not start:\n%s", log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("sipsvc exited with %v after SIGINT, want status 0:\n%s", err, log.String())
		}
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("sipsvc did not stop on SIGINT:\n%s", log.String())
	}
	if !strings.Contains(log.String(), "msg=stopped") {
		t.Errorf("no stopped line:\n%s", log.String())
	}
}

// syncBuffer is a log sink safe for concurrent writes and reads.
type syncBuffer = syncbuf.Buffer

// TestProcessLoggerRoutesLibraries: sipgo's package logger and the standard log package
// write through the service's handler, in its format and at its level (issue 12: sipgo's
// "WARN UDP ref went negative" came out in Go's default format).
func TestProcessLoggerRoutesLibraries(t *testing.T) {
	prevSlog := slog.Default()
	t.Cleanup(func() {
		slog.SetDefault(prevSlog)
		sip.SetDefaultLogger(nil)
	})
	var out syncBuffer
	if _, err := processLogger(&out, config.LogConfig{Level: "warn", Format: "json"}); err != nil {
		t.Fatal(err)
	}
	sip.DefaultLogger().Warn("UDP ref went negative on try close", "ref", -1)
	sip.DefaultLogger().Info("below the level")
	stdlog.Print("from the log package")
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("got %d lines, want only the sipgo warning (info and log.Print are below warn):\n%s", len(lines), out.String())
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
		t.Fatalf("sipgo line is not our JSON format: %v\n%s", err, lines[0])
	}
	if rec["level"] != "WARN" || rec["component"] != "sipgo" || rec["msg"] != "UDP ref went negative on try close" {
		t.Errorf("sipgo record %v", rec)
	}
	out = syncBuffer{}
	if _, err := processLogger(&out, config.LogConfig{Level: "info", Format: "text"}); err != nil {
		t.Fatal(err)
	}
	stdlog.Print("from the log package")
	if !strings.Contains(out.String(), `level=INFO msg="from the log package"`) {
		t.Errorf("log package line not in our text format: %q", out.String())
	}
}
