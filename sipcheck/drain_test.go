package sipcheck

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// drainPair returns the two ends of a real loopback TCP connection, the server end wrapped by
// WrapConn with the given DrainWait.
func drainPair(t *testing.T, wait time.Duration) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	raw, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	server = WrapConn(raw, WireConfig{Server: "test", DrainWait: wait})
	t.Cleanup(func() { _ = client.Close(); _ = server.Close() })
	return client, server
}

const (
	drainOptions = "OPTIONS sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKd1\r\n" +
		"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
	drainAck = "ACK sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKd2\r\n" +
		"CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
	drainTrying = "SIP/2.0 100 Trying\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
	drainOK     = "SIP/2.0 200 OK\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
)

// readEnd reads from the wrapped end until it returns an error, and says when.
func readEnd(c net.Conn) <-chan error {
	end := make(chan error, 1)
	go func() {
		buf := make([]byte, 4096)
		for {
			if _, err := c.Read(buf); err != nil {
				end <- err
				return
			}
		}
	}()
	return end
}

// TestDrainHoldsEndUntilFinalResponse: the peer sends a request (and an ACK, which is never
// answered) and closes; the end of the input reaches the reader only once a final response
// was written (a provisional one does not count), so that sipgo does not close the
// connection under the response (RFC 3261 §18.2.2).
func TestDrainHoldsEndUntilFinalResponse(t *testing.T) {
	client, server := drainPair(t, 10*time.Second)
	if _, err := client.Write([]byte(drainOptions + drainAck)); err != nil {
		t.Fatal(err)
	}
	_ = client.(*net.TCPConn).CloseWrite()
	end := readEnd(server)
	select {
	case err := <-end:
		t.Fatalf("end of input (%v) before any response", err)
	case <-time.After(200 * time.Millisecond):
	}
	if _, err := server.Write([]byte(drainTrying)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-end:
		t.Fatalf("end of input (%v) after a provisional response", err)
	case <-time.After(200 * time.Millisecond):
	}
	if _, err := server.Write([]byte(drainOK)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-end:
		if !errors.Is(err, io.EOF) {
			t.Fatalf("end of input: %v, want EOF", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("end of input held after the final response")
	}
	_ = server.Close() // as sipgo does once its reader sees the end
	_ = client.SetReadDeadline(time.Now().Add(2 * time.Second))
	got, err := io.ReadAll(client)
	if err != nil || string(got) != drainTrying+drainOK {
		t.Fatalf("peer read %q (%v), want both responses", got, err)
	}
}

// TestDrainBounded: a request that is never answered holds the end of the input for
// DrainWait only, and Close ends the wait at once.
func TestDrainBounded(t *testing.T) {
	t.Run("DrainWait", func(t *testing.T) {
		client, server := drainPair(t, 300*time.Millisecond)
		if _, err := client.Write([]byte(drainOptions)); err != nil {
			t.Fatal(err)
		}
		_ = client.Close()
		start := time.Now()
		select {
		case err := <-readEnd(server):
			if d := time.Since(start); d < 250*time.Millisecond {
				t.Fatalf("end of input (%v) after %v, before DrainWait", err, d)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("end of input held beyond DrainWait")
		}
	})
	t.Run("Close", func(t *testing.T) {
		client, server := drainPair(t, time.Minute)
		if _, err := client.Write([]byte(drainOptions)); err != nil {
			t.Fatal(err)
		}
		_ = client.Close()
		end := readEnd(server)
		time.Sleep(100 * time.Millisecond)
		_ = server.Close()
		select {
		case <-end:
		case <-time.After(5 * time.Second):
			t.Fatal("Close did not end the wait")
		}
	})
}
