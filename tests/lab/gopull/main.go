// Command gopull reaches a registry the way containerd does, and says how: Go's own resolver,
// a net.Dialer with containerd's settings (Timeout 30s, KeepAlive 30s, FallbackDelay 300ms:
// containerd remotes/docker/config/hosts.go, ConfigureHosts) in an http.Transport, one
// `GET https://NAME/v2/`. It prints one JSON object: every address the dialer tried (when it
// started and ended, relative to the request's start, and its error), the address the request
// went over, the HTTP status or the error. The lab's tests build it with Debian's golang-go and
// hold the probe's verdict against it (tests/test_dual_stack_lab.py).
//
// Usage: gopull NAME DNS_SERVER:53 CA_FILE TIMEOUT
//
// The resolver is Go's own (PreferGo; on Linux Go uses it unless nsswitch.conf or resolv.conf
// need libc's: src/net/conf.go), sends every query to DNS_SERVER and sorts the answer by
// RFC 6724 (src/net/addrselect.go); /etc/resolv.conf only gives it options. No proxy is used.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"sync"
	"time"
)

type attempt struct {
	Address string  `json:"address"`
	Start   float64 `json:"start"`
	Done    float64 `json:"done"`
	Error   string  `json:"error,omitempty"`
}

type report struct {
	Attempts  []attempt `json:"attempts"`
	Connected string    `json:"connected,omitempty"`
	Status    int       `json:"status,omitempty"`
	Error     string    `json:"error,omitempty"`
	Elapsed   float64   `json:"elapsed"`
}

func main() {
	if len(os.Args) != 5 {
		fmt.Fprintln(os.Stderr, "usage: gopull NAME DNS_SERVER:53 CA_FILE TIMEOUT")
		os.Exit(2)
	}
	name, server, caFile := os.Args[1], os.Args[2], os.Args[3]
	timeout, err := time.ParseDuration(os.Args[4])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)

	resolver := &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, server)
		},
	}
	dialer := &net.Dialer{
		Timeout:       30 * time.Second,
		KeepAlive:     30 * time.Second,
		FallbackDelay: 300 * time.Millisecond,
		Resolver:      resolver,
	}
	transport := &http.Transport{
		Proxy:               nil,
		DialContext:         dialer.DialContext,
		TLSHandshakeTimeout: 10 * time.Second,
		TLSClientConfig:     &tls.Config{RootCAs: roots},
	}

	var mu sync.Mutex
	var out report
	started := time.Now()
	since := func() float64 { return time.Since(started).Seconds() }
	trace := &httptrace.ClientTrace{
		ConnectStart: func(_, address string) {
			mu.Lock()
			defer mu.Unlock()
			out.Attempts = append(out.Attempts, attempt{Address: address, Start: since()})
		},
		ConnectDone: func(_, address string, err error) {
			mu.Lock()
			defer mu.Unlock()
			for i := range out.Attempts {
				if out.Attempts[i].Address == address && out.Attempts[i].Done == 0 {
					out.Attempts[i].Done = since()
					if err != nil {
						out.Attempts[i].Error = err.Error()
					}
					break
				}
			}
		},
		GotConn: func(info httptrace.GotConnInfo) {
			mu.Lock()
			defer mu.Unlock()
			out.Connected = info.Conn.RemoteAddr().String()
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	request, err := http.NewRequestWithContext(
		httptrace.WithClientTrace(ctx, trace), http.MethodGet, "https://"+name+"/v2/", nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	response, err := transport.RoundTrip(request)
	mu.Lock()
	defer mu.Unlock()
	out.Elapsed = since()
	if err != nil {
		out.Error = err.Error()
	} else {
		out.Status = response.StatusCode
		response.Body.Close()
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		os.Exit(2)
	}
}
